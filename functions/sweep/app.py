"""Sweep function (Handler: app.lambda_handler): the handler lives in the layer's rewrap.app.handlers."""

from rewrap.app.handlers import sweep as lambda_handler

__all__ = ["lambda_handler"]
