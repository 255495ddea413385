"""Typed configuration, read from the environment once per container (never at import time).

``SETTINGS`` is the one table of every variable: its type, default, bounds and meaning. The loader,
the validation of directly built ``Settings``, the README's configuration table and the template's
environment are all checked against it."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

from rewrap.errors import ConfigError
from rewrap.ncp.generations import DEFAULT_API, GENERATIONS

DEFAULT_ENDPOINT = GENERATIONS[DEFAULT_API].default_endpoint
# The rotate function accepts at most this many keys per rotate request.
MAX_KEYS_PER_REQUEST = 1000
MiB, GiB, TiB = 1024**2, 1024**3, 1024**4
# Multipart parts must be ≥ 5 MiB; a segment may shrink a little to avoid cutting a token.
MIN_MULTIPART_BYTES = 6 * MiB
MAX_OBJECT_BYTES = 5 * TiB  # S3's own maximum
LOOPBACK_NAMES = {"localhost"}

SettingKind = Literal["text", "choice", "int", "float", "flag", "list", "set", "timestamp", "targets"]
_INTEGER = re.compile(r"[0-9]+")
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


@dataclass(frozen=True)
class SweepTarget:
    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> SweepTarget:
        bucket, _, prefix = text.strip().removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError(f"sweep target {text!r} has no bucket")
        return cls(bucket, prefix)


@dataclass(frozen=True)
class Setting:
    """One environment variable: the ``Settings`` field it fills, how it is read and what it allows."""

    variable: str
    name: str
    kind: SettingKind
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def read(self, env: Mapping[str, str]) -> Any:
        raw = env.get(self.variable, "").strip()
        if not raw:
            return self.default
        if self.kind in ("text", "choice"):
            return raw.lower() if self.kind == "choice" else raw
        if self.kind == "flag":
            if raw.lower() not in _TRUE | _FALSE:
                raise self.refused(raw, "true or false")
            return raw.lower() in _TRUE
        if self.kind in ("list", "set", "targets"):
            items = [item.strip() for item in raw.split(",") if item.strip()]
            if self.kind == "targets":
                return tuple(SweepTarget.parse(item) for item in items)
            return frozenset(items) if self.kind == "set" else tuple(items)
        if self.kind == "timestamp":
            return _timestamp(self, raw)
        return self._number(raw)

    def _number(self, raw: str) -> int | float:
        if self.kind == "int":
            if not _INTEGER.fullmatch(raw):
                raise self.refused(raw, f"a whole number {self.allowed()}")
            return int(raw)
        try:
            value = float(raw)
        except ValueError as exc:
            raise self.refused(raw, f"a number {self.allowed()}") from exc
        if not math.isfinite(value):
            raise self.refused(raw, f"a finite number {self.allowed()}")
        return value

    def check(self, value: Any) -> None:
        """Bounds and choices, for values read from the environment and set directly alike."""
        if self.kind == "choice" and value not in self.choices:
            raise self.refused(value, "one of " + ", ".join(self.choices))
        if self.kind in ("int", "float"):
            if value is None and self.default is None:
                return  # unset: derived from other settings
            if self.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise self.refused(value, f"a whole number {self.allowed()}")
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise self.refused(value, self.allowed())

    def allowed(self) -> str:
        return f"from {human_number(self.low)} to {human_number(self.high)}"

    def refused(self, value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{self.variable}={str(value)!r} is not allowed: it must be {allowed}")


def human_number(number: float | None) -> str:
    if number is None:
        return "any"
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB)):
        if number >= size and number % size == 0:
            return f"{int(number // size)} {unit}"
    return f"{number:g}"


def _timestamp(setting: Setting, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise setting.refused(raw, "an ISO 8601 timestamp") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


SETTINGS: tuple[Setting, ...] = (
    Setting("NCP_KMS_KEY_TAG", "key_tag", "text", "", "default key tag (objects may override it)"),
    Setting("NCP_KMS_SECRET_ID", "secret_id", "text", "", "Secrets Manager secret with the NCP credentials"),
    Setting("NCP_KMS_ENDPOINT", "endpoint", "text", "", "NCP KMS base URL; empty: the generation's host"),
    Setting(
        "NCP_KMS_SIGNATURE_VERSION", "signature_version", "choice", "v2", "request signature", choices=("v1", "v2")
    ),
    Setting("NCP_KMS_API", "kms_api", "choice", DEFAULT_API, "NCP KMS API generation", choices=tuple(GENERATIONS)),
    Setting("NCP_KMS_TIMEOUT_SECONDS", "kms_timeout_seconds", "float", 10.0, "per-request timeout", 0.1, 300),
    Setting("NCP_KMS_MAX_ATTEMPTS", "kms_max_attempts", "int", 6, "attempts per KMS request", 1, 20),
    Setting(
        "NCP_KMS_RATE_LIMIT",
        "kms_rate_limit",
        "float",
        None,
        "ceiling of the adaptive KMS rate per container, requests/s; 0 = no limit; empty: "
        "NCP_KMS_RATE_BUDGET / REWRAP_MAX_CONTAINERS",
        0,
        10_000,
    ),
    Setting(
        "NCP_KMS_RATE_BUDGET",
        "kms_rate_budget",
        "float",
        200.0,
        "KMS requests/s NCP allows the whole deployment (documented: 200/s per account on 1.0, 300/s per key on 2.0)",
        1,
        100_000,
    ),
    Setting(
        "REWRAP_MAX_CONTAINERS",
        "max_containers",
        "int",
        1,
        "rotate containers that may run at once, sharing NCP_KMS_RATE_BUDGET",
        1,
        10_000,
    ),
    Setting("REWRAP_BUCKETS", "buckets", "set", frozenset(), "allow-list of buckets"),
    Setting("REWRAP_DRY_RUN", "dry_run", "flag", False, "report what would change, write nothing"),
    Setting(
        "REWRAP_MAX_OBJECT_BYTES",
        "max_object_bytes",
        "int",
        MAX_OBJECT_BYTES,
        "larger text objects are refused",
        1,
        MAX_OBJECT_BYTES,
    ),
    Setting(
        "REWRAP_STREAM_THRESHOLD_BYTES",
        "stream_threshold_bytes",
        "int",
        32 * MiB,
        "larger text bodies are streamed",
        1,
        MAX_OBJECT_BYTES,
    ),
    Setting(
        "REWRAP_SEGMENT_BYTES",
        "segment_bytes",
        "int",
        16 * MiB,
        "streamed segment = multipart part size",
        MIN_MULTIPART_BYTES,
        5 * GiB,
    ),
    Setting(
        "REWRAP_MULTIPART_COPY_THRESHOLD_BYTES",
        "multipart_copy_threshold_bytes",
        "int",
        5 * GiB,
        "larger envelopes copy in parts",
        MIN_MULTIPART_BYTES,
        5 * GiB,
    ),
    Setting("REWRAP_VERIFY", "verify", "flag", False, "decrypt old and new tokens and compare before writing"),
    Setting("REWRAP_CONCURRENCY", "concurrency", "int", 16, "parallel S3 and KMS requests per invocation", 1, 256),
    Setting(
        "REWRAP_VERSION_CACHE_SECONDS",
        "version_cache_seconds",
        "float",
        60.0,
        "trust in a seen newest version",
        0,
        86_400,
    ),
    Setting("REWRAP_SECRET_CACHE_SECONDS", "secret_cache_seconds", "float", 300.0, "NCP secret cache", 0, 86_400),
    Setting("REWRAP_QUEUE_URL", "queue_url", "text", "", "the rotate queue"),
    Setting("REWRAP_DEAD_LETTER_QUEUE_URL", "dead_letter_queue_url", "text", "", "where permanent failures are parked"),
    Setting("REWRAP_SWEEP_TARGETS", "sweep_targets", "targets", (), "bucket or bucket/prefix entries to sweep"),
    Setting(
        "REWRAP_SWEEP_KEYS_PER_MESSAGE",
        "sweep_keys_per_message",
        "int",
        100,
        "keys per rotate request",
        1,
        MAX_KEYS_PER_REQUEST,
    ),
    Setting("REWRAP_SWEEP_PAGE_SIZE", "sweep_page_size", "int", 1000, "keys per listing page", 1, 1000),
    Setting(
        "REWRAP_SWEEP_MODIFIED_AFTER", "sweep_modified_after", "timestamp", None, "sweep only objects modified after"
    ),
    Setting(
        "REWRAP_SWEEP_MODIFIED_BEFORE", "sweep_modified_before", "timestamp", None, "sweep only objects modified before"
    ),
    Setting(
        "REWRAP_SWEEP_MAX_OBJECT_BYTES",
        "sweep_max_object_bytes",
        "int",
        0,
        "skip larger objects; 0 = no limit",
        0,
        MAX_OBJECT_BYTES,
    ),
    Setting(
        "REWRAP_SWEEP_CLOCK_SKEW_SECONDS",
        "sweep_clock_skew_seconds",
        "int",
        900,
        "an incremental sweep also takes objects modified this long before the last listing started",
        0,
        86_400,
    ),
    Setting(
        "REWRAP_SWEEP_FULL_EVERY_DAYS",
        "sweep_full_every_days",
        "float",
        7.0,
        "a scheduled sweep is full when the last full one is this old; 0 = every sweep is full",
        0,
        3650,
    ),
    Setting(
        "REWRAP_SWEEP_KEY_TAGS",
        "sweep_key_tags",
        "list",
        (),
        "other key tags objects name (ncpkms-key-tag): a new version of any makes the next sweep full",
    ),
    Setting("REWRAP_REPORT_PREFIX", "report_prefix", "text", "", "s3://bucket/prefix for audit reports"),
    Setting(
        "REWRAP_ALARM_TOPIC_ARN",
        "alarm_topic_arn",
        "text",
        "",
        "SNS topic told each full rotation run's verdict (needs REWRAP_REPORT_PREFIX); empty: metrics only",
    ),
    Setting("REWRAP_REQUESTER_PAYS", "requester_pays", "flag", False, "send RequestPayer=requester to S3"),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def _default(name: str) -> Any:
    return field(default=BY_NAME[name].default)


@dataclass(frozen=True)
class Settings:
    key_tag: str = _default("key_tag")
    secret_id: str = _default("secret_id")
    endpoint: str = _default("endpoint")  # empty: the default host of the API generation
    signature_version: str = _default("signature_version")
    kms_api: str = _default("kms_api")  # NCP KMS API generation: 1.0, 2.0 or v3 (rewrap.ncp.generations)
    kms_timeout_seconds: float = _default("kms_timeout_seconds")
    kms_max_attempts: int = _default("kms_max_attempts")
    kms_rate_limit: float | None = _default("kms_rate_limit")  # requests/s per container; 0 = unlimited
    kms_rate_budget: float = _default("kms_rate_budget")
    max_containers: int = _default("max_containers")
    buckets: frozenset[str] = _default("buckets")
    dry_run: bool = _default("dry_run")
    max_object_bytes: int = _default("max_object_bytes")
    stream_threshold_bytes: int = _default("stream_threshold_bytes")
    segment_bytes: int = _default("segment_bytes")  # one streamed segment = one multipart part
    multipart_copy_threshold_bytes: int = _default("multipart_copy_threshold_bytes")
    verify: bool = _default("verify")
    concurrency: int = _default("concurrency")
    version_cache_seconds: float = _default("version_cache_seconds")
    secret_cache_seconds: float = _default("secret_cache_seconds")
    queue_url: str = _default("queue_url")
    dead_letter_queue_url: str = _default("dead_letter_queue_url")
    sweep_targets: tuple[SweepTarget, ...] = _default("sweep_targets")
    sweep_keys_per_message: int = _default("sweep_keys_per_message")
    sweep_page_size: int = _default("sweep_page_size")
    sweep_modified_after: datetime | None = _default("sweep_modified_after")
    sweep_modified_before: datetime | None = _default("sweep_modified_before")
    sweep_max_object_bytes: int = _default("sweep_max_object_bytes")
    sweep_clock_skew_seconds: int = _default("sweep_clock_skew_seconds")
    sweep_full_every_days: float = _default("sweep_full_every_days")
    sweep_key_tags: tuple[str, ...] = _default("sweep_key_tags")
    report_prefix: str = _default("report_prefix")
    alarm_topic_arn: str = _default("alarm_topic_arn")
    requester_pays: bool = _default("requester_pays")  # RequestPayer=requester on every S3 call

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            setting.check(getattr(self, setting.name))
        generation = GENERATIONS[self.kms_api]
        if not self.endpoint:
            object.__setattr__(self, "endpoint", generation.default_endpoint)
        object.__setattr__(self, "endpoint", self.endpoint.rstrip("/"))
        check_endpoint(self.endpoint)
        if self.signature_version not in generation.signatures:
            raise ConfigError(f"NCP_KMS_API={self.kms_api} takes NCP_KMS_SIGNATURE_VERSION v2 only")

    @property
    def kms_rate_ceiling(self) -> float:
        """Requests/s one container may reach: NCP_KMS_RATE_LIMIT, or by default NCP's budget shared
        by every container that may run at once."""
        if self.kms_rate_limit is not None:
            return self.kms_rate_limit
        return self.kms_rate_budget / self.max_containers

    @property
    def watched_key_tags(self) -> list[str]:
        """The key tags whose newest version the sweep asks NCP for: the default one and the others named."""
        return list(dict.fromkeys(tag for tag in (self.key_tag, *self.sweep_key_tags) if tag))

    def bucket_allowed(self, bucket: str) -> bool:
        return bucket in self.buckets

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(**{setting.name: setting.read(env) for setting in SETTINGS})


def check_endpoint(endpoint: str) -> None:
    """TLS is mandatory; plain http is accepted only for loopback addresses (the local stack)."""
    parts = urlsplit(endpoint)
    if "@" in parts.netloc or parts.query or parts.fragment:
        # httpx would send user:password from the URL as an Authorization header
        raise ConfigError("NCP_KMS_ENDPOINT must not carry credentials, a query or a fragment")
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise ConfigError("NCP_KMS_ENDPOINT must be an https URL (plain http only on loopback)")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """The container's settings; ``load_settings.cache_clear()`` re-reads them (tests)."""
    return Settings.from_env()
