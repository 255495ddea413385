"""``rewrap plan``: request counts, hours and cost from a census report or an S3 Inventory CSV."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import rewrap_cli.main as cli
from rewrap_cli.plan import Fleet, Prices, make_plan, read_census_report, read_inventory_csv


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
    assert (inventory.stale_objects, inventory.stale_tokens, inventory.kms_requests) == (40, 120, 40)

    plan = make_plan(inventory, Fleet(kms_rate=10, containers=2, seconds_per_object=0.1), Prices(kms_per_10k=1.0))
    assert plan.s3_reads == 100 and plan.s3_writes == 41  # 50 looked at; 40 rewritten + 1 LIST page
    assert plan.bound == "NCP KMS rate" and plan.hours == pytest.approx(4 / 3600)  # 40 requests at 10/s
    assert plan.gb_seconds == pytest.approx(8.0)
    assert plan.costs["kms"] == pytest.approx(40 / 10_000)
    assert plan.costs["s3_writes"] == pytest.approx(41 / 1000 * 0.005)


def test_cost_scales_linearly_and_time_is_s3_bound_without_tokens(tmp_path: Path) -> None:
    rows = "".join(f"bucket,p/{i}.txt,100\n" for i in range(1000))
    (tmp_path / "inv.csv").write_text(rows)
    small = make_plan(read_inventory_csv(tmp_path / "inv.csv", "p/", 2, 100), Fleet(), Prices())
    (tmp_path / "inv10.csv").write_text(rows * 10)
    large = make_plan(read_inventory_csv(tmp_path / "inv10.csv", "p/", 2, 100), Fleet(), Prices())
    assert large.kms_requests == 10 * small.kms_requests == 10_000
    assert large.costs["s3_reads"] == pytest.approx(10 * small.costs["s3_reads"])
    assert small.costs["kms"] is None  # not priced unless given
    none = make_plan(read_inventory_csv(tmp_path / "inv.csv", "p/", 0, 100), Fleet(), Prices())
    assert none.kms_requests == 0 and none.bound == "S3"


def test_plan_command_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["plan", "s3://b/p/", "--census-report", str(census_report(tmp_path)), "--min-version", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "40 objects, 120 tokens" in out and "NCP KMS requests" in out and "not priced" in out


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
