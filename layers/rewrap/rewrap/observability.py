"""Powertools logger, metrics and tracer shared by the functions (a neutral module: the engine and
adapters do not depend on it). Service name and namespace come from POWERTOOLS_* variables."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="rewrap")
metrics = Metrics(namespace="Rewrap", service="rewrap")
tracer = Tracer(service="rewrap")
