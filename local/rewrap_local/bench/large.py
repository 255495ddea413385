"""The 1 GiB text object (in a fresh process), the scanner's cost on plain bodies and the gzip NDJSON object."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rewrap_local.stack import FAKE_AWS

from .constants import BUCKET, DATA_KEY_BYTES, MiB
from .contenders import kms_delta, status_kib
from .datasets import WORDS, prose
from .harness import Bench
from .meter import Meter


def seed_large(bench: Bench, key: str, size_mib: int, log: Callable[[str], None]) -> int:
    """A text object of ``size_mib`` MiB with a distinct token every 256 KiB (each 16 MiB segment
    changes, so every byte is read and rewritten: the worst case for memory)."""
    block, part = 256 * 1024, 16 * MiB
    blocks = size_mib * MiB // block
    # Tokens of the current version; the key is rotated once more before the measurement.
    tokens: list[str] = bench.kms.call("encrypt", bench.key_tag, blocks)
    filler_line = (" ".join(WORDS) + "\n").encode()
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
    out.update(kms_delta(kms_before, bench.kms_stats()))
    return out


def large_child(spec_json: str) -> None:
    """Runs in a fresh interpreter: rotate one large text object, report memory above the baseline."""
    spec = json.loads(spec_json)
    import boto3

    from rewrap.app.runtime import build_runtime
    from rewrap.core.config import Settings
    from rewrap.core.ports import ObjectRef

    settings = Settings(buckets=frozenset({BUCKET}), **spec["settings"])
    runtime = build_runtime(settings, session=boto3.session.Session(**FAKE_AWS), endpoint_url=spec["moto_url"])
    meter = Meter(spec["s3_latency_s"])
    meter.attach(runtime.s3)
    runtime.kms.credentials.get()
    baseline_kib = status_kib("VmRSS")
    started = time.perf_counter()
    [result] = runtime.engine.rotate([ObjectRef(BUCKET, spec["key"])])
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries the forking parent's RSS into an exec'd child's ru_maxrss,
    # so that would report the bench's own memory whenever it is the larger.
    peak_kib = status_kib("VmHWM")
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

    from rewrap.core import tokens as scanner

    # the scan before escaped forms, as it was: one regex pass (a lookahead at every character)
    candidate_re = re.compile(rb"ncpkms:v([0-9]*):(?:(?!ncpkms:v)(?:[A-Za-z0-9+/]|\\/))*={0,2}")

    def plain_only(data: bytes) -> int:
        found, malformed = [], []
        for match in candidate_re.finditer(data):
            raw = match.group(0)
            escaped = b"\\/" in raw
            text = (raw.replace(b"\\/", b"/") if escaped else raw).decode("ascii")
            problem = None if len(text) <= scanner.MAX_TOKEN_CHARS and scanner.TOKEN_RE.fullmatch(text) else "bad"
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
        row = json.dumps({"i": line, "user": f"u{line}", "secret": token, "note": prose(rng, 12)}).encode() + b"\n"
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
