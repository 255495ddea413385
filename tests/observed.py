"""What the handlers emit, read back in tests: their metrics (Embedded Metric Format lines) and their log records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rewrap.observability import SERVICE


def emitted_metrics(out: str) -> dict[str, Any]:
    """Metric values from the Embedded Metric Format lines the handlers print."""
    found: dict[str, Any] = {}
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            record = json.loads(line)
            for metric in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                found[metric["Name"]] = sum(record[metric["Name"]])
    return found


@contextmanager
def service_log() -> Iterator[list[logging.LogRecord]]:
    """The records of the service's own logger, whatever propagation other tests left on it (caplog listens
    at the root, which the service's records do not always reach)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    service = logging.getLogger(SERVICE)
    service.addHandler(handler)
    try:
        yield records
    finally:
        service.removeHandler(handler)
