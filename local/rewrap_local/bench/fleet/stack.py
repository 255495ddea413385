"""The embedded stack the fleet runs against: moto and the NCP KMS emulator in child processes, with
the bench's own (unmetered, latency-free) clients and what the deployed functions would see."""

from __future__ import annotations

import json

from rewrap_local.stack import ACCESS_KEY, API_KEY, FAKE_AWS, REGION, SECRET_KEY, function_environment

from ..servers import Child, kms_main, moto_main
from .params import REPORTS_BUCKET, FleetParams, Seeded
from .phase import cpu_seconds


class FleetStack:
    def __init__(self, params: FleetParams) -> None:
        import boto3
        from botocore.config import Config

        self.params = params
        self.moto = Child(moto_main)
        self.kms = Child(kms_main, params.seed)
        self.moto_url: str = self.moto.hello
        self.kms_url, self.key_tag = self.kms.hello
        self.kms.call("latency", params.kms_latency_ms[0] / 1000, params.kms_latency_ms[1] / 1000)
        session = boto3.session.Session(**FAKE_AWS)
        config = Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 5})
        self.admin = session.client("s3", endpoint_url=self.moto_url, config=config)  # unmetered, no latency
        self.sqs = session.client("sqs", endpoint_url=self.moto_url, config=config)
        self.create_bucket(REPORTS_BUCKET)
        secret = json.dumps({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "apiKey": API_KEY})
        secrets = session.client("secretsmanager", endpoint_url=self.moto_url)
        self.secret_id = secrets.create_secret(Name="rewrap/ncp-kms-fleet", SecretString=secret)["ARN"]

    def close(self) -> None:
        self.kms.stop()
        self.moto.stop()

    def create_bucket(self, bucket: str) -> None:
        self.admin.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": REGION},  # type: ignore[typeddict-item]
            ObjectOwnership="BucketOwnerEnforced",
        )

    def environment(self, seeded: Seeded) -> dict[str, str]:
        """What the deployed functions would see, pointed at the embedded stack."""
        return {
            **function_environment(self.moto_url, self.kms_url, self.key_tag, self.secret_id),
            "REWRAP_BUCKETS": seeded.bucket,
            "REWRAP_QUEUE_URL": seeded.queue_url,
            "REWRAP_DEAD_LETTER_QUEUE_URL": seeded.dead_letter_queue_url,
            "REWRAP_REPORT_PREFIX": f"s3://{REPORTS_BUCKET}/{seeded.bucket}/",
            "REWRAP_SWEEP_KEYS_PER_MESSAGE": str(self.params.keys_per_message),
            "REWRAP_CONCURRENCY": str(self.params.concurrency),
            # NCP's budget shared by the containers that may run at once, as the template derives it
            "REWRAP_MAX_CONTAINERS": str(self.params.workers),
            # the bench's sweeps are seconds apart, not a day: S3's clock is this machine's, no margin needed
            "REWRAP_SWEEP_CLOCK_SKEW_SECONDS": "0",
        }

    def queue_count(self, url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in names)

    def kms_requests(self) -> dict[str, int]:
        """The emulator's request counts so far, by action."""
        requests: dict[str, int] = self.kms.call("stats")["requests"]
        return requests

    def server_cpu(self) -> dict[str, float]:
        """CPU seconds moto and the emulator have used so far."""
        return {"moto": cpu_seconds(self.moto.process.pid), "kms": cpu_seconds(self.kms.process.pid)}
