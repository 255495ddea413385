"""The bench stack: the servers, the bucket, settings and runtimes for rewrap, and the convergence check."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from rewrap_local.stack import ACCESS_KEY, API_KEY, FAKE_AWS, REGION, SECRET_KEY

from .constants import BUCKET, WRAPPED_KEY_METADATA, MiB
from .datasets import FULL, QUICK, DataSet, Item, Scale, TokenPool, build_data_sets
from .meter import Meter
from .servers import Child, kms_main, moto_main


@dataclass
class Params:
    quick: bool
    seed: int
    concurrency: int
    kms_rate_limit: float
    batch: int
    kms_latency_ms: tuple[float, float]
    s3_latency_ms: float
    large_mib: int
    repeat: int
    scale: dict[str, int] = field(default_factory=dict)
    gzip_mib: int = 0
    scan_mib: int = 0


class Bench:
    def __init__(self, params: Params) -> None:
        import boto3

        from rewrap.app.runtime import aws_client_config

        self.params = params
        self.moto = Child(moto_main)
        self.kms = Child(kms_main, params.seed)
        self.moto_url: str = self.moto.hello
        self.kms_url, self.key_tag = self.kms.hello
        self.session = boto3.session.Session(**FAKE_AWS)
        pool_config = aws_client_config(concurrency=8)  # seeding and checking run 8 threads
        self.admin = self.session.client("s3", endpoint_url=self.moto_url, config=pool_config)  # no latency
        # S3's default for new buckets since 2023: ACLs disabled, so no contender reads or restates one
        # (moto also answers GetObjectAcl with a 500 for an object made by a multipart upload)
        self.admin.create_bucket(
            Bucket=BUCKET,
            CreateBucketConfiguration={"LocationConstraint": REGION},  # type: ignore[typeddict-item]
            ObjectOwnership="BucketOwnerEnforced",
        )
        secrets = self.session.client("secretsmanager", endpoint_url=self.moto_url)
        secret = json.dumps({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "apiKey": API_KEY})
        self.secret_id = secrets.create_secret(Name="rewrap/ncp-kms-bench", SecretString=secret)["ARN"]
        self.s3_latency = params.s3_latency_ms / 1000
        self.seeded_at = 0.0

    def close(self) -> None:
        self.kms.stop()
        self.moto.stop()

    def settings(self, **overrides: Any) -> Any:
        from rewrap.core.config import Settings

        base = Settings(
            key_tag=self.key_tag,
            secret_id=self.secret_id,
            endpoint=self.kms_url,
            buckets=frozenset({BUCKET}),
            concurrency=self.params.concurrency,
            kms_rate_limit=self.params.kms_rate_limit,
        )
        return replace(base, **overrides)

    def runtime(self, **overrides: Any) -> tuple[Any, Meter]:
        """A fresh container: empty version cache, the S3 client metered, the secret already fetched."""
        from rewrap.app.runtime import build_runtime

        runtime = build_runtime(self.settings(**overrides), session=self.session, endpoint_url=self.moto_url)
        meter = Meter(self.s3_latency)
        meter.attach(runtime.s3)
        runtime.kms.credentials.get()
        return runtime, meter

    def metered_client(self) -> tuple[Any, Meter]:
        """An S3 client configured as rewrap's own (the floor and the naive rotator use it), metered."""
        from rewrap.app.runtime import aws_client_config

        config = aws_client_config(self.params.concurrency)
        meter = Meter(self.s3_latency)
        return meter.attach(self.session.client("s3", endpoint_url=self.moto_url, config=config)), meter

    def kms_client(self) -> Any:
        from rewrap.adapters.ncp_kms.client import NcpKmsClient
        from rewrap.ncp.signing import Credentials

        credentials = Credentials(ACCESS_KEY, SECRET_KEY, API_KEY)

        class Static:
            def get(self, *, refresh: bool = False) -> Credentials:
                return credentials

        return NcpKmsClient(self.kms_url, Static())

    def kms_stats(self) -> dict[str, Any]:
        return self.kms.call("stats")

    # --- seeding ---
    def fill(self, pool: TokenPool, seed: int) -> list[DataSet]:
        """Data sets with real tokens: old ones made before the rotation, current ones after it."""
        counting = TokenPool()
        build_data_sets(self.scale(), counting, seed)
        pool.old = self.kms.call("encrypt", self.key_tag, counting.wanted[False])
        self.kms.call("rotate", self.key_tag)
        pool.new = self.kms.call("encrypt", self.key_tag, counting.wanted[True])
        sets = build_data_sets(self.scale(), pool, seed)
        for data_set in sets:
            if any(i.envelope for i in data_set.items):
                data_set.envelope_body = _pseudo_random(max(i.size for i in data_set.items if i.envelope))
        return sets

    def scale(self) -> Scale:
        return QUICK if self.params.quick else FULL

    def put(self, data_set: DataSet, items: Sequence[Item] | None = None, *, first: bool = False) -> None:
        """Seed (``first``) or restore objects to their seeded state, in parallel, unmetered."""

        def one(item: Item) -> None:
            common = {"Bucket": BUCKET, "Key": item.key, "ContentType": item.content_type, "Metadata": item.metadata}
            if not item.envelope:
                self.admin.put_object(Body=item.body, **common)
            elif first:
                self.admin.put_object(Body=data_set.envelope_body[: item.size], **common)
            else:  # server-side: the body never moves
                self.admin.copy_object(
                    CopySource={"Bucket": BUCKET, "Key": item.key}, MetadataDirective="REPLACE", **common
                )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, data_set.items if items is None else items))
        self.seeded_at = time.monotonic()

    def as_a_sweep_finds_them(self) -> None:
        """Wait until the seeded objects are older than the second they were written in, as the objects a
        sweep lists are (one copied in its own second waits for that second to end and is read again)."""
        time.sleep(max(0.0, self.seeded_at + 1.1 - time.monotonic()))

    def check_converged(self, items: Sequence[Item]) -> list[str]:
        """Keys whose tokens are not all at the newest version (unmetered)."""
        return unconverged(self.admin, BUCKET, items, newest=2)


def unconverged(
    client: Any, bucket: str, items: Sequence[Item], *, newest: int, tokens: list[str] | None = None
) -> list[str]:
    """Keys of ``items`` whose tokens are not all at ``newest`` (or not all there), read with ``client``;
    ``tokens``, when given, receives every token read."""
    from rewrap.core.tokens import scan

    def wrong(item: Item) -> str | None:
        if item.envelope:
            token = client.head_object(Bucket=bucket, Key=item.key)["Metadata"].get(WRAPPED_KEY_METADATA, "")
            if tokens is not None:
                tokens.append(token)
            return None if token.startswith(f"ncpkms:v{newest}:") else item.key
        body = client.get_object(Bucket=bucket, Key=item.key)["Body"].read()
        found, malformed = scan(body)
        if tokens is not None:
            tokens.extend(t.text for t in found)
        ok = len(found) == item.tokens and not malformed and all(t.version == newest for t in found)
        return None if ok else item.key

    with ThreadPoolExecutor(8) as pool:
        return [k for k in pool.map(wrong, items) if k]


def _pseudo_random(size: int) -> bytes:
    """Incompressible-looking filler, cheap to make (a random block repeated)."""
    block = random.Random(size).randbytes(MiB)
    return (block * (size // MiB + 1))[:size]
