"""Rotate function (Handler: app.lambda_handler): the handler lives in the layer's rewrap.handlers."""

from rewrap.handlers import rotate as lambda_handler

__all__ = ["lambda_handler"]
