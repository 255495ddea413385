"""``make bench``: rewrap against a naive rotator and the S3-request floor, on the embedded stack.

The moto server and the NCP KMS emulator each run in a child process, so the CPU time and memory of
this process are rewrap's (and the other contenders') alone. Every S3 client (rewrap's, the naive
rotator's, the floor's) gets the same injected latency and request/byte counters through botocore
event hooks; the emulator delays every KMS request. Per data set, each contender starts from the
same seeded state (objects at key version 1, one rotation done in the emulator):

* **rewrap**: the real engine, ``runtime.engine.rotate(refs)`` in batches of one rotate request;
* **naive**: sequential; per object GET, one re-encrypt request per token, PUT (envelopes: HEAD, one
  re-encrypt, copy with REPLACE); measured on a stratified sample when the full set would take long;
* **floor**: only the S3 requests that cannot be avoided (rotating text GET+PUT, envelope GET+COPY,
  current text GET, current envelope GET: an envelope's body may hold tokens too), at rewrap's
  concurrency, no KMS at all.

Figures are printed, appended to ``<out>/results.jsonl``, tabulated in ``<out>/latest.md`` and charted
in ``<out>/throughput.png``. The exit status is non-zero only when the benchmark itself breaks (a crash
or an object left wrong), never for a missed target.

Run: ``python -m rewrap_local.bench [--quick] [--out docs/bench]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
BUCKET = "rewrap-bench"
REGION = "ap-northeast-2"
FAKE_AWS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}
# Loopback-only credentials of the emulator (the same as the demo stack's).
ACCESS_KEY, SECRET_KEY, API_KEY = "local-access-key", "local-secret-key", "local-api-key"
DATA_KEY_BYTES = 32  # what a token wraps: an AES-256 data key → a 90-character token
WRAPPED_KEY_METADATA = "wrapped-key"
TARGET_PEAK_MIB = 256


# --- the servers, each in its own process ----------------------------------------------------------
def _moto_main(conn: Connection) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    conn.send(f"http://{host}:{port}")
    with contextlib.suppress(EOFError):
        conn.recv()  # any message, or the parent going away, stops the server
    server.stop()


def _kms_main(conn: Connection, seed: int) -> None:
    from rewrap_local.emulator import KmsEmulator

    kms = KmsEmulator(seed).start()
    kms.add_credentials(ACCESS_KEY, SECRET_KEY, API_KEY)
    conn.send((kms.url, kms.create_key()))
    rng = random.Random(seed)
    while True:
        try:
            command, args = conn.recv()
        except EOFError:
            break
        if command == "stop":
            break
        try:
            if command == "encrypt":  # n fresh data keys wrapped at the key's current version
                tag, n = args
                value: Any = [kms.encrypt(tag, rng.randbytes(DATA_KEY_BYTES)) for _ in range(n)]
            elif command == "rotate":
                value = kms.rotate(*args)
            elif command == "latency":
                value = kms.set_latency(*args)
            elif command == "stats":
                value = kms.stats.snapshot()
            else:
                raise ValueError(f"unknown command {command!r}")
            conn.send(("ok", value))
        except Exception as exc:  # noqa: BLE001 (reported to the parent, which raises it)
            conn.send(("error", repr(exc)))
    kms.stop()


class Child:
    """A server in a child process, driven through a pipe."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child_conn, *args), daemon=True)
        self.process.start()
        child_conn.close()
        self.hello = self.conn.recv()

    def call(self, command: str, *args: Any) -> Any:
        self.conn.send((command, args))
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"emulator {command} failed: {value}")
        return value

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop", ()))
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


# --- S3 latency and counters -------------------------------------------------------------------------
class Meter:
    """Injected S3 latency and what a client moved: requests per operation, body bytes read/written."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bytes_read = 0
        self.bytes_written = 0

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.s3", self._before_send)
        client.meta.events.register("after-call.s3.GetObject", self._after_get)
        return client

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_read = self.bytes_written = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": sum(self.requests.values()),
                "ops": dict(sorted(self.requests.items())),
                "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written,
            }

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        written = 0
        if operation in ("PutObject", "UploadPart"):
            headers = request.headers
            # aws-chunked bodies (flexible checksums) announce the payload size separately.
            written = int(headers.get("x-amz-decoded-content-length") or headers.get("Content-Length") or 0)
        with self._lock:
            self.requests[operation] += 1
            self.bytes_written += written
        if self.latency_s > 0:
            time.sleep(self.latency_s)  # in the calling thread, like a network round trip

    def _after_get(self, http_response: Any, **_: Any) -> None:
        if http_response.status_code < 300:
            with self._lock:
                self.bytes_read += int(http_response.headers.get("content-length") or 0)


# --- data sets -----------------------------------------------------------------------------------------
@dataclass
class Item:
    """One seeded object, kept so any contender's run can be undone (envelope bodies are shared)."""

    key: str
    envelope: bool
    current: bool  # seeded at the newest key version already
    tokens: int
    size: int
    content_type: str
    metadata: dict[str, str]
    body: bytes | None = None

    @property
    def group(self) -> str:
        return f"{'envelope' if self.envelope else 'text'}-{'current' if self.current else 'old'}-{self.tokens > 3}"


@dataclass
class DataSet:
    name: str
    title: str
    items: list[Item]
    envelope_body: bytes = b""
    naive_objects: int = 0  # sample size for the naive rotator (0 = all)

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)


class TokenPool:
    """Tokens handed out in order; ``current`` ones come from the pool made after the rotation."""

    def __init__(self) -> None:
        self.old: list[str] = []
        self.new: list[str] = []
        self.wanted = Counter[bool]()

    def take(self, current: bool) -> str:
        self.wanted[current] += 1
        pool = self.new if current else self.old
        if not pool:  # counting pass: a placeholder of the real length
            return "ncpkms:v1:" + "A" * 80
        return pool.pop()


_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima")


def _prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _small_doc(rng: random.Random, i: int, tokens: list[str]) -> bytes:
    doc = {
        "id": i,
        "service": f"svc-{i % 37}",
        "owner": f"team-{rng.choice(_WORDS)}",
        "credentials": {f"secret{j}": t for j, t in enumerate(tokens)},
        "notes": _prose(rng, rng.randint(10, 60)),
    }
    return json.dumps(doc, indent=2).encode()


def _config_doc(rng: random.Random, tokens: list[str]) -> bytes:
    tenants = [{"name": f"tenant-{j}", "region": REGION, "dbPassword": t} for j, t in enumerate(tokens)]
    return json.dumps({"version": 3, "tenants": tenants, "comment": _prose(rng, 40)}, indent=2).encode()


def _ndjson(rng: random.Random, rows: int, pool: TokenPool) -> bytes:
    lines = [
        json.dumps(
            {
                "id": r,
                "email": f"user{r}@example.com",
                "plan": rng.choice(("free", "pro", "team")),
                "ssn": pool.take(False),
                "note": _prose(rng, rng.randint(3, 12)),
            }
        )
        for r in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def _text(key: str, body: bytes, tokens: int, current: bool, content_type: str = "application/json") -> Item:
    return Item(key, False, current, tokens, len(body), content_type, {"owner": "bench"}, body)


def _envelope(key: str, size: int, token: str, current: bool) -> Item:
    metadata = {WRAPPED_KEY_METADATA: token, "cipher": "AES256-GCM"}
    return Item(key, True, current, 1, size, "application/octet-stream", metadata)


@dataclass(frozen=True)
class Scale:
    small: int
    ndjson_files: int
    ndjson_rows: int
    envelopes: int
    envelope_mib: int
    mixed: int
    large_mib: int
    gzip_mib: int
    scan_mib: int
    naive_small: int
    naive_ndjson: int
    naive_mixed: int


FULL = Scale(400, 10, 3000, 16, 16, 400, 1024, 256, 64, 100, 1, 0)
QUICK = Scale(100, 4, 800, 6, 4, 120, 256, 32, 16, 40, 1, 60)


def build_data_sets(scale: Scale, pool: TokenPool, seed: int) -> list[DataSet]:
    """Deterministic for a seed, so a counting pass and the real pass build the same objects."""
    rng = random.Random(seed)
    small: list[Item] = []
    for i in range(scale.small):
        tokens = [pool.take(False) for _ in range(rng.randint(1, 3))]
        small.append(_text(f"small/{i:05d}.json", _small_doc(rng, i, tokens), len(tokens), False))
    ndjson = [
        _text(f"ndjson/{i:03d}.ndjson", _ndjson(rng, scale.ndjson_rows, pool), scale.ndjson_rows, False, "x-ndjson")
        for i in range(scale.ndjson_files)
    ]
    envelope_bytes = scale.envelope_mib * MiB
    envelopes = [
        _envelope(f"envelope/{i:03d}.bin", envelope_bytes, pool.take(False), False) for i in range(scale.envelopes)
    ]
    mixed: list[Item] = []
    for i in range(scale.mixed):
        current = (i // 10) % 2 == 1  # blocks of ten, so every kind is half current
        kind = i % 10
        key = f"mixed/{i:05d}"
        if kind <= 6:
            tokens = [pool.take(current) for _ in range(rng.randint(1, 3))]
            mixed.append(_text(f"{key}.json", _small_doc(rng, i, tokens), len(tokens), current))
        elif kind == 7:
            tokens = [pool.take(current) for _ in range(rng.randint(20, 60))]
            mixed.append(_text(f"{key}.config.json", _config_doc(rng, tokens), len(tokens), current))
        else:
            mixed.append(_envelope(f"{key}.bin", 256 * 1024, pool.take(current), current))
    return [
        DataSet("small", f"{scale.small} small JSON files, 1-3 tokens each", small, naive_objects=scale.naive_small),
        DataSet(
            "ndjson",
            f"{scale.ndjson_files} NDJSON files x {scale.ndjson_rows:,} tokens",
            ndjson,
            naive_objects=scale.naive_ndjson,
        ),
        DataSet(
            "envelope",
            f"{scale.envelopes} envelope objects x {scale.envelope_mib} MiB, wrapped key in metadata",
            envelopes,
            envelope_body=b"",
        ),
        DataSet(
            "mixed",
            f"{scale.mixed} mixed objects (70% small, 10% configs of 20-60 tokens, 20% envelopes), half current",
            mixed,
            naive_objects=scale.naive_mixed,
        ),
    ]


def stratified(items: Sequence[Item], n: int) -> list[Item]:
    """About ``n`` items with the same mix of kinds as ``items`` (every k-th within each kind)."""
    if n <= 0 or n >= len(items):
        return list(items)
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    picked: list[Item] = []
    for members in groups.values():
        want = max(1, round(len(members) * n / len(items)))
        step = len(members) / want
        picked.extend(members[int(k * step)] for k in range(want))
    return sorted(picked, key=lambda i: i.key)


# --- the bench stack ---------------------------------------------------------------------------------
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
        from botocore.config import Config

        self.params = params
        self.moto = Child(_moto_main)
        self.kms = Child(_kms_main, params.seed)
        self.moto_url: str = self.moto.hello
        self.kms_url, self.key_tag = self.kms.hello
        self.session = boto3.session.Session(**FAKE_AWS)
        pool_config = Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 3})
        self.admin = self.session.client("s3", endpoint_url=self.moto_url, config=pool_config)  # no latency
        self.admin.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})  # type: ignore[typeddict-item]
        secrets = self.session.client("secretsmanager", endpoint_url=self.moto_url)
        secret = json.dumps({"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "apiKey": API_KEY})
        self.secret_id = secrets.create_secret(Name="rewrap/ncp-kms-bench", SecretString=secret)["ARN"]
        self.s3_latency = params.s3_latency_ms / 1000

    def close(self) -> None:
        self.kms.stop()
        self.moto.stop()

    def settings(self, **overrides: Any) -> Any:
        from rewrap.config import Settings

        base = Settings(
            key_tag=self.key_tag,
            secret_id=self.secret_id,
            endpoint=self.kms_url,
            buckets=frozenset({BUCKET}),
            concurrency=self.params.concurrency,
            kms_rate_limit=self.params.kms_rate_limit,
            # the data sets name their text objects *.json / *.ndjson, as users can declare them
            # (REWRAP_TEXT_SUFFIXES): small ones are then read with one GET instead of HEAD + GET
            text_suffixes=(".json", ".ndjson"),
        )
        return replace(base, **overrides)

    def runtime(self, **overrides: Any) -> tuple[Any, Meter]:
        """A fresh container: empty version cache, the S3 client metered, the secret already fetched."""
        from rewrap.runtime import build_runtime

        runtime = build_runtime(self.settings(**overrides), session=self.session, endpoint_url=self.moto_url)
        meter = Meter(self.s3_latency)
        meter.attach(runtime.s3)
        runtime.kms.credentials.get()
        return runtime, meter

    def metered_client(self) -> tuple[Any, Meter]:
        from botocore.config import Config

        config = Config(
            max_pool_connections=self.params.concurrency + 4, retries={"mode": "standard", "max_attempts": 3}
        )
        meter = Meter(self.s3_latency)
        return meter.attach(self.session.client("s3", endpoint_url=self.moto_url, config=config)), meter

    def kms_client(self) -> Any:
        from rewrap.ncp.client import NcpKmsClient
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

    def check_converged(self, items: Sequence[Item]) -> list[str]:
        """Keys whose tokens are not all at the newest version (unmetered)."""
        from rewrap.tokens import scan

        newest = 2

        def wrong(item: Item) -> str | None:
            if item.envelope:
                token = self.admin.head_object(Bucket=BUCKET, Key=item.key)["Metadata"].get(WRAPPED_KEY_METADATA, "")
                return None if token.startswith(f"ncpkms:v{newest}:") else item.key
            body = self.admin.get_object(Bucket=BUCKET, Key=item.key)["Body"].read()
            found, malformed = scan(body)
            ok = len(found) == item.tokens and not malformed and all(t.version == newest for t in found)
            return None if ok else item.key

        with ThreadPoolExecutor(8) as pool:
            return [k for k in pool.map(wrong, items) if k]


def _pseudo_random(size: int) -> bytes:
    """Incompressible-looking filler, cheap to make (a random block repeated)."""
    block = random.Random(size).randbytes(MiB)
    return (block * (size // MiB + 1))[:size]


# --- contenders -----------------------------------------------------------------------------------------
def _kms_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for action in ("re-encrypt", "decrypt"):
        out[f"{action}_requests"] = after["requests"].get(action, 0) - before["requests"].get(action, 0)
        out[f"{action}_items"] = after["items"].get(action, 0) - before["items"].get(action, 0)
    return out


class CpuClock:
    """CPU seconds used by this process and by the two servers over a block (the cores are shared, so
    the split tells whose work a run was waiting for)."""

    def __init__(self, bench: Bench) -> None:
        self.pids = {"moto": bench.moto.process.pid, "kms": bench.kms.process.pid}

    def __enter__(self) -> CpuClock:
        self.start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        self.seconds = {who: round(end[who] - self.start[who], 2) for who in end}

    def _read(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out = {"self": usage.ru_utime + usage.ru_stime}
        ticks = os.sysconf("SC_CLK_TCK")
        for who, pid in self.pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[who] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            except (OSError, IndexError, ValueError):
                out[who] = 0.0
        return out


class PeakRss:
    """This process's peak RSS over a block (Linux: clear_refs 5 resets VmHWM to the current RSS)."""

    def __enter__(self) -> PeakRss:
        self.reset = _reset_hwm()
        self.start_kib = _status_kib("VmRSS")
        self.peak_kib = self.start_kib
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_kib = _status_kib("VmHWM") if self.reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @property
    def delta_mib(self) -> float:
        return max(0, self.peak_kib - self.start_kib) / 1024


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def run_rewrap(bench: Bench, data_set: DataSet, items: Sequence[Item], runtime: Any, meter: Meter) -> dict[str, Any]:
    from rewrap.ports import ObjectRef

    refs = [ObjectRef(BUCKET, item.key) for item in items]
    meter.reset()
    kms_before = bench.kms_stats()
    statuses: Counter[str] = Counter()
    with PeakRss() as rss, CpuClock(bench) as cpu:
        started = time.perf_counter()
        for at in range(0, len(refs), bench.params.batch):
            for result in runtime.engine.rotate(refs[at : at + bench.params.batch]):
                statuses[str(result.status)] += 1
                if result.error is not None:
                    statuses[f"error: {result.error.reason[:80]}"] += 1
        seconds = time.perf_counter() - started
    return _figures(
        items,
        seconds,
        meter.snapshot(),
        _kms_delta(kms_before, bench.kms_stats()),
        statuses=dict(statuses),
        peak_rss_mib=round(rss.delta_mib, 1),
        cpu_s=cpu.seconds,
    )


def run_naive(bench: Bench, items: Sequence[Item]) -> dict[str, Any]:
    """The straightforward script: one object after the other, one KMS request per token."""
    from rewrap.tokens import scan, splice, token_version

    s3, meter = bench.metered_client()
    kms = bench.kms_client()
    kms_before = bench.kms_stats()
    clock = CpuClock(bench).__enter__()
    started = time.perf_counter()
    for item in items:
        if item.envelope:
            head = s3.head_object(Bucket=BUCKET, Key=item.key)
            metadata = dict(head["Metadata"])
            old = metadata[WRAPPED_KEY_METADATA]
            new = kms.re_encrypt(bench.key_tag, [old])[0]
            if token_version(new) > token_version(old):
                metadata[WRAPPED_KEY_METADATA] = new
                s3.copy_object(
                    Bucket=BUCKET,
                    Key=item.key,
                    CopySource={"Bucket": BUCKET, "Key": item.key},
                    MetadataDirective="REPLACE",
                    Metadata=metadata,
                    ContentType=head["ContentType"],
                )
            continue
        response = s3.get_object(Bucket=BUCKET, Key=item.key)
        body = response["Body"].read()
        found, _ = scan(body)
        replacements = {}
        for token in found:
            new = kms.re_encrypt(bench.key_tag, [token.text])[0]
            if token_version(new) > token.version:
                replacements[token.text] = new
        if replacements:  # skip writing an object that did not change (kinder to the naive script)
            s3.put_object(
                Bucket=BUCKET,
                Key=item.key,
                Body=splice(body, found, replacements),
                Metadata=response["Metadata"],
                ContentType=response["ContentType"],
            )
    seconds = time.perf_counter() - started
    clock.__exit__()
    kms.http.close()
    return _figures(items, seconds, meter.snapshot(), _kms_delta(kms_before, bench.kms_stats()), cpu_s=clock.seconds)


def run_floor(bench: Bench, items: Sequence[Item]) -> dict[str, Any]:
    """Only the unavoidable S3 requests, at rewrap's concurrency; content is written back unchanged."""
    s3, meter = bench.metered_client()

    def one(item: Item) -> None:
        if item.envelope:  # its body is read too: it may hold tokens of its own
            head = s3.get_object(Bucket=BUCKET, Key=item.key)
            head["Body"].read()
            if not item.current:
                s3.copy_object(
                    Bucket=BUCKET,
                    Key=item.key,
                    CopySource={"Bucket": BUCKET, "Key": item.key},
                    MetadataDirective="REPLACE",
                    Metadata=head["Metadata"],
                    ContentType=head["ContentType"],
                )
            return
        response = s3.get_object(Bucket=BUCKET, Key=item.key)
        body = response["Body"].read()
        if not item.current:
            s3.put_object(
                Bucket=BUCKET,
                Key=item.key,
                Body=body,
                Metadata=response["Metadata"],
                ContentType=response["ContentType"],
            )

    with CpuClock(bench) as cpu:
        started = time.perf_counter()
        with ThreadPoolExecutor(bench.params.concurrency) as pool:
            list(pool.map(one, items))
        seconds = time.perf_counter() - started
    return _figures(items, seconds, meter.snapshot(), {}, cpu_s=cpu.seconds)


def _figures(
    items: Sequence[Item], seconds: float, s3: dict[str, Any], kms: dict[str, int], **extra: Any
) -> dict[str, Any]:
    n, tokens = len(items), sum(i.tokens for i in items)
    out: dict[str, Any] = {
        "objects": n,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "objects_per_s": sig(n / seconds),
        "tokens_per_s": sig(tokens / seconds),
        "s3_requests": s3["requests"],
        "s3_requests_per_object": round(s3["requests"] / n, 2),
        "s3_ops": s3["ops"],
        "bytes_read": s3["bytes_read"],
        "bytes_written": s3["bytes_written"],
        "bytes_read_per_object": round(s3["bytes_read"] / n),
        "bytes_written_per_object": round(s3["bytes_written"] / n),
    }
    if kms:
        requests = kms["re-encrypt_requests"]
        out.update(kms)
        out["kms_requests_per_token"] = round(requests / tokens, 4) if tokens else 0.0
        out["tokens_per_kms_request"] = round(kms["re-encrypt_items"] / requests, 1) if requests else None
    out.update(extra)
    return out


def sig(x: float, digits: int = 3) -> float:
    """``x`` to ``digits`` significant digits (throughputs span 0.03 to 30,000 per second)."""
    return float(f"{x:.{digits}g}")


def _rate(figures: dict[str, Any], what: str) -> float:
    return figures[what] / figures["seconds"]


# --- one data set ---------------------------------------------------------------------------------------
def measure(bench: Bench, data_set: DataSet, log: Callable[[str], None]) -> dict[str, Any]:
    """Naive once (a sample), then floor and rewrap alternately ``repeat`` times; the medians count."""
    started = time.perf_counter()
    bench.put(data_set, first=True)
    sample = stratified(data_set.items, data_set.naive_objects)
    naive = run_naive(bench, sample)
    bench.put(data_set, sample)  # undo the naive run
    floors: list[dict[str, Any]] = []
    rewraps: list[dict[str, Any]] = []
    wrong: list[str] = []
    for round_ in range(bench.params.repeat):
        if round_:
            bench.put(data_set)  # undo the previous rewrap run
        floors.append(run_floor(bench, data_set.items))  # writes back what it read: nothing to undo
        runtime, meter = bench.runtime()  # a fresh container each time: empty version cache
        rewraps.append(run_rewrap(bench, data_set, data_set.items, runtime, meter))
        wrong += bench.check_converged(data_set.items)
        if round_ + 1 < bench.params.repeat:
            runtime.kms.http.close()
    floor, rewrap = _median_run(floors), _median_run(rewraps)
    figures: dict[str, Any] = {
        "title": data_set.title,
        "objects": len(data_set.items),
        "tokens": data_set.tokens,
        "bytes": sum(i.size for i in data_set.items),
        "current_objects": sum(i.current for i in data_set.items),
        "rewrap": rewrap,
        "naive": naive,
        "floor": floor,
        "rewrap_seconds_all": [r["seconds"] for r in rewraps],
        "floor_seconds_all": [f["seconds"] for f in floors],
        "speedup_objects": sig(_rate(rewrap, "objects") / _rate(naive, "objects")),
        "speedup_tokens": sig(_rate(rewrap, "tokens") / _rate(naive, "tokens")),
        "floor_speedup_objects": sig(_rate(floor, "objects") / _rate(naive, "objects")),
        "time_vs_floor": round(rewrap["seconds"] / floor["seconds"], 2),
        "not_converged": sorted(set(wrong)),
    }
    if data_set.name == "mixed":
        # Again, warm: every object is current now and the container knows the newest version.
        current = [i for i in data_set.items if i.current]
        figures["current_again"] = run_rewrap(bench, data_set, current, runtime, meter)
        bench.put(data_set)
        verify_runtime, verify_meter = bench.runtime(verify=True)
        verified = run_rewrap(bench, data_set, data_set.items, verify_runtime, verify_meter)
        figures["verify"] = verified
        figures["verify_time_ratio"] = round(verified["seconds"] / rewrap["seconds"], 2)
        figures["not_converged"] += bench.check_converged(data_set.items)
        verify_runtime.kms.http.close()
    runtime.kms.http.close()
    log(f"  {data_set.name}: measured in {time.perf_counter() - started:.0f} s")
    return figures


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


# --- the 1 GiB text object, in a fresh process ---------------------------------------------------------
def seed_large(bench: Bench, key: str, size_mib: int, log: Callable[[str], None]) -> int:
    """A text object of ``size_mib`` MiB with a distinct token every 256 KiB (each 16 MiB segment
    changes, so every byte is read and rewritten: the worst case for memory)."""
    block, part = 256 * 1024, 16 * MiB
    blocks = size_mib * MiB // block
    # Tokens of the current version; the key is rotated once more before the measurement.
    tokens: list[str] = bench.kms.call("encrypt", bench.key_tag, blocks)
    filler_line = (" ".join(_WORDS) + "\n").encode()
    filler = (filler_line * (block // len(filler_line) + 1))[:block]
    upload = bench.admin.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="text/plain")
    per_part = part // block

    def one(number: int) -> dict[str, Any]:
        pieces = []
        for b in range((number - 1) * per_part, number * per_part):
            line = json.dumps({"block": b, "secret": tokens[b]}).encode() + b"\n"
            pieces.append(line + filler[len(line) :])
        response = bench.admin.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=b"".join(pieces)
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(one, range(1, blocks // per_part + 1)))
    bench.admin.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    log(f"  seeded a {size_mib} MiB text object with {blocks:,} tokens")
    return blocks


def measure_large(bench: Bench, log: Callable[[str], None]) -> dict[str, Any]:
    key = "large/big.log"
    tokens = seed_large(bench, key, bench.params.large_mib, log)
    version = bench.kms.call("rotate", bench.key_tag)
    out = _run_large_child(bench, key)
    out.update({"size_mib": bench.params.large_mib, "tokens": tokens, "new_version": version})
    bench.admin.delete_object(Bucket=BUCKET, Key=key)
    return out


def _run_large_child(bench: Bench, key: str) -> dict[str, Any]:
    """Rotate one large object in a fresh interpreter, so its peak memory is its own."""
    spec = {
        "moto_url": bench.moto_url,
        "settings": {
            "key_tag": bench.key_tag,
            "secret_id": bench.secret_id,
            "endpoint": bench.kms_url,
            "concurrency": bench.params.concurrency,
            "kms_rate_limit": bench.params.kms_rate_limit,
        },
        "s3_latency_s": bench.s3_latency,
        "key": key,
    }
    kms_before = bench.kms_stats()
    child = subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "rewrap_local.bench", "--large-child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if child.returncode != 0:
        raise RuntimeError(f"large-object child failed:\n{child.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    out.update(_kms_delta(kms_before, bench.kms_stats()))
    return out


def large_child(spec_json: str) -> None:
    """Runs in a fresh interpreter: rotate one large text object, report memory above the baseline."""
    spec = json.loads(spec_json)
    import boto3

    from rewrap.config import Settings
    from rewrap.ports import ObjectRef
    from rewrap.runtime import build_runtime

    settings = Settings(buckets=frozenset({BUCKET}), **spec["settings"])
    runtime = build_runtime(settings, session=boto3.session.Session(**FAKE_AWS), endpoint_url=spec["moto_url"])
    meter = Meter(spec["s3_latency_s"])
    meter.attach(runtime.s3)
    runtime.kms.credentials.get()
    baseline_kib = _status_kib("VmRSS")
    started = time.perf_counter()
    [result] = runtime.engine.rotate([ObjectRef(BUCKET, spec["key"])])
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s3 = meter.snapshot()
    report = {
        "status": str(result.status),
        "reason": result.error.reason if result.error else None,
        "rotated_tokens": result.rotated_tokens,
        "seconds": round(seconds, 2),
        "mib_per_s": round(spec_size_mib(runtime, spec) / seconds, 1),
        "baseline_rss_mib": round(baseline_kib / 1024, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "peak_above_baseline_mib": round((peak_kib - baseline_kib) / 1024, 1),
        "s3": s3,
    }
    print(json.dumps(report))


# --- scanner cost and gzip bodies -------------------------------------------------------------------------
def scan_cost(size_mib: int, rounds: int = 7) -> dict[str, Any]:
    """The scanner on a plain NDJSON body (no escapes: the common case) against the plain-only scan
    it grew from, measured interleaved in this process; and on the same body holding one "%", which
    takes the escape-aware path."""
    import base64

    from rewrap import tokens as scanner

    def plain_only(data: bytes) -> int:  # the scan before escaped forms, as it was: one regex pass
        found, malformed = [], []
        for match in scanner._CANDIDATE_RE.finditer(data):
            raw = match.group(0)
            escaped = b"\\/" in raw
            text = (raw.replace(b"\\/", b"/") if escaped else raw).decode("ascii")
            problem = scanner._check(text)
            if problem is None:
                found.append(scanner.Found(text, int(match.group(1)), match.start(), match.end(), escaped))
            else:
                malformed.append(scanner.Malformed(match.start(), problem))
        return len(found)

    rng = random.Random(3)
    line = 0
    parts: list[bytes] = []
    size = 0
    while size < size_mib * MiB:
        token = f"ncpkms:v1:{base64.b64encode(rng.randbytes(DATA_KEY_BYTES + 28)).decode()}"
        row = json.dumps({"i": line, "user": f"u{line}", "secret": token, "note": _prose(rng, 12)}).encode() + b"\n"
        parts.append(row)
        size += len(row)
        line += 1
    body = b"".join(parts)
    # Timed in 1 MiB pieces, each variant ``rounds`` times interleaved, the best kept per piece: on
    # a shared machine a long timing mostly measures the neighbours.
    pieces = [body[i : i + MiB] for i in range(0, len(body), MiB)]
    pieces = [p[: p.rfind(b"\n") + 1] or p for p in pieces]
    best = {"before": 0.0, "now": 0.0, "now_with_escapes": 0.0}
    counts = dict.fromkeys(best, 0)
    for piece in pieces:
        escaped = piece.replace(b'"note"', b'"n%te"', 1)
        variants: dict[str, Callable[[], int]] = {
            "before": lambda piece=piece: plain_only(piece),
            "now": lambda piece=piece: len(scanner.scan(piece)[0]),
            "now_with_escapes": lambda escaped=escaped: len(scanner.scan(escaped)[0]),
        }
        fastest = dict.fromkeys(best, float("inf"))
        for _ in range(rounds):
            for name, run in variants.items():
                started = time.perf_counter()
                found = run()
                fastest[name] = min(fastest[name], time.perf_counter() - started)
        for name in best:
            best[name] += fastest[name]
            counts[name] += found if name == "now_with_escapes" else variants[name]()
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"scanners disagree: {counts}")
    mib = len(body) / MiB
    return {
        "body_mib": round(mib, 1),
        "tokens": counts["now"],
        "before_mib_per_s": round(mib / best["before"], 1),
        "now_mib_per_s": round(mib / best["now"], 1),
        "with_escapes_mib_per_s": round(mib / best["now_with_escapes"], 1),
        "cost_ratio": round(best["now"] / best["before"], 3),
        "escaped_cost_ratio": round(best["now_with_escapes"] / best["before"], 3),
    }


def seed_gzip(bench: Bench, key: str, size_mib: int, log: Callable[[str], None]) -> tuple[int, int]:
    """A gzip NDJSON object (magic bytes only, no Content-Encoding) of about ``size_mib`` MiB of
    compressed data, in two gzip members, with a token every ~64 KiB of text; (tokens, text bytes)."""
    import base64
    import zlib

    rng = random.Random(11)
    part_bytes = 16 * MiB
    upload = bench.admin.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="application/x-ndjson")
    parts: list[dict[str, Any]] = []
    pending = bytearray()
    deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
    written = tokens = text_bytes = 0
    pool: list[str] = bench.kms.call("encrypt", bench.key_tag, 512)

    def flush(final: bool = False) -> None:
        while len(pending) >= part_bytes or (final and pending):
            body = bytes(pending[:part_bytes])
            del pending[:part_bytes]
            response = bench.admin.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=len(parts) + 1, Body=body
            )
            parts.append({"PartNumber": len(parts) + 1, "ETag": response["ETag"]})

    member_switched = False
    while written + len(pending) < size_mib * MiB:
        rows = []
        for _ in range(48):  # ~64 KiB of text: mostly incompressible base64 payloads, one token
            rows.append(json.dumps({"payload": base64.b64encode(rng.randbytes(1000)).decode()}))
        rows.append(json.dumps({"secret": pool[tokens % len(pool)]}))
        chunk = ("\n".join(rows) + "\n").encode()
        tokens += 1
        text_bytes += len(chunk)
        pending += deflate.compress(chunk)
        if not member_switched and written + len(pending) >= size_mib * MiB // 2:
            pending += deflate.flush()  # a second member from here on
            deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
            member_switched = True
        before = len(pending)
        flush()
        written += before - len(pending)
    pending += deflate.flush()
    flush(final=True)
    bench.admin.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    log(f"  seeded a {size_mib} MiB gzip NDJSON object ({text_bytes / MiB:,.0f} MiB of text) with {tokens:,} tokens")
    return tokens, text_bytes


def measure_gzip(bench: Bench, log: Callable[[str], None]) -> dict[str, Any]:
    key = "large/events.ndjson.gz"
    tokens, text_bytes = seed_gzip(bench, key, bench.params.gzip_mib, log)
    version = bench.kms.call("rotate", bench.key_tag)
    out = _run_large_child(bench, key)
    out.update(
        {
            "size_mib": bench.params.gzip_mib,
            "text_mib": round(text_bytes / MiB, 1),
            "tokens": tokens,
            "new_version": version,
            "text_mib_per_s": round(text_bytes / MiB / out["seconds"], 1),
            "tokens_per_s": round(tokens / out["seconds"], 1),
        }
    )
    bench.admin.delete_object(Bucket=BUCKET, Key=key)
    return out


def spec_size_mib(runtime: Any, spec: dict[str, Any]) -> float:
    return runtime.s3.head_object(Bucket=BUCKET, Key=spec["key"])["ContentLength"] / MiB


# --- cold start -------------------------------------------------------------------------------------------
def import_times(runs: int) -> dict[str, Any]:
    """Cold-start imports of the built functions (``make package``), run as Lambda runs them."""
    import tempfile

    from rewrap_local.artifacts import BuiltFunction, cold_imports, directory_bytes, zipped_bytes

    out: dict[str, Any] = {"runs": runs}
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("rotate", "sweep"):
            function = BuiltFunction.find(name)
            figures = cold_imports(function, runs, {"AWS_REGION": REGION}, Path(scratch) / name)
            out[name] = {case: round(f["median_s"] * 1000, 1) for case, f in figures.items()}
        layer = BuiltFunction.find("rotate").layer_dir.parent
        out["layer_mib"] = round(directory_bytes(layer) / MiB, 1)
        out["layer_zip_mib"] = round(zipped_bytes(layer, Path(scratch)) / MiB, 1)
    rotate = out["rotate"]
    out["app_vs_boto3"] = round(rotate["app_with_bytecode"] / rotate["boto3_with_bytecode"], 2)
    out["app_and_boto3_vs_boto3"] = round(rotate["app_and_boto3_with_bytecode"] / rotate["boto3_with_bytecode"], 2)
    return out


# --- verdicts, report, outputs ----------------------------------------------------------------------------
def verdicts(
    sets: dict[str, dict[str, Any]], large: dict[str, Any] | None, cold: dict[str, Any]
) -> list[dict[str, Any]]:
    mixed, ndjson, envelope = sets["mixed"], sets["ndjson"], sets["envelope"]
    again = mixed["current_again"]
    # Envelope bodies are read once (they may hold tokens of their own) and never written when only
    # the metadata changed.
    env_ok = envelope["rewrap"]["bytes_written"] == 0 and envelope["rewrap"]["bytes_read"] <= envelope["bytes"]
    out = [
        {
            "target": "≥ 20x naive throughput on the mixed set",
            "pass": mixed["speedup_objects"] >= 20,
            "figures": f"{mixed['speedup_objects']}x objects/s ({mixed['rewrap']['objects_per_s']} vs "
            f"{mixed['naive']['objects_per_s']}), {mixed['speedup_tokens']}x tokens/s; the S3 floor itself is "
            f"{mixed['floor_speedup_objects']}x naive",
        },
        {
            "target": "≥ 100 tokens per KMS request on NDJSON",
            "pass": (ndjson["rewrap"]["tokens_per_kms_request"] or 0) >= 100,
            "figures": f"{ndjson['rewrap']['tokens_per_kms_request']} tokens/request "
            f"({ndjson['rewrap']['re-encrypt_requests']} requests for {ndjson['tokens']:,} tokens)",
        },
        {
            "target": "0 KMS requests for already-current objects once the newest version is known",
            "pass": again["re-encrypt_requests"] == 0 and again["decrypt_requests"] == 0,
            "figures": f"{again['re-encrypt_requests']} KMS requests for {again['objects']} current objects "
            f"({again['tokens']} tokens); S3 {again['s3_requests_per_object']} requests/object",
        },
        {
            "target": "envelope objects: body read at most once, 0 body bytes written",
            "pass": env_ok,
            "figures": f"{envelope['rewrap']['bytes_read']} B read, {envelope['rewrap']['bytes_written']} B written "
            f"for {envelope['bytes'] // MiB} MiB of bodies; ops {envelope['rewrap']['s3_ops']}",
        },
        {
            "target": "within 1.5x of the S3-request floor on the mixed set",
            "pass": mixed["time_vs_floor"] <= 1.5,
            "figures": f"{mixed['time_vs_floor']}x ({mixed['rewrap']['seconds']} s vs floor "
            f"{mixed['floor']['seconds']} s, medians of {len(mixed['rewrap_seconds_all'])}; "
            f"{mixed['rewrap']['s3_requests']} vs {mixed['floor']['s3_requests']} S3 requests = "
            f"{mixed['rewrap']['s3_requests'] / mixed['floor']['s3_requests']:.2f}x)",
        },
    ]
    if large is not None:
        out.append(
            {
                "target": f"{large['size_mib']} MiB text object ≤ {TARGET_PEAK_MIB} MiB peak memory",
                "pass": large["peak_above_baseline_mib"] <= TARGET_PEAK_MIB and large["status"] == "rotated",
                "figures": f"{large['peak_above_baseline_mib']} MiB above a {large['baseline_rss_mib']} MiB baseline "
                f"({large['status']}, {large['rotated_tokens']:,} tokens, {large['seconds']} s)",
            }
        )
    out.append(
        {
            "target": "built rotate function: import app ≤ 1.5x a bare import boto3 (layer bytecode shipped)",
            "pass": cold["app_vs_boto3"] <= 1.5,
            "figures": f"import app {cold['rotate']['app_with_bytecode']} ms, with boto3 "
            f"{cold['rotate']['app_and_boto3_with_bytecode']} ms ({cold['app_and_boto3_vs_boto3']}x) vs import boto3 "
            f"{cold['rotate']['boto3_with_bytecode']} ms ({cold['app_vs_boto3']}x); without the layer's bytecode "
            f"{cold['rotate']['app_and_boto3_without_bytecode']} ms; tracing on "
            f"{cold['rotate']['app_traced_with_bytecode']} ms (median of {cold['runs']})",
        }
    )
    return out


def _mib(n: float) -> str:
    return f"{n / MiB:.2f} MiB" if n >= MiB else f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n:.0f} B"


def _num(x: float) -> str:
    """Throughputs and ratios: whole numbers from 100 up, three significant digits below."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def table_rows(sets: dict[str, dict[str, Any]]) -> list[list[str]]:
    header = [
        "data set",
        "rewrap obj/s",
        "naive obj/s",
        "floor obj/s",
        "x naive",
        "rewrap tok/s",
        "naive tok/s",
        "KMS req/token",
        "tokens/KMS req",
        "S3 req/obj (floor)",
        "read/obj",
        "written/obj",
        "peak MiB",
        "÷ floor",
    ]
    rows = [header]
    for name, f in sets.items():
        r, n, fl = f["rewrap"], f["naive"], f["floor"]
        rows.append(
            [
                name,
                _num(r["objects_per_s"]),
                _num(n["objects_per_s"]),
                _num(fl["objects_per_s"]),
                f"{_num(f['speedup_objects'])}x",
                _num(r["tokens_per_s"]),
                _num(n["tokens_per_s"]),
                f"{r['kms_requests_per_token']}",
                f"{r['tokens_per_kms_request']}",
                f"{r['s3_requests_per_object']} ({fl['s3_requests_per_object']})",
                _mib(r["bytes_read_per_object"]),
                _mib(r["bytes_written_per_object"]),
                f"{r['peak_rss_mib']}",
                f"{f['time_vs_floor']}x",
            ]
        )
    return rows


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = [
        "  ".join(cell.rjust(w) if c else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(record: dict[str, Any]) -> str:
    rows = table_rows(record["data_sets"])
    p = record["parameters"]
    out = [
        "<!-- written by `make bench` (python -m rewrap_local.bench); do not edit -->",
        f"Run {record['timestamp']} at `{record['git']['commit'][:10]}`{' (dirty)' if record['git']['dirty'] else ''}"
        f" on {record['machine']['cpus']} CPUs ({record['machine']['cpu']}), {'quick' if p['quick'] else 'full'} "
        f"sizes. Injected latency: KMS {p['kms_latency_ms'][0]:g}-{p['kms_latency_ms'][1]:g} ms per request, "
        f"S3 {p['s3_latency_ms']:g} ms per request; concurrency {p['concurrency']}, KMS rate limit "
        f"{p['kms_rate_limit']:g}/s, {p['batch']} keys per rotate request.",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" if c == 0 else "---:" for c in range(len(rows[0]))) + "|",
        *("| " + " | ".join(row) + " |" for row in rows[1:]),
        "",
        "Objects/s and tokens/s: medians of the rounds; naive: one sequential pass over the sample below. "
        "S3 req/obj in parentheses: the floor's. Peak MiB: growth of rewrap's RSS high-water mark during the run. "
        "÷ floor: rewrap's time over the floor's (the same unavoidable S3 requests at the same concurrency, no KMS).",
        "",
        "| data set | contents | naive measured on |",
        "|---|---|---|",
        *(
            f"| {name} | {f['title']} | {f['naive']['objects']} of {f['objects']} objects |"
            for name, f in record["data_sets"].items()
        ),
        "",
        "| target | verdict | figures |",
        "|---|---|---|",
        *(f"| {v['target']} | {'PASS' if v['pass'] else 'FAIL'} | {v['figures']} |" for v in record["targets"]),
        "",
    ]
    mixed = record["data_sets"]["mixed"]
    out.append(
        f"`REWRAP_VERIFY=true` on the mixed set: {mixed['verify']['seconds']} s vs {mixed['rewrap']['seconds']} s "
        f"({mixed['verify_time_ratio']}x), {mixed['verify']['decrypt_requests']} decrypt requests on top of "
        f"{mixed['verify']['re-encrypt_requests']} re-encrypt requests."
    )
    out.append("")
    return "\n".join(out)


def chart(sets: dict[str, dict[str, Any]], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sets)
    series = [("rewrap", "#1f77b4"), ("naive", "#d62728"), ("floor", "#7f7f7f")]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.26
    for k, (who, colour) in enumerate(series):
        values = [sets[n][who]["objects_per_s"] for n in names]
        xs = [i + (k - 1) * width for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=who if who != "floor" else "S3 floor (no KMS)", color=colour)
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 10 else f"{v:.2g}" for v in values], fontsize=7, padding=2)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [f"{n}\n({sets[n]['objects']} obj, {sets[n]['tokens']:,} tok)" for n in names])
    ax.set_ylabel("objects per second (log scale)")
    ax.set_title(f"rewrap vs a naive rotator vs the S3-request floor\n{subtitle}", fontsize=10)
    ax.set_ylim(top=max(sets[n][who]["objects_per_s"] for n in names for who, _ in series) * 10)
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)  # noqa: S603, S607
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(git("status", "--porcelain"))}


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()) if Path("/proc/meminfo").exists() else None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu": model.group(1).strip() if model else platform.processor(),
        "mem_gib": round(int(mem.group(1)) / 1024**2, 1) if mem else None,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- main -------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from rewrap.config import Settings

    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m rewrap_local.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data sets (about 2 minutes)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench", help="results.jsonl, latest.md, PNG")
    parser.add_argument("--kms-latency-ms", type=float, nargs=2, default=(20.0, 40.0), metavar=("MIN", "MAX"))
    parser.add_argument("--s3-latency-ms", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--kms-rate-limit", type=float, default=defaults.kms_rate_ceiling, help="adaptive ceiling; 0 = unlimited"
    )
    parser.add_argument("--batch", type=int, default=defaults.sweep_keys_per_message, help="keys per rotate request")
    parser.add_argument("--large-mib", type=int, default=None, help="size of the large text object (0 skips it)")
    parser.add_argument("--gzip-mib", type=int, default=None, help="size of the gzip NDJSON object (0 skips it)")
    parser.add_argument("--scan-mib", type=int, default=None, help="size of the scanner-cost body (0 skips it)")
    parser.add_argument("--repeat", type=int, default=None, help="floor/rewrap rounds per data set (median)")
    parser.add_argument("--import-runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", nargs="*", default=None, help=argparse.SUPPRESS)  # a subset, for development
    parser.add_argument("--large-child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.large_child:
        large_child(args.large_child)
        return 0
    scale = QUICK if args.quick else FULL
    params = Params(
        quick=args.quick,
        seed=args.seed,
        concurrency=args.concurrency,
        kms_rate_limit=args.kms_rate_limit,
        batch=args.batch,
        kms_latency_ms=tuple(args.kms_latency_ms),  # type: ignore[arg-type]
        s3_latency_ms=args.s3_latency_ms,
        large_mib=scale.large_mib if args.large_mib is None else args.large_mib,
        gzip_mib=scale.gzip_mib if args.gzip_mib is None else args.gzip_mib,
        scan_mib=scale.scan_mib if args.scan_mib is None else args.scan_mib,
        repeat=max(1, args.repeat or (2 if args.quick else 3)),
        scale=dict(scale.__dict__),
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    began = time.perf_counter()
    machine = machine_info()
    log(f"rewrap bench ({'quick' if args.quick else 'full'}): starting moto and the KMS emulator in child processes")
    bench = Bench(params)
    try:
        bench.kms.call("latency", params.kms_latency_ms[0] / 1000, params.kms_latency_ms[1] / 1000)
        data_sets = bench.fill(TokenPool(), args.seed)
        log(f"  {sum(len(d.items) for d in data_sets)} objects, {sum(d.tokens for d in data_sets):,} tokens ready")
        figures: dict[str, dict[str, Any]] = {}
        for data_set in data_sets:
            if args.only and data_set.name not in args.only:
                continue
            figures[data_set.name] = measure(bench, data_set, log)
        large = measure_large(bench, log) if params.large_mib else None
        gzipped = measure_gzip(bench, log) if params.gzip_mib else None
    finally:
        bench.close()
    log("  measuring the scanner on plain bodies")
    scanning = scan_cost(params.scan_mib) if params.scan_mib else None
    log("  measuring import times")
    cold = import_times(args.import_runs)
    problems = [f"{name}: {k}" for name, f in figures.items() for k in f["not_converged"]]
    if large is not None and large["status"] != "rotated":
        problems.append(f"large object: {large['status']} {large['reason']}")
    if gzipped is not None and (gzipped["status"] != "rotated" or gzipped["rotated_tokens"] != gzipped["tokens"]):
        problems.append(f"gzip object: {gzipped['status']} {gzipped['reason']} {gzipped['rotated_tokens']}")
    record = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine,
        "parameters": params.__dict__,
        "data_sets": figures,
        "large_text_object": large,
        "gzip_ndjson_object": gzipped,
        "scan_cost": scanning,
        "cold_start": cold,
        "problems": problems,
        "duration_s": round(time.perf_counter() - began, 1),
    }
    record["targets"] = verdicts(figures, large, cold) if {"mixed", "ndjson", "envelope"} <= figures.keys() else []
    write_outputs(args.out, record)
    print_summary(record)
    if problems:
        print(f"\nBENCHMARK INVALID: {len(problems)} object(s) not rotated correctly: {problems[:5]}", file=sys.stderr)
        return 2
    return 0


def write_outputs(out: Path, record: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.jsonl").open("a") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    if record["targets"]:
        (out / "latest.md").write_text(render_markdown(record))
        p = record["parameters"]
        subtitle = (
            f"KMS {p['kms_latency_ms'][0]:g}-{p['kms_latency_ms'][1]:g} ms, S3 {p['s3_latency_ms']:g} ms per request, "
            f"concurrency {p['concurrency']} — {record['timestamp']} {record['git']['commit'][:10]}"
        )
        chart(record["data_sets"], out / "throughput.png", subtitle)


def print_summary(record: dict[str, Any]) -> None:
    sets = record["data_sets"]
    print()
    print(render_text(table_rows(sets)))
    print()
    for name, f in sets.items():
        r = f["rewrap"]
        print(
            f"{name}: {f['title']}; naive on {f['naive']['objects']} of {f['objects']}; rewrap S3 ops {r['s3_ops']}; "
            f"floor ops {f['floor']['s3_ops']}; results {r['statuses']}; rewrap runs {f['rewrap_seconds_all']} s, "
            f"floor runs {f['floor_seconds_all']} s; CPU s rewrap {r['cpu_s']}, floor {f['floor']['cpu_s']}"
        )
    if "mixed" in sets:
        m = sets["mixed"]
        print(
            f"REWRAP_VERIFY=true on mixed: {m['verify']['seconds']} s vs {m['rewrap']['seconds']} s "
            f"({m['verify_time_ratio']}x), +{m['verify']['decrypt_requests']} decrypt requests"
        )
    if record["large_text_object"]:
        large = record["large_text_object"]
        print(
            f"large text object: {large['size_mib']} MiB, {large['status']}, {large['seconds']} s "
            f"({large['mib_per_s']} MiB/s), peak {large['peak_above_baseline_mib']} MiB above baseline "
            f"{large['baseline_rss_mib']} MiB; S3 {large['s3']['ops']}; {large['re-encrypt_requests']} KMS requests"
        )
    if record.get("gzip_ndjson_object"):
        gz = record["gzip_ndjson_object"]
        print(
            f"gzip NDJSON object: {gz['size_mib']} MiB gzip ({gz['text_mib']} MiB of text, 2 members), {gz['status']}, "
            f"{gz['seconds']} s: {gz['mib_per_s']} MiB/s of gzip, {gz['text_mib_per_s']} MiB/s of text, "
            f"{gz['tokens_per_s']} tokens/s; peak {gz['peak_above_baseline_mib']} MiB above baseline "
            f"{gz['baseline_rss_mib']} MiB (peak RSS {gz['peak_rss_mib']} MiB)"
        )
    if record.get("scan_cost"):
        sc = record["scan_cost"]
        print(
            f"scanner on a {sc['body_mib']} MiB plain NDJSON body ({sc['tokens']:,} tokens): before "
            f"{sc['before_mib_per_s']} MiB/s, now {sc['now_mib_per_s']} MiB/s "
            f"(cost {sc['cost_ratio']}x, target ≤ 1.2x); "
            f"with escapes possible (a '%' in the body) {sc['with_escapes_mib_per_s']} MiB/s "
            f"({sc['escaped_cost_ratio']}x)"
        )
    cold = record["cold_start"]
    for name in ("rotate", "sweep"):
        figures = ", ".join(f"{case} {ms} ms" for case, ms in cold[name].items())
        print(f"cold start, built {name} function: {figures}")
    print(f"layer: {cold['layer_mib']} MiB unzipped, {cold['layer_zip_mib']} MiB zipped")
    print()
    for v in record["targets"]:
        print(f"[{'PASS' if v['pass'] else 'FAIL'}] {v['target']}: {v['figures']}")
    print(f"\n({record['duration_s']} s; results appended to results.jsonl)")


if __name__ == "__main__":
    sys.exit(main())
