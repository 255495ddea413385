"""``make bench-fleet`` at a tiny size: the figures are sane, the verification holds, and a rotation
that leaves objects behind is caught (so the target cannot rot into a benchmark that always passes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rewrap_local.bench.fleet.cli import main, run
from rewrap_local.bench.fleet.params import FleetParams
from rewrap_local.bench.fleet.stack import FleetStack

SIZES = (30, 60)


def quiet(message: str) -> None:
    pass


@pytest.mark.timeout(900)
def test_fleet_bench_at_a_tiny_size_measures_and_verifies(tmp_path: Path) -> None:
    # When the bench runs at two tiny sizes, through its command line, with a census before the rotation too
    sizes = [str(size) for size in SIZES]
    argv = ["--sizes", *sizes, "--workers", "2", "--traced", "2", "--census-before", "--out", str(tmp_path)]
    assert main([*argv, "--kms-latency-ms", "1", "2", "--s3-latency-ms", "0"]) == 0

    # Then its record says every object was rotated and the census after it is SAFE and complete
    record: dict[str, Any] = json.loads((tmp_path / "fleet.jsonl").read_text().splitlines()[-1])
    assert record["problems"] == [] and list(record["sizes"]) == sizes
    for size, figures in record["sizes"].items():
        objects, stale = int(size), figures["stale_objects"]
        before, rotation, census = figures["census_before"], figures["rotate"], figures["census"]
        assert 0 < stale < objects
        assert before["verdict"] == "NOT SAFE" and before["tokens_by_version"]["v1"] == figures["stale_tokens"]
        assert rotation["statuses"] == {"rotated": stale, "current": objects - stale}
        assert census["verdict"] == "SAFE" and census["exit_code"] == 0 and census["complete"]
        assert census["accounted"] == objects and census["tokens_by_version"] == {"v2": figures["tokens"]}
        assert figures["spot_check"]["objects"] == objects and figures["spot_check"]["undecryptable"] == 0
        # counted requests: every object read at least once, a census sends KMS no token, a rotation
        # batches its tokens (fewer KMS requests than objects, but some)
        for phase in (before, rotation, census):
            assert phase["objects"] == objects and phase["objects_per_s"] > 0
            assert 1.0 <= phase["s3_per_object"] <= 4.0, phase["s3_ops"]
            assert phase["s3_ops"].get("ListObjectsV2", 0) >= 1
            assert phase["invocations"] >= 1 and phase["sqs_requests"] > 0
            assert 0 < phase["peak_mib_max"] < 64 and phase["traced_invocations"] >= 1
        for phase in (before, census):  # no token goes to KMS; the sweep asks for the newest version, once
            assert phase["kms_ops"] == {"encrypt": 1}, phase["kms_ops"]
        assert 0 < rotation["kms_requests"] < objects and rotation["kms_ops"].get("re-encrypt", 0) >= 1
        assert census["partials"] == census["messages"] > 0 and census["merge_s"] > 0
        # the merge figure is the median CPU time of the default number of timed merges
        low, high = census["merge_cpu_s_range"]
        assert census["merge_repeats"] == 7 and 0 < low <= census["merge_cpu_s"] <= high
        assert census["merge_cpu_us_per_partial"] > 0
        # then the scheduled sweeps: a second look at exactly what the rotation wrote, then a converged target
        # that costs its listing and a few requests of its own, and enqueues nothing
        look, steady = figures["second_look"], figures["steady"]
        assert (look["scope"], look["enqueued"]) == ("incremental", stale)
        assert (steady["scope"], steady["enqueued"], steady["messages"]) == ("incremental", 0, 0)
        assert steady["s3_ops"]["ListObjectsV2"] == 1 and steady["s3_requests"] <= 1 + 8
    # request counts per object do not depend on timing: flat across sizes
    ratios = record["flatness"]["ratios"]
    assert 0.75 <= ratios["census S3 req/object"][sizes[1]] <= 1.25
    assert 0.75 <= ratios["rotation S3 req/object"][sizes[1]] <= 1.25
    assert record["flatness"]["verdict"].startswith(("FLAT", "NO GROWTH", "NOT FLAT"))
    # and the outputs are written; judging the record again rewrites them without appending a record
    assert "SAFE" in (tmp_path / "fleet.md").read_text()
    assert (tmp_path / "fleet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "fleet.md").unlink()
    assert main(["--rerender", "--out", str(tmp_path)]) == 0
    assert record["flatness"]["verdict"] in (tmp_path / "fleet.md").read_text()
    assert len((tmp_path / "fleet.jsonl").read_text().splitlines()) == 1


@pytest.mark.timeout(900)
def test_fleet_bench_reports_a_rotation_that_left_objects_behind(tmp_path: Path) -> None:
    # Given a KMS that answers every re-encrypt with an item that is not a token (each object fails, untouched)
    def break_kms(stack: FleetStack) -> None:
        stack.kms.call("inject", "bad-pattern", 10_000)

    params = FleetParams(sizes=(SIZES[0],), workers=2, traced=0, kms_latency_ms=(1.0, 2.0), s3_latency_ms=0)

    # When the bench runs
    record = run(params, quiet, before_rotation=break_kms)

    # Then it says the result is wrong: the census after the rotation is not SAFE, and objects read back are stale
    problems = record["problems"]
    assert any("census after the rotation is not SAFE" in p for p in problems), problems
    assert any("read back not all at v2" in p for p in problems), problems
    assert any("rotation statuses" in p for p in problems), problems
    assert record["sizes"][str(SIZES[0])]["census"]["verdict"] == "NOT SAFE"
