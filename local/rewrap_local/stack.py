"""The embedded stack: a moto server (S3, SQS, Secrets Manager) and the NCP KMS emulator, both on
loopback, wired to rewrap exactly as AWS and NCP would be. No account, no network."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import boto3

from rewrap.app.runtime import Runtime, build_runtime
from rewrap.core.config import Settings
from rewrap.core.ports import QUEUE_MESSAGE_BYTES
from rewrap_local.emulator import KmsEmulator

REGION = "ap-northeast-2"
DEMO_BUCKET = "rewrap-demo-bucket"
# Loopback-only demo credentials; real ones live in Secrets Manager and never in code.
ACCESS_KEY = "local-access-key"
SECRET_KEY = "local-secret-key"
API_KEY = "local-api-key"
SECRET_NAME = "rewrap/ncp-kms"
FAKE_AWS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}


@dataclass
class LocalStack:
    moto_url: str
    kms: KmsEmulator
    key_tag: str
    bucket: str
    secret_id: str
    queue_url: str
    dead_letter_queue_url: str
    signature_version: str = "v2"
    api: str = "1.0"  # NCP_KMS_API: the KMS API generation the client speaks to the emulator
    backend: str = "moto"  # what serves moto_url: "moto", or "localstack" (enforces S3 conditions itself)

    @property
    def session(self) -> boto3.session.Session:
        return boto3.session.Session(**FAKE_AWS)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.moto_url)

    def settings(self, **overrides: Any) -> Settings:
        base = Settings(
            key_tag=self.key_tag,
            secret_id=self.secret_id,
            endpoint=self.kms.url,
            signature_version=self.signature_version,
            kms_api=self.api,
            buckets=frozenset({self.bucket}),
            queue_url=self.queue_url,
            dead_letter_queue_url=self.dead_letter_queue_url,
            sweep_targets=(),
            kms_rate_limit=0,
        )
        return replace(base, **overrides)

    def runtime(self, **overrides: Any) -> Runtime:
        return build_runtime(self.settings(**overrides), session=self.session, endpoint_url=self.moto_url)

    def environment(self) -> dict[str, str]:
        """What a deployed function would see, pointed at this stack (for running the real handlers)."""
        return {
            **function_environment(self.moto_url, self.kms.url, self.key_tag, self.secret_id),
            "NCP_KMS_SIGNATURE_VERSION": self.signature_version,
            "NCP_KMS_API": self.api,
            "NCP_KMS_RATE_LIMIT": "0",
            "REWRAP_BUCKETS": self.bucket,
            "REWRAP_QUEUE_URL": self.queue_url,
            "REWRAP_DEAD_LETTER_QUEUE_URL": self.dead_letter_queue_url,
            "REWRAP_SWEEP_TARGETS": self.bucket,
        }


def function_environment(moto_url: str, kms_url: str, key_tag: str, secret_id: str) -> dict[str, str]:
    """The environment every embedded run of the real handlers shares: AWS on moto, NCP on the emulator."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "NCP_KMS_ENDPOINT": kms_url,
        "NCP_KMS_KEY_TAG": key_tag,
        "NCP_KMS_SECRET_ID": secret_id,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "rewrap",
        "POWERTOOLS_METRICS_NAMESPACE": "Rewrap",
    }


def provision(
    moto_url: str,
    kms: KmsEmulator,
    *,
    bucket: str = DEMO_BUCKET,
    signature_version: str = "v2",
    api: str = "1.0",
    backend: str = "moto",
) -> LocalStack:
    """Create the bucket, the NCP secret, the queues and one KMS key on running servers."""
    kms.add_credentials(ACCESS_KEY, SECRET_KEY, API_KEY)
    session = boto3.session.Session(**FAKE_AWS)
    s3 = session.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})  # type: ignore[typeddict-item]
    secrets = session.client("secretsmanager", endpoint_url=moto_url)
    secret = json.dumps({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "apiKey": API_KEY})
    secret_arn = secrets.create_secret(Name=f"{SECRET_NAME}-{bucket}", SecretString=secret)["ARN"]
    sqs = session.client("sqs", endpoint_url=moto_url)
    # The queues' message size as the template sets it (moto and LocalStack default to 1 MiB, as SQS now does).
    size = {"MaximumMessageSize": str(QUEUE_MESSAGE_BYTES)}
    dlq_url = sqs.create_queue(QueueName=f"{bucket}-rotate-dlq", Attributes=size)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    queue_url = sqs.create_queue(QueueName=f"{bucket}-rotate", Attributes={"RedrivePolicy": redrive, **size})[
        "QueueUrl"
    ]
    return LocalStack(
        moto_url=moto_url,
        kms=kms,
        key_tag=kms.create_key(),
        bucket=bucket,
        secret_id=secret_arn,
        queue_url=queue_url,
        dead_letter_queue_url=dlq_url,
        signature_version=signature_version,
        api=api,
        backend=backend,
    )


@contextmanager
def running_servers(seed: int | None = None) -> Iterator[tuple[str, KmsEmulator]]:
    """A moto server and a KMS emulator on free loopback ports, stopped on exit."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    kms = KmsEmulator(seed=seed).start()
    try:
        yield f"http://{host}:{port}", kms
    finally:
        kms.stop()
        server.stop()


@contextmanager
def local_stack(
    *, bucket: str = DEMO_BUCKET, seed: int | None = None, signature_version: str = "v2", api: str = "1.0"
) -> Iterator[LocalStack]:
    with running_servers(seed) as (moto_url, kms):
        yield provision(moto_url, kms, bucket=bucket, signature_version=signature_version, api=api)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Temporarily set environment variables (the handlers read their configuration from there)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
