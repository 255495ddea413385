"""The contenders (rewrap, the naive rotator, the S3-request floor) and the probes they are measured by
(CPU time of this process and its children, peak RSS)."""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .constants import BUCKET, WRAPPED_KEY_METADATA
from .datasets import DataSet, Item
from .harness import Bench
from .meter import Meter


def kms_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for action in ("re-encrypt", "decrypt"):
        out[f"{action}_requests"] = after["requests"].get(action, 0) - before["requests"].get(action, 0)
        out[f"{action}_items"] = after["items"].get(action, 0) - before["items"].get(action, 0)
    return out


def server_pids(bench: Bench) -> dict[str, int]:
    return {"moto": bench.moto.process.pid, "kms": bench.kms.process.pid}


class CpuClock:
    """CPU seconds used by this process and by the two servers over a block (the cores are shared, so
    the split tells whose work a run was waiting for)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

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
        self.start_kib = status_kib("VmRSS")
        self.peak_kib = self.start_kib
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_kib = status_kib("VmHWM") if self.reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @property
    def delta_mib(self) -> float:
        return max(0, self.peak_kib - self.start_kib) / 1024


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def run_rewrap(bench: Bench, data_set: DataSet, items: Sequence[Item], runtime: Any, meter: Meter) -> dict[str, Any]:
    from rewrap.core.ports import ObjectRef

    refs = [ObjectRef(BUCKET, item.key) for item in items]
    bench.as_a_sweep_finds_them()
    meter.reset()
    kms_before = bench.kms_stats()
    statuses: Counter[str] = Counter()
    with PeakRss() as rss, CpuClock(server_pids(bench)) as cpu:
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
        kms_delta(kms_before, bench.kms_stats()),
        statuses=dict(statuses),
        peak_rss_mib=round(rss.delta_mib, 1),
        cpu_s=cpu.seconds,
    )


def run_naive(bench: Bench, items: Sequence[Item]) -> dict[str, Any]:
    """The straightforward script: one object after the other, one KMS request per token."""
    from rewrap.core.tokens import scan, splice, token_version

    s3, meter = bench.metered_client()
    kms = bench.kms_client()
    kms_before = bench.kms_stats()
    clock = CpuClock(server_pids(bench)).__enter__()
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
    return _figures(items, seconds, meter.snapshot(), kms_delta(kms_before, bench.kms_stats()), cpu_s=clock.seconds)


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

    with CpuClock(server_pids(bench)) as cpu:
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


def rate(figures: dict[str, Any], what: str) -> float:
    return figures[what] / figures["seconds"]
