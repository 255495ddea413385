"""The fleet bench's flatness verdict on synthetic figures: flat costs are judged FLAT, a cost that
grows faster than the objects is NOT FLAT (the merge included), and neither one slow merge among the
timed repeats nor a merge's wall time on a busy machine turns the verdict; the merges are timed in
rounds over every size."""

from __future__ import annotations

from typing import Any

from rewrap.core.census_runs import merge_run
from rewrap_local.bench.fleet.census_merge import RunPartials, merge_timing, time_merges
from rewrap_local.bench.fleet.flatness import flatness

SIZES = (1000, 5000, 20000)
KEYS_PER_MESSAGE = 25
MERGE_S_PER_PARTIAL = 40e-6
TOLERANCE = 0.25


def figures(size: int, merge_cpu: list[float], *, census_ms_per_object: float = 35.0) -> dict[str, Any]:
    """One size's record as the bench writes it, with per-object costs that do not depend on the size."""
    per_object = {"s3_per_object": 1.2, "kms_per_object": 0.04, "peak_mib_median": 3.5}
    return {
        "objects": size,
        "rotate": {**per_object, "ms_per_object": 50.0},
        "census": {
            **per_object,
            "ms_per_object": census_ms_per_object,
            "partials": size // KEYS_PER_MESSAGE,
            # the wall time of each merge: twice its CPU time, as on a busy machine
            **merge_timing([(2 * cpu, cpu) for cpu in merge_cpu]),
        },
    }


def linear_merge(size: int) -> list[float]:
    return [size // KEYS_PER_MESSAGE * MERGE_S_PER_PARTIAL] * 7


def test_costs_that_grow_with_the_objects_are_flat() -> None:
    judged = flatness({size: figures(size, linear_merge(size)) for size in SIZES}, TOLERANCE)

    assert judged["flat"] and judged["linear"], judged["verdict"]
    assert judged["verdict"].startswith("FLAT within ±25%")
    assert judged["ratios"]["merge CPU time/partial"] == {"1000": 1.0, "5000": 1.0, "20000": 1.0}


def test_a_merge_that_grows_faster_than_the_partials_is_not_flat() -> None:
    # Given a merge whose time grows with the square of the partials (every other figure flat)
    def quadratic(size: int) -> list[float]:
        partials = size // KEYS_PER_MESSAGE
        return [partials * MERGE_S_PER_PARTIAL * partials / 40] * 7

    judged = flatness({size: figures(size, quadratic(size)) for size in SIZES}, TOLERANCE)

    assert not judged["flat"] and not judged["linear"]
    assert judged["highest"] == "merge CPU time/partial at 20,000"
    assert judged["verdict"].startswith("NOT FLAT: merge CPU time/partial at 20,000 grows to 20.00x")
    assert judged["ratios"]["merge CPU time/partial"]["5000"] == 5.0


def test_one_slow_merge_among_the_repeats_does_not_turn_the_verdict() -> None:
    # Given, at 5,000 objects, one of the seven merges slowed tenfold by a busy machine
    def noisy(size: int) -> list[float]:
        timings = linear_merge(size)
        if size == 5000:
            timings[3] *= 10
        return timings

    judged = flatness({size: figures(size, noisy(size)) for size in SIZES}, TOLERANCE)

    assert judged["flat"], judged["verdict"]
    assert judged["ratios"]["merge CPU time/partial"]["5000"] == 1.0


def test_the_merge_is_judged_by_its_cpu_time_not_its_wall_time() -> None:
    # Given a merge whose CPU time per partial is flat, but whose wall time at 5,000 objects was four
    # times longer: the machine was busy with other work
    sizes = {size: figures(size, linear_merge(size)) for size in SIZES}
    timings = [(4 * cpu, cpu) for cpu in linear_merge(5000)]
    sizes[5000]["census"].update(merge_timing(timings))

    judged = flatness(sizes, TOLERANCE)

    assert judged["flat"], judged["verdict"]
    assert sizes[5000]["census"]["merge_s"] == 4 * sizes[5000]["census"]["merge_cpu_s"]


def test_a_record_without_the_merge_cpu_time_leaves_the_merge_unjudged() -> None:
    sizes = {size: figures(size, linear_merge(size)) for size in SIZES}
    for figures_of_size in sizes.values():
        del figures_of_size["census"]["merge_cpu_s"]

    judged = flatness(sizes, TOLERANCE)

    assert judged["ratios"]["merge CPU time/partial"] == {"1000": None, "5000": None, "20000": None}
    assert judged["flat"]


def test_a_cost_that_falls_with_size_is_no_growth_but_not_flat() -> None:
    # Given a census whose fixed cost per run spreads over more objects as the bucket grows
    sizes = {size: figures(size, linear_merge(size), census_ms_per_object=35.0 * 1000 / size) for size in SIZES}

    judged = flatness(sizes, TOLERANCE)

    assert judged["linear"] and not judged["flat"]
    assert judged["verdict"].startswith("NO GROWTH beyond +25%")
    assert judged["lowest"] == "census time/object at 20,000"


def test_every_run_is_merged_as_often_as_asked() -> None:
    url = "s3://reports/census/run-1/"
    runs = {
        (size, "census"): RunPartials(url, [(f"listing-{i}.json", b"not json") for i in range(size)], 0.0)
        for size in (1, 3)
    }

    timed = time_merges(runs, 5)

    assert set(timed) == set(runs)
    for figures in timed.values():
        low, high = figures["merge_cpu_s_range"]
        assert figures["merge_repeats"] == 5 and 0 <= low <= figures["merge_cpu_s"] <= high
    # what is timed is the run's merge, the same as merge_run gives
    assert runs[3, "census"].merge().foreign == merge_run(runs[3, "census"].records, url, 2, None).foreign
    assert runs[3, "census"].merge().foreign == [f"listing-{i}.json (not JSON)" for i in range(3)]
    assert time_merges(runs, 0)[1, "census"]["merge_repeats"] == 1


def test_the_merges_are_timed_in_rounds_over_every_size() -> None:
    # Given two runs that note when they are merged
    merged: list[int] = []

    class Noted(RunPartials):
        def merge(self) -> Any:
            merged.append(len(self.records))

    runs = {(size, "census"): Noted("s3://reports/census/run/", [("p", b"")] * size, 0.0) for size in (1, 2)}

    # When their merges are timed in three rounds
    time_merges(runs, 3)

    # Then each round merges both, the order turned every other round: no size's merges all fall together
    assert merged == [1, 2, 2, 1, 1, 2]
