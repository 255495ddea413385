"""Wiring: builds the engine and its adapters once per container, on first use (not at import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rewrap.adapters.ncp_kms.client import NcpKmsClient
from rewrap.adapters.ncp_kms.management import NcpKeyManager
from rewrap.adapters.ncp_kms.transport import new_http_client
from rewrap.adapters.s3 import S3Store
from rewrap.adapters.secrets_manager import SecretCredentials
from rewrap.adapters.sns import TopicNotifier
from rewrap.adapters.sqs import DeadLetters, RotateQueue
from rewrap.core.config import Settings, load_settings
from rewrap.core.engine import Engine
from rewrap.core.ports import ObjectStore
from rewrap.deadline import SYSTEM_CLOCK, AdaptiveRateLimiter, Clock
from rewrap.errors import RewrapError


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: S3Store  # the engine's S3 adapter, shared by reports and the sweep
    kms: NcpKmsClient
    s3: Any
    sqs: Any
    session: Any
    dead_letters: DeadLetters | None
    rotate_queue: RotateQueue | None
    notifier: TopicNotifier | None = None  # the alarm topic, told each full rotation run's verdict
    clock: Clock = SYSTEM_CLOCK  # the sweep's wall time (checkpoints); tests set it by hand

    def continue_async(self, context: Any, payload: dict[str, Any]) -> None:
        """Invoke this function again, asynchronously, with ``payload`` (the sweep's hand-over)."""
        import json

        self.session.client("lambda").invoke(
            FunctionName=context.invoked_function_arn, InvocationType="Event", Payload=json.dumps(payload).encode()
        )


def aws_client_config(concurrency: int) -> Any:
    """The one botocore configuration of every AWS client rewrap makes (functions and CLI alike)."""
    from botocore.config import Config

    return Config(
        max_pool_connections=concurrency + 4,
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=3,
        read_timeout=30,
    )


def build_runtime(settings: Settings, *, session: Any = None, endpoint_url: str | None = None) -> Runtime:
    """``endpoint_url`` points every AWS client elsewhere (the local moto server); AWS_ENDPOINT_URL works too."""
    import boto3

    session = session or boto3.session.Session()
    config = aws_client_config(settings.concurrency)
    s3 = session.client("s3", config=config, endpoint_url=endpoint_url)
    sqs = session.client("sqs", config=config, endpoint_url=endpoint_url)
    credentials = SecretCredentials(
        settings.secret_id,
        max_age=settings.secret_cache_seconds,
        client=session.client("secretsmanager", config=config, endpoint_url=endpoint_url),
    )
    kms = NcpKmsClient(
        settings.endpoint,
        credentials,
        api=settings.kms_api,
        signature_version=settings.signature_version,
        http=new_http_client(settings.kms_timeout_seconds, max_connections=settings.concurrency),
        timeout=settings.kms_timeout_seconds,
        max_attempts=settings.kms_max_attempts,
        rate_limiter=AdaptiveRateLimiter(settings.kms_rate_ceiling) if settings.kms_rate_ceiling > 0 else None,
    )
    kms.check_configuration()  # a configuration the secret contradicts fails here, before any object is read
    store = S3Store(
        s3, multipart_copy_threshold=settings.multipart_copy_threshold_bytes, requester_pays=settings.requester_pays
    )
    return Runtime(
        settings=settings,
        engine=Engine(settings, store, kms),
        store=store,
        kms=kms,
        s3=s3,
        sqs=sqs,
        session=session,
        dead_letters=DeadLetters(sqs, settings.dead_letter_queue_url) if settings.dead_letter_queue_url else None,
        rotate_queue=RotateQueue(sqs, settings.queue_url) if settings.queue_url else None,
        notifier=(
            TopicNotifier(session.client("sns", config=config, endpoint_url=endpoint_url), settings.alarm_topic_arn)
            if settings.alarm_topic_arn
            else None
        ),
    )


def build_store(settings: Settings, *, session: Any = None, endpoint_url: str | None = None) -> ObjectStore:
    """An S3 store alone, for what reads or writes objects without KMS (the census, run folders, reports)."""
    import boto3

    session = session or boto3.session.Session()
    s3 = session.client("s3", config=aws_client_config(settings.concurrency), endpoint_url=endpoint_url)
    return S3Store(
        s3, multipart_copy_threshold=settings.multipart_copy_threshold_bytes, requester_pays=settings.requester_pays
    )


@dataclass
class RetireTools:
    """What ``rewrap retire`` needs: S3 (census, run folders, evidence), the key's management API, where the
    evidence goes and who is acting."""

    settings: Settings
    store: ObjectStore
    keys: NcpKeyManager
    report_prefix: str
    who: dict[str, str | None]

    def close(self) -> None:
        self.keys.http.close()


def build_retire_tools(
    settings: Settings, *, report_prefix: str = "", session: Any = None, endpoint_url: str | None = None
) -> RetireTools:
    """The key's management client (its API and host derived from NCP_KMS_API, NCP_KMS_ENDPOINT and the key
    tag), the S3 store and the caller's identity: AWS's (STS), the NCP access key's first characters and
    the local user name."""
    import getpass

    import boto3

    session = session or boto3.session.Session()
    config = aws_client_config(settings.concurrency)
    credentials = SecretCredentials(
        settings.secret_id,
        max_age=settings.secret_cache_seconds,
        client=session.client("secretsmanager", config=config, endpoint_url=endpoint_url),
    )
    keys = NcpKeyManager(settings.kms_api, settings.endpoint, credentials, timeout=settings.kms_timeout_seconds)
    try:
        access_key: str | None = credentials.get().access_key[:4] + "…" if credentials.get().can_sign else "(token)"
    except RewrapError:
        access_key = None
    who = {"awsCaller": _aws_caller(session, endpoint_url), "ncpAccessKey": access_key, "osUser": getpass.getuser()}
    store = build_store(settings, session=session, endpoint_url=endpoint_url)
    return RetireTools(settings, store, keys, report_prefix or settings.report_prefix, who)


def read_version_states(
    settings: Settings, key_tags: list[str], *, session: Any = None, endpoint_url: str | None = None
) -> dict[str, dict[int, str]]:
    """Each key's version states, where the NCP secret's credentials reach its management API (the census's
    rescue list); empty without a secret, with token-only credentials or when NCP cannot be asked."""
    from rewrap.core.census_taker import version_states

    if not settings.secret_id:
        return {}
    try:
        tools = build_retire_tools(settings, session=session, endpoint_url=endpoint_url)
    except RewrapError:
        return {}
    try:
        return version_states(tools.keys, key_tags)
    finally:
        tools.close()


def _aws_caller(session: Any, endpoint_url: str | None) -> str | None:
    """The AWS identity's ARN (STS GetCallerIdentity), or None when it cannot be asked."""
    try:
        return str(session.client("sts", endpoint_url=endpoint_url).get_caller_identity()["Arn"])
    except Exception:  # noqa: BLE001 - who is recorded where it can be known
        return None


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The container's runtime; its pooled HTTP and AWS clients are reused across invocations."""
    global _runtime
    if _runtime is None:
        _runtime = build_runtime(load_settings())
    return _runtime


def reset_runtime() -> None:
    """Forget the container's runtime and settings (tests, or after changing the environment)."""
    global _runtime
    if _runtime is not None:
        _runtime.kms.http.close()
    _runtime = None
    load_settings.cache_clear()
