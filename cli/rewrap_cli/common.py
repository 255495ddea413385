"""What every ``rewrap`` command shares: exit codes, argument types, one-line error explanations,
the progress line, tables, report files and the S3 client."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from rewrap.core.config import SweepTarget
from rewrap.core.reports import Format, ReportFile
from rewrap.errors import ConfigError, RewrapError

OK, PARTIAL, NOTHING_DONE = 0, 1, 2
# Hints by error code: what the operator can do about it.
_HINTS = {
    "s3-denied": "check that your AWS identity may list and read the bucket",
    "s3-error": "check the bucket name and its region (AWS_REGION)",
    "no-such-bucket": "check the bucket name and its region (AWS_REGION)",
    "s3-unavailable": "check AWS credentials and network (aws sts get-caller-identity), then run again",
    "secret-invalid": "check NCP_KMS_SECRET_ID and that your AWS identity may read that secret",
    "secret-unavailable": "check AWS credentials, region and network, then run again",
    "kms-auth": "check the NCP access key / secret key in the secret and NCP_KMS_SIGNATURE_VERSION",
    "kms-rejected": "check the key tag (NCP_KMS_KEY_TAG / --key-tag) and that the key is enabled",
    "kms-unavailable": "check NCP_KMS_ENDPOINT and the network, then run again",
}


def explain(exc: BaseException) -> str:
    if isinstance(exc, RewrapError):
        text = str(exc)
        if "NoCredentialsError" in text:
            return f"{text}: no AWS credentials found; configure them (aws configure, AWS_PROFILE) or pass --local"
        if "NoRegionError" in text:
            return f"{text}: no AWS region; set AWS_REGION or pass --local"
        hint = _HINTS.get(exc.code)
        return f"{text}: {hint}" if hint else text
    return f"unexpected {type(exc).__name__}: {exc} (run again with --verbose for the traceback)"


def aws_session() -> Any:
    """A boto3 session for commands that call the deployed stack; without a region, one clear line."""
    import boto3

    session = boto3.session.Session()
    if not session.region_name:
        raise ConfigError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) to the stack's region")
    return session


class LocalExtraMissing(ConfigError):
    """The embedded stack is an optional part of the package."""


def require_local_extra(what: str) -> None:
    """The embedded stack (moto, the emulator's cryptography) comes with the optional ``local`` extra."""
    try:
        import cryptography  # noqa: F401
        import moto.server  # noqa: F401
    except ModuleNotFoundError as missing:
        raise LocalExtraMissing(
            f"{what} needs the embedded stack, which is not installed ({missing.name} is missing): "
            "pip install 'rewrap[local]' (from a checkout: pip install '.[local]')"
        ) from missing


def s3_target(text: str) -> SweepTarget:
    if not text.startswith("s3://"):
        raise argparse.ArgumentTypeError(f"{text!r} is not an s3://bucket/prefix URL")
    try:
        return SweepTarget.parse(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ≥ 1")
    return int(text)


def s3_url(target: SweepTarget) -> str:
    return f"s3://{target.bucket}/{target.prefix}"


class Progress:
    """One updating line on a terminal; a plain line every ``interval`` seconds otherwise."""

    def __init__(self, stream: IO[str], *, enabled: bool = True, interval: float | None = None) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.interval = interval if interval is not None else (0.2 if self.tty else 10.0)
        self.started = time.monotonic()
        self._shown = self.started
        self._width = 0

    def update(self, done: int, detail: Callable[[], str]) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._shown < self.interval:
            return
        self._shown = now
        line = f"{done:,} objects, {done / max(now - self.started, 1e-9):,.0f}/s — {detail()}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> float:
        if self.enabled and self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
        return time.monotonic() - self.started


@contextmanager
def report_file(options: argparse.Namespace, columns: Sequence[str]) -> Iterator[ReportFile | None]:
    if options.report is None:
        yield None
        return
    fmt: Format = options.format or ("csv" if options.report.suffix.lower() == ".csv" else "json")
    try:
        report = ReportFile(options.report, fmt, columns)
    except OSError as exc:
        raise ConfigError(f"cannot write the report {options.report}: {exc.strerror}") from exc
    with report:
        yield report


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  " + "  ".join(cells).rstrip())
