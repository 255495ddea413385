"""``python -m rewrap_local.soak``: against moto, or LocalStack when REWRAP_TEST_S3_ENDPOINT is set."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
import warnings
from collections.abc import Sequence

from rewrap_local.emulator import KmsEmulator
from rewrap_local.stack import local_stack, provision

from .harness import SoakConfig, run_soak
from .plan import FAULT_KINDS

# the package's docstring says what the soak does; its first paragraph is the --help description
_DESCRIPTION = (sys.modules[__package__].__doc__ or "").split("\n\n")[0]


def _progress(line: str) -> None:
    print(line, file=sys.__stdout__, flush=True)  # stdout itself is captured during the run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewrap_local.soak", description=_DESCRIPTION)
    parser.add_argument("--objects", type=int, default=400, help="objects in the bucket (default 400)")
    parser.add_argument("--rounds", type=int, default=4, help="key rotations, each with its fault phases (default 4)")
    parser.add_argument("--seed", type=int, default=1, help="makes the objects and the fault plan reproducible")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", "No application metrics to publish")  # a crashed invocation has none
    if args.objects < len(FAULT_KINDS) or args.rounds < 1:
        parser.error(f"need at least {len(FAULT_KINDS)} objects and one round")
    # make soak-localstack runs it against LocalStack (which enforces S3's conditions itself)
    endpoint = os.environ.get("REWRAP_TEST_S3_ENDPOINT", "")
    backend = "LocalStack" if endpoint else "moto"
    print(f"rewrap soak: {args.objects} objects, {args.rounds} rounds, seed {args.seed}", end=" ")
    print(f"({backend} + emulator on loopback)")
    config = SoakConfig(
        objects=args.objects, rounds=args.rounds, seed=args.seed, capture_output=True, progress=_progress
    )
    if endpoint:
        kms = KmsEmulator(seed=args.seed).start()
        try:
            stack = provision(endpoint, kms, bucket=f"rewrap-soak-{uuid.uuid4().hex[:8]}", backend="localstack")
            report = run_soak(stack, config)
        finally:
            kms.stop()
    else:
        with local_stack(bucket="rewrap-soak", seed=args.seed) as stack:
            report = run_soak(stack, config)
    print(report.render())
    return 0 if report.ok else 1
