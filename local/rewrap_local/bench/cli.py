"""``python -m rewrap_local.bench``: arguments, the run, and the record written and printed."""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .constants import REPO
from .datasets import FULL, QUICK, TokenPool
from .harness import Bench, Params
from .large import large_child, measure_gzip, measure_large, scan_cost
from .measure import import_times, measure
from .render import print_summary, write_outputs
from .verdicts import verdicts

# the package's docstring says what the bench does; its first paragraph is the --help description
_DESCRIPTION = (sys.modules[__package__].__doc__ or "").split("\n\n")[0]


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
    from rewrap.core.config import Settings

    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m rewrap_local.bench", description=_DESCRIPTION)
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
    judged = {"mixed", "ndjson", "envelope"} <= figures.keys()
    record["targets"] = verdicts(figures, large, cold, params.__dict__, machine["cpus"] or 1) if judged else []
    write_outputs(args.out, record)
    print_summary(record)
    if problems:
        print(f"\nBENCHMARK INVALID: {len(problems)} object(s) not rotated correctly: {problems[:5]}", file=sys.stderr)
        return 2
    return 0
