"""The verdict across sizes: does each per-object cost stay flat as the bucket grows?"""

from __future__ import annotations

from typing import Any

# (phase, figure, label): the per-object costs that must stay flat as the bucket grows. The merge is
# judged by its CPU time (the median of several merges) per partial, the unit ``merge_run`` works in
# (one partial per census request, a fixed number of keys each).
FLAT_FIGURES = (
    ("census", "ms_per_object", "census time/object"),
    ("census", "s3_per_object", "census S3 req/object"),
    ("census", "peak_mib_median", "census peak MiB/invocation"),
    ("rotate", "ms_per_object", "rotation time/object"),
    ("rotate", "s3_per_object", "rotation S3 req/object"),
    ("rotate", "kms_per_object", "rotation KMS req/object"),
    ("rotate", "peak_mib_median", "rotation peak MiB/invocation"),
    ("census", "merge_cpu_us_per_partial", "merge CPU time/partial"),
)


def flatness(sizes: dict[int, dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Each per-object figure at each size over the smallest size's. Flat: all within ±tolerance;
    linear: none grows beyond +tolerance (a figure that falls with size, as fixed per-run costs
    spread over more objects, does not make the cost grow faster than the objects)."""
    for figures in sizes.values():
        census = figures["census"]
        cpu_s = census.get("merge_cpu_s")  # None in a record from before the merge's CPU time was taken
        per_partial = None if cpu_s is None else round(cpu_s * 1e6 / max(1, census["partials"]), 2)
        census["merge_cpu_us_per_partial"] = per_partial
    ordered = sorted(sizes)
    ratios, compared = _ratios(sizes, ordered)
    if not compared:
        return {"flat": False, "linear": False, "verdict": "one size only: nothing to compare", "ratios": ratios}
    (low, lowest), (high, highest) = min(compared), max(compared)
    flat = high <= 1 + tolerance and low >= 1 - tolerance
    linear = high <= 1 + tolerance
    smallest = f"the {ordered[0]:,}-object figure"
    if flat:
        verdict = f"FLAT within ±{tolerance:.0%}: every per-object figure between {low:.2f}x and {high:.2f}x {smallest}"
    elif linear:
        verdict = (
            f"NO GROWTH beyond +{tolerance:.0%} (cost linear in objects): the highest is {highest}, {high:.2f}x "
            f"{smallest}; NOT FLAT within ±{tolerance:.0%} only because {lowest} falls to {low:.2f}x"
        )
    else:
        verdict = f"NOT FLAT: {highest} grows to {high:.2f}x {smallest} (beyond +{tolerance:.0%})"
    return {"flat": flat, "linear": linear, "verdict": verdict, "ratios": ratios, "highest": highest, "lowest": lowest}


def _ratios(
    sizes: dict[int, dict[str, Any]], ordered: list[int]
) -> tuple[dict[str, dict[str, float | None]], list[tuple[float, str]]]:
    """Per figure and size, the ratio to the smallest size's; and the ratios of the larger sizes, labelled."""
    base = sizes[ordered[0]]
    ratios: dict[str, dict[str, float | None]] = {}
    compared: list[tuple[float, str]] = []
    for phase, name, label in FLAT_FIGURES:
        ratios[label] = {}
        for size in ordered:
            reference, value = base[phase][name], sizes[size][phase][name]
            if reference is None or value is None:  # not measured at one of the sizes: not compared
                ratios[label][str(size)] = None
                continue
            ratio = round(value / reference, 3) if reference else (1.0 if not value else float("inf"))
            ratios[label][str(size)] = ratio
            if size != ordered[0]:
                compared.append((ratio, f"{label} at {size:,}"))
    return ratios, compared
