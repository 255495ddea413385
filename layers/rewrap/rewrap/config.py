"""Typed configuration, read from the environment once per container (never at import time)."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlsplit

from rewrap.errors import ConfigError
from rewrap.ncp.generations import DEFAULT_API, GENERATIONS

DEFAULT_ENDPOINT = GENERATIONS[DEFAULT_API].default_endpoint
# Upper bound for any numeric setting (S3's 5 TiB object limit is the largest meaningful value).
MAX_SETTING = float(2**53)
# The rotate function accepts at most this many keys per rotate request.
MAX_KEYS_PER_REQUEST = 1000
# Multipart parts must be ≥ 5 MiB; a segment may shrink a little to avoid cutting a token.
MIN_MULTIPART_BYTES = 6 * 1024 * 1024
LOOPBACK_NAMES = {"localhost"}


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
class Settings:
    key_tag: str = ""
    secret_id: str = ""
    endpoint: str = ""  # empty: the default host of the API generation
    signature_version: str = "v2"
    kms_api: str = DEFAULT_API  # NCP KMS API generation: 1.0, 2.0 or v3 (rewrap.ncp.generations)
    kms_timeout_seconds: float = 10.0
    kms_max_attempts: int = 6
    kms_rate_limit: float = 50.0  # requests per second per container; 0 = unlimited
    buckets: frozenset[str] = field(default_factory=frozenset)
    dry_run: bool = False
    max_object_bytes: int = 5 * 1024**4  # S3's own maximum; lower it to refuse large objects
    stream_threshold_bytes: int = 32 * 1024 * 1024  # larger text bodies are streamed in segments
    segment_bytes: int = 16 * 1024 * 1024  # one streamed segment = one multipart part
    multipart_copy_threshold_bytes: int = 5 * 1024**3  # CopyObject's limit; larger envelopes copy in parts
    verify: bool = False
    text_suffixes: tuple[str, ...] = ()  # keys known to be text: small ones are read with one GET
    concurrency: int = 16
    version_cache_seconds: float = 60.0
    secret_cache_seconds: float = 300.0
    queue_url: str = ""
    dead_letter_queue_url: str = ""
    sweep_targets: tuple[SweepTarget, ...] = ()
    sweep_keys_per_message: int = 100
    sweep_page_size: int = 1000  # keys per ListObjectsV2 page (S3's maximum)
    sweep_modified_after: datetime | None = None
    sweep_modified_before: datetime | None = None
    sweep_max_object_bytes: int = 0  # 0 = no size filter
    report_prefix: str = ""
    requester_pays: bool = False  # send RequestPayer=requester on every S3 call

    def __post_init__(self) -> None:
        if self.signature_version not in ("v1", "v2"):
            raise ConfigError("NCP_KMS_SIGNATURE_VERSION must be v1 or v2")
        self._check_kms_api()
        check_endpoint(self.endpoint)
        if self.kms_timeout_seconds < 0.1:
            raise ConfigError("NCP_KMS_TIMEOUT_SECONDS must be at least 0.1")
        if not 1 <= self.sweep_keys_per_message <= MAX_KEYS_PER_REQUEST:
            raise ConfigError(f"REWRAP_SWEEP_KEYS_PER_MESSAGE must be from 1 to {MAX_KEYS_PER_REQUEST}")
        if self.concurrency < 1 or self.kms_max_attempts < 1 or self.max_object_bytes < 1:
            raise ConfigError("REWRAP_CONCURRENCY, NCP_KMS_MAX_ATTEMPTS, REWRAP_MAX_OBJECT_BYTES must be ≥ 1")
        if min(self.segment_bytes, self.multipart_copy_threshold_bytes) < MIN_MULTIPART_BYTES:
            raise ConfigError("REWRAP_SEGMENT_BYTES and REWRAP_MULTIPART_COPY_THRESHOLD_BYTES must be ≥ 6 MiB")

    def _check_kms_api(self) -> None:
        generation = GENERATIONS.get(self.kms_api)
        if generation is None:
            raise ConfigError(f"NCP_KMS_API must be one of {', '.join(GENERATIONS)}")
        if not self.endpoint:
            object.__setattr__(self, "endpoint", generation.default_endpoint)
        if self.signature_version not in generation.signatures:
            raise ConfigError(f"NCP_KMS_API={self.kms_api} takes NCP_KMS_SIGNATURE_VERSION v2 only")

    def bucket_allowed(self, bucket: str) -> bool:
        return bucket in self.buckets

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        reader = _Reader(env)
        return cls(
            key_tag=reader.text("NCP_KMS_KEY_TAG"),
            secret_id=reader.text("NCP_KMS_SECRET_ID"),
            endpoint=reader.text("NCP_KMS_ENDPOINT").rstrip("/"),
            signature_version=reader.text("NCP_KMS_SIGNATURE_VERSION", "v2").lower(),
            kms_api=reader.text("NCP_KMS_API", DEFAULT_API).lower(),
            kms_timeout_seconds=reader.number("NCP_KMS_TIMEOUT_SECONDS", 10.0),
            kms_max_attempts=int(reader.number("NCP_KMS_MAX_ATTEMPTS", 6)),
            kms_rate_limit=reader.number("NCP_KMS_RATE_LIMIT", 50.0),
            buckets=frozenset(reader.items("REWRAP_BUCKETS")),
            dry_run=reader.flag("REWRAP_DRY_RUN"),
            max_object_bytes=int(reader.number("REWRAP_MAX_OBJECT_BYTES", 5 * 1024**4)),
            stream_threshold_bytes=int(reader.number("REWRAP_STREAM_THRESHOLD_BYTES", 32 * 1024 * 1024)),
            segment_bytes=int(reader.number("REWRAP_SEGMENT_BYTES", 16 * 1024 * 1024)),
            multipart_copy_threshold_bytes=int(reader.number("REWRAP_MULTIPART_COPY_THRESHOLD_BYTES", 5 * 1024**3)),
            verify=reader.flag("REWRAP_VERIFY"),
            text_suffixes=tuple(reader.items("REWRAP_TEXT_SUFFIXES")),
            concurrency=int(reader.number("REWRAP_CONCURRENCY", 16)),
            version_cache_seconds=reader.number("REWRAP_VERSION_CACHE_SECONDS", 60.0),
            secret_cache_seconds=reader.number("REWRAP_SECRET_CACHE_SECONDS", 300.0),
            queue_url=reader.text("REWRAP_QUEUE_URL"),
            dead_letter_queue_url=reader.text("REWRAP_DEAD_LETTER_QUEUE_URL"),
            sweep_targets=tuple(SweepTarget.parse(t) for t in reader.items("REWRAP_SWEEP_TARGETS")),
            sweep_keys_per_message=int(reader.number("REWRAP_SWEEP_KEYS_PER_MESSAGE", 100)),
            sweep_page_size=int(reader.number("REWRAP_SWEEP_PAGE_SIZE", 1000)),
            sweep_modified_after=reader.timestamp("REWRAP_SWEEP_MODIFIED_AFTER"),
            sweep_modified_before=reader.timestamp("REWRAP_SWEEP_MODIFIED_BEFORE"),
            sweep_max_object_bytes=int(reader.number("REWRAP_SWEEP_MAX_OBJECT_BYTES", 0)),
            report_prefix=reader.text("REWRAP_REPORT_PREFIX"),
            requester_pays=reader.flag("REWRAP_REQUESTER_PAYS"),
        )


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


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str = "") -> str:
        return self.env.get(name, "").strip() or default

    def items(self, name: str) -> list[str]:
        return [item.strip() for item in self.text(name).split(",") if item.strip()]

    def flag(self, name: str) -> bool:
        value = self.text(name, "false").lower()
        if value not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{name} must be true or false")
        return value in ("true", "1", "yes")

    def timestamp(self, name: str) -> datetime | None:
        raw = self.text(name)
        if not raw:
            return None
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{name} must be an ISO 8601 timestamp") from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number") from None
        if not math.isfinite(value) or value < 0 or value > MAX_SETTING:
            raise ConfigError(f"{name} must be a finite number from 0 to {MAX_SETTING:g}")
        return value


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """The container's settings; ``load_settings.cache_clear()`` re-reads them (tests)."""
    return Settings.from_env()
