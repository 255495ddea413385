"""One data set measured for every contender, and the cold-start imports of the built functions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewrap_local.stack import REGION

from .constants import MiB
from .contenders import rate, run_floor, run_naive, run_rewrap, sig
from .datasets import DataSet, stratified
from .harness import Bench


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
        "speedup_objects": sig(rate(rewrap, "objects") / rate(naive, "objects")),
        "speedup_tokens": sig(rate(rewrap, "tokens") / rate(naive, "tokens")),
        "floor_speedup_objects": sig(rate(floor, "objects") / rate(naive, "objects")),
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
