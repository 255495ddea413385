"""``rewrap plan``: request counts, hours and cost from a census report or an S3 Inventory CSV."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest

import rewrap_cli.main as cli
from rewrap_cli.plan import Fleet, Inventory, Prices, make_plan, read_census_report, read_inventory_csv
from rewrap_cli.plan_steady import assumed_inventory


def census_report(tmp_path: Path) -> Path:
    records = [{"key": f"p/{i}.txt", "kind": "text", "versions": {"v1": 3, "v2": 1}} for i in range(40)]
    records += [{"key": f"p/e{i}.bin", "kind": "envelope", "versions": {"v2": 1}} for i in range(10)]
    records += [{"key": "other/x.txt", "kind": "text", "versions": {"v1": 1}}, {"kind": "verdict", "key": ""}]
    path = tmp_path / "census.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_census_report_plan_counts_what_is_older_than_the_minimum(tmp_path: Path) -> None:
    inventory = read_census_report(census_report(tmp_path), "p/", 2, 100)
    assert inventory.objects == {"text": 40, "envelope": 10}
    assert (inventory.stale_objects, inventory.stale_tokens, inventory.kms_requests) == (40, 120, 2)

    plan = make_plan(inventory, Fleet(kms_rate=0.01, containers=2), Prices(kms_per_10k=1.0))
    assert plan.s3_reads == 50 and plan.s3_writes == 41  # a GET each; 40 rewritten + 1 LIST page
    assert plan.bound == "NCP: 0.01 requests/s" and plan.hours == pytest.approx(200 / 3600)  # 2 requests
    assert plan.gb_seconds == pytest.approx(400.0)
    assert plan.costs["kms"] == pytest.approx(2 / 10_000)
    assert plan.costs["s3_writes"] == pytest.approx(41 / 1000 * 0.005)
    with_acls = make_plan(inventory, Fleet(kms_rate=0.01, containers=2, acls=True), Prices())
    assert with_acls.s3_reads == 90  # and a GetObjectAcl before each write


def test_cost_scales_linearly_and_time_is_lambda_bound_without_tokens(tmp_path: Path) -> None:
    rows = "".join(f"bucket,p/{i}.txt,100\n" for i in range(1000))
    (tmp_path / "inv.csv").write_text(rows)
    small = make_plan(read_inventory_csv(tmp_path / "inv.csv", "p/", 2, 100), Fleet(), Prices())
    (tmp_path / "inv10.csv").write_text(rows * 10)
    large = make_plan(read_inventory_csv(tmp_path / "inv10.csv", "p/", 2, 100), Fleet(), Prices())
    assert large.kms_requests == 10 * small.kms_requests == 200
    assert large.costs["s3_reads"] == pytest.approx(10 * small.costs["s3_reads"])
    assert small.costs["kms"] is None  # not priced unless given
    none = make_plan(read_inventory_csv(tmp_path / "inv.csv", "p/", 0, 100), Fleet(), Prices())
    assert none.kms_requests == 0 and none.bound == "Lambda: 6 containers (Lambda CPU)"


def test_a_billion_objects_name_the_binding_limit_and_what_finishes_within_a_day() -> None:
    # Given 10^9 text objects of 2 stale tokens each, at the template's defaults
    billion = 10**9
    inventory = assumed_inventory(billion, 2, 100)
    assert inventory == Inventory(Counter(text=billion), billion, 2 * billion, 2 * billion, 2 * billion // 100)

    # Then the 6 rotate containers bind: CPU per object (the bench's) over a 1 GB function's share of a vCPU
    slow = make_plan(inventory, Fleet(), Prices())
    per_container, why = Fleet().container_rate()
    assert (slow.bound, why) == ("Lambda: 6 containers (Lambda CPU)", "Lambda CPU")
    assert slow.hours == pytest.approx(billion / (6 * per_container) / 3600)
    assert slow.hours > 24 * 7

    # and what the plan says finishes within 24 hours does
    day = slow.limits
    assert day.day_containers == math.ceil(billion / 86_400 / per_container)
    assert day.day_kms_rate == pytest.approx(billion / 86_400 * 0.02)  # 2 tokens an object, 100 a request
    fleet = Fleet(containers=day.day_containers, kms_rate=day.day_kms_rate, prefixes=day.day_prefixes)
    assert make_plan(inventory, fleet, Prices()).hours <= 24


def test_plan_command_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["plan", "s3://b/p/", "--census-report", str(census_report(tmp_path)), "--min-version", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "40 objects, 120 tokens" in out and "NCP KMS requests" in out and "not priced" in out
    code = cli.main(["plan", "s3://b/", "--objects", "1000000000", "--tokens-per-object", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "bound by Lambda: 6 containers (Lambda CPU)" in out and "within 24 h" in out


def test_a_converged_targets_scheduled_sweep_costs_its_listing_and_a_few_requests() -> None:
    from rewrap_cli.plan_steady import Schedule, steady_state

    for objects in (10**6, 10**9):
        state = steady_state(objects, Schedule(changed_per_day=0), Fleet())
        sweep = state.incremental
        assert sweep.enqueued == 0 and sweep.sqs == 0
        assert sweep.lists == objects / 1000  # the listing, the safety net
        # its checkpoint, the bucket's versioning, its report and listing record, per invocation of the sweep
        invocations = sweep.invocations
        assert (sweep.reads, sweep.writes) == (2 * invocations, 3 * invocations)
        assert (sweep.reads + sweep.writes) / objects < 0.0001


def test_the_periodic_full_sweep_and_what_changed_are_what_a_day_costs_beyond_the_listing() -> None:
    from rewrap_cli.plan_steady import Schedule, steady_state

    weekly = steady_state(10**6, Schedule(changed_per_day=500, full_every_days=7), Fleet())
    assert weekly.per_day.enqueued == pytest.approx(10**6 / 7 + 500 * 6 / 7)
    always = steady_state(10**6, Schedule(changed_per_day=500, full_every_days=0), Fleet())
    assert always.per_day.enqueued == always.today.enqueued == 10**6  # every sweep full: as before checkpoints
    prices = Prices()
    assert weekly.per_day.cost(prices) < always.per_day.cost(prices) / 6


def test_plan_for_a_number_of_objects_prints_the_rotation_run_and_the_day_after(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["plan", "s3://b/p/", "--objects", "1000000000", "--full-every-days", "90"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1,000,000,000 objects, 1,000,000,000 tokens" in out  # the rotation
    assert "partials, written and read for the verdict" in out and "the next sweep's second look" in out
    assert "then the scheduled sweep, 1 a day, full every 90 days:" in out
    assert re.search(r"per day: S3 LIST +1,000,000 +\$5\.00", out)
    assert "longer than the schedule allows" in out  # a billion keys take more than a day to list
