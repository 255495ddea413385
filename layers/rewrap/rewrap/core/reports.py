"""Per-object reports: JSON lines or CSV files (the command line), and the functions' audit trail.

With ``REWRAP_REPORT_PREFIX=s3://bucket/prefix`` every rotate invocation and every sweep writes
one JSON-lines object ``{prefix}/{yyyy}/{mm}/{dd}/{HHMMSS}Z-{request id}.jsonl`` (S3 has no
append; the time in the name keeps a retried invocation, which has the same request id, from
replacing the first attempt's report). Writing a report is best effort: a failure is logged and
counted (``ReportWriteFailures``), never raised into the rotation.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from aws_lambda_powertools.metrics import MetricUnit

from rewrap.core.census import CENSUS_FIELDS
from rewrap.core.config import SweepTarget
from rewrap.core.ports import ObjectStore
from rewrap.core.results import RESULT_FIELDS
from rewrap.errors import ConfigError, RewrapError
from rewrap.observability import logger, metrics

Format = Literal["json", "csv"]

# CSV columns of the record kinds, their records' fields (JSON lines carry the same, and any others).
ROTATE_COLUMNS = RESULT_FIELDS
CENSUS_COLUMNS = CENSUS_FIELDS


class ReportFile:
    """A local report, one record per line (JSON) or per row (CSV), written as results arrive."""

    def __init__(self, path: Path, fmt: Format, columns: Sequence[str]) -> None:
        self.path = path
        self.fmt = fmt
        self.columns = columns
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="")
        self._csv: Any = None
        if fmt == "csv":
            self._csv = csv.writer(self._file)
            self._csv.writerow(columns)

    def write(self, record: Mapping[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow([csv_cell(record.get(column)) for column in self.columns])
        else:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ReportFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return ";".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def json_lines(records: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def report_key(prefix: str, request_id: str, now: datetime) -> str:
    name = f"{now:%Y/%m/%d/%H%M%S}Z-{request_id}.jsonl"
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


def publish_report(
    prefix: str, store: ObjectStore, context: Any, source: str, records: Sequence[Mapping[str, Any]]
) -> str | None:
    """Write this invocation's records under ``prefix``; the report's s3:// URL, or None when
    reports are off, there is nothing to report, or the write failed (logged and counted).

    Records about report objects themselves are left out: with the prefix inside a watched bucket,
    a report's own ObjectCreated event then ends in an invocation with nothing to report, not a loop."""
    if not prefix:
        return None
    request_id = str(getattr(context, "aws_request_id", "") or uuid.uuid4())
    now = datetime.now(UTC)
    stamp = {"time": now.isoformat(timespec="seconds"), "requestId": request_id, "source": source}
    try:
        if not prefix.startswith("s3://"):
            raise ConfigError(f"REWRAP_REPORT_PREFIX must look like s3://bucket/prefix, not {prefix!r}")
        location = SweepTarget.parse(prefix)
        kept = [r for r in records if not _is_report(r, location.bucket, location.prefix)]
        if not kept:
            return None
        key = report_key(location.prefix, request_id, now)
        store.put_new(location.bucket, key, json_lines({**stamp, **r} for r in kept), "application/x-ndjson")
    except Exception as exc:  # noqa: BLE001 - a report must never fail the rotation it describes
        reason = exc.reason if isinstance(exc, RewrapError) else f"internal error ({type(exc).__name__})"
        logger.warning("report not written", extra={"reason": reason, "records": len(records)})
        metrics.add_metric(name="ReportWriteFailures", unit=MetricUnit.Count, value=1)
        return None
    return f"s3://{location.bucket}/{key}"


# What rewrap writes under the report prefix besides the audit reports: runs' partials and listing
# records (census_runs) and the sweep's checkpoints (checkpoints).
OWN_FOLDERS = ("census/", "checkpoints/")


def _is_report(record: Mapping[str, Any], bucket: str, prefix: str) -> bool:
    if record.get("bucket") != bucket:
        return False
    key, folder = str(record.get("key", "")), prefix.strip("/")
    if folder:
        if not key.startswith(folder + "/"):
            return False
        key = key[len(folder) + 1 :]
    return key.endswith(".jsonl") or key.startswith(OWN_FOLDERS)
