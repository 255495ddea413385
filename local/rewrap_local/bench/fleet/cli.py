"""``python -m rewrap_local.bench.fleet``: every size measured, judged, written and summarised."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import fleet
from ..cli import git_info, machine_info
from ..constants import REPO
from ..containers import RECEIVE_LIMIT
from .driver import FleetBench, Hook
from .flatness import flatness
from .params import DEFAULT_SIZES, QUICK_SIZES, FleetParams
from .render import print_summary, write_outputs


def run(params: FleetParams, log: Callable[[str], None], before_rotation: Hook | None = None) -> dict[str, Any]:
    """Every size measured; ``before_rotation`` runs before each rotation run (a test injects faults there)."""
    began = time.perf_counter()
    machine = machine_info()
    bench = FleetBench(params, log)
    sizes: dict[int, dict[str, Any]] = {}
    try:
        bench.before_rotation = before_rotation
        bench.make_tokens()
        for size in params.sizes:
            log(f"fleet bench: {size:,} objects, {params.workers} rotate containers")
            sizes[size] = bench.measure(size)
        bench.time_merges(sizes)
    finally:
        bench.close()
    problems = [f"{size:,} objects: {p}" for size, f in sizes.items() for p in f["problems"]]
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine,
        "parameters": {**params.__dict__, "sizes": list(params.sizes)},
        "sizes": {str(size): figures for size, figures in sizes.items()},
        "flatness": flatness(sizes, params.tolerance),
        "problems": problems,
        "duration_s": round(time.perf_counter() - began, 1),
    }


def rerender(out: Path) -> dict[str, Any]:
    """The last record of ``out/fleet.jsonl`` judged again and written to fleet.md and fleet.png."""
    record: dict[str, Any] = json.loads((out / "fleet.jsonl").read_text().splitlines()[-1])
    sizes = {int(size): figures for size, figures in record["sizes"].items()}
    record["flatness"] = flatness(sizes, record["parameters"]["tolerance"])
    write_outputs(out, record, append=False)
    return record


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rewrap_local.bench.fleet", description=(fleet.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help=f"objects per run (default {DEFAULT_SIZES})")
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} (about 2 minutes)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench", help="fleet.jsonl, fleet.md, fleet.png")
    parser.add_argument("--workers", type=int, default=4, help="rotate containers polling the queue")
    parser.add_argument("--traced", type=int, default=2, help="rotate containers that trace memory (tracemalloc)")
    parser.add_argument("--batch", type=int, default=2, help=f"messages per invocation (1-{RECEIVE_LIMIT})")
    parser.add_argument("--keys-per-message", type=int, default=25, help="REWRAP_SWEEP_KEYS_PER_MESSAGE")
    parser.add_argument("--concurrency", type=int, default=16, help="REWRAP_CONCURRENCY per container")
    parser.add_argument("--kms-latency-ms", type=float, nargs=2, default=(20.0, 40.0), metavar=("MIN", "MAX"))
    parser.add_argument("--s3-latency-ms", type=float, default=3.0)
    parser.add_argument("--tolerance", type=float, default=0.25, help="flatness verdict: ±this fraction")
    parser.add_argument(
        "--merge-repeats", type=int, default=7, help="rounds of timed census merges (every size in each), median kept"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--census-before", action="store_true", help="a census run before the rotation too (must be NOT SAFE)"
    )
    parser.add_argument("--rerender", action="store_true", help="judge and render the last record again, no run")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= RECEIVE_LIMIT:
        parser.error(f"--batch must be 1-{RECEIVE_LIMIT}")
    if args.merge_repeats < 1:
        parser.error("--merge-repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rerender:
        print_summary(rerender(args.out))
        return 0
    params = FleetParams(
        sizes=tuple(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)),
        workers=args.workers,
        traced=args.traced,
        batch=args.batch,
        keys_per_message=args.keys_per_message,
        concurrency=args.concurrency,
        kms_latency_ms=tuple(args.kms_latency_ms),  # type: ignore[arg-type]
        s3_latency_ms=args.s3_latency_ms,
        tolerance=args.tolerance,
        seed=args.seed,
        quick=args.quick,
        census_before=args.census_before,
        merge_repeats=args.merge_repeats,
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    record = run(params, log)
    write_outputs(args.out, record)
    print_summary(record)
    if record["problems"]:
        print(f"\nBENCHMARK FOUND WRONG RESULTS: {len(record['problems'])} problem(s):", file=sys.stderr)
        for problem in record["problems"][:20]:
            print(f"  {problem}", file=sys.stderr)
        return 2
    return 0
