"""How ``rewrap census`` and ``rewrap rotate`` reach S3 and NCP: the embedded stack with ``--local``,
otherwise AWS's default credential chain and the functions' environment variables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Any

from rewrap.app.runtime import Runtime, build_runtime, build_store
from rewrap.core.config import Settings, SweepTarget
from rewrap.core.ports import ObjectStore
from rewrap.errors import ConfigError
from rewrap_cli.common import require_local_extra


@contextmanager
def connect(
    options: argparse.Namespace, *, kms: bool, writes: bool = True
) -> Iterator[tuple[Settings, Runtime | None, ObjectStore]]:
    """Settings, the engine's runtime (only with ``kms``) and an S3 store: the embedded stack with
    --local, otherwise AWS's default credential chain and the functions' environment variables. Without
    ``writes`` (a census asking NCP for the key's newest version) the bucket need not be in REWRAP_BUCKETS."""
    target: SweepTarget = options.target
    with ExitStack() as stack:
        if options.local:
            require_local_extra("--local")
            from rewrap_local.stack import local_stack

            print(f"starting the embedded stack (moto + NCP KMS emulator) for s3://{target.bucket}", file=sys.stderr)
            local = stack.enter_context(local_stack(bucket=target.bucket))
            settings = _overrides(local.settings(), options)
            runtime: Runtime | None = build_runtime(settings, session=local.session, endpoint_url=local.moto_url)
        else:
            settings = _overrides(_settings_from_env(options, kms=kms, writes=writes), options)
            runtime = build_runtime(settings) if kms else None
        if runtime is not None:
            stack.callback(runtime.kms.http.close)
            yield settings, runtime, runtime.store
        else:
            yield settings, None, build_store(settings)


def _settings_from_env(options: argparse.Namespace, *, kms: bool, writes: bool) -> Settings:
    settings = Settings.from_env()
    bucket = options.target.bucket
    if kms and writes and settings.buckets and bucket not in settings.buckets:
        raise ConfigError(f"bucket {bucket!r} is not in REWRAP_BUCKETS: add it there or unset the variable")
    if kms and not (options.key_tag or settings.key_tag):
        raise ConfigError("NCP_KMS_KEY_TAG is not set: pass --key-tag or set the variable")
    if kms and not settings.secret_id:
        raise ConfigError(
            "NCP_KMS_SECRET_ID is not set: set it to the Secrets Manager secret (name or ARN) holding "
            '{"accessKey", "secretKey"}, or pass --local'
        )
    return replace(settings, buckets=settings.buckets | {bucket})


def _overrides(settings: Settings, options: argparse.Namespace) -> Settings:
    changes: dict[str, Any] = {}
    if options.key_tag and not options.local:
        changes["key_tag"] = options.key_tag
    if options.concurrency:
        changes["concurrency"] = options.concurrency
    if getattr(options, "rate", None) is not None:
        if options.rate < 0:
            raise ConfigError("--rate must be 0 (unlimited) or more requests per second")
        changes["kms_rate_limit"] = options.rate
    if getattr(options, "dry_run", False):
        changes["dry_run"] = True
    return replace(settings, **changes)
