"""``rewrap plan``: the rotation (``plan``), then the rotation run and the scheduled sweep after it
(``plan_steady``), from a census report, an S3 Inventory CSV or a number of objects."""

from __future__ import annotations

import argparse

from rewrap.core.config import SweepTarget
from rewrap_cli.common import s3_url, table
from rewrap_cli.plan import Fleet, Prices, make_plan, read_census_report, read_inventory_csv
from rewrap_cli.plan_steady import assumed_inventory, print_lifecycle, schedule_of


def run_plan(options: argparse.Namespace) -> int:
    target: SweepTarget = options.target
    per_request = options.tokens_per_kms_request
    if options.census_report is not None:
        inventory = read_census_report(options.census_report, target.prefix, options.min_version, per_request)
    elif options.objects is not None:
        inventory = assumed_inventory(options.objects, options.tokens_per_object, per_request)
    else:
        inventory = read_inventory_csv(options.inventory, target.prefix, options.tokens_per_object, per_request)
    fleet = Fleet(
        kms_rate=options.kms_rate,
        containers=options.containers,
        memory_gb=options.memory_gb,
        cpu_ms_per_object=options.cpu_ms_per_object,
        s3_latency_ms=options.s3_latency_ms,
        acls=options.acls,
        prefixes=options.prefixes,
        tokens_per_kms_request=per_request,
    )
    prices = Prices(**{name: getattr(options, f"price_{name}") for name in Prices().__dict__})
    plan = make_plan(inventory, fleet, prices)
    print(
        f"plan for {s3_url(target)}: {fleet.containers} containers of {fleet.memory_gb:g} GB at "
        f"{fleet.cpu_ms_per_object:g} ms of CPU per object, NCP {fleet.kms_rate:g} requests/s, "
        f"{fleet.prefixes} S3 prefix(es)"
    )
    table(("", "count", "cost"), plan.rows())
    print_lifecycle(plan, fleet, prices, schedule_of(options))
    return 0
