"""``rewrap`` — the operator's command line, from "key rotated" to "old version disabled".

  rewrap census s3://bucket/prefix [--versions] [--min-version N] [--key-tag T] [--report FILE]
                [--exclude-prefix P]... [--exclude-suffix S]...
  rewrap rotate s3://bucket/prefix [--dry-run] [--concurrency N] [--rate R] [--report FILE] [--local]
                [--exclude-prefix P]... [--exclude-suffix S]...
  rewrap emulator ...       the local NCP KMS emulator (needs the local extra)
  rewrap demo               the end-to-end demo on the embedded stack (needs the local extra)

``rotate`` runs the Lambda's engine from a laptop or CI job: AWS through the default credential
chain, NCP with the same environment variables as the functions (NCP_KMS_KEY_TAG,
NCP_KMS_SECRET_ID, NCP_KMS_ENDPOINT, …), or the embedded stack with ``--local``.

Exit codes: 0 done (rotate: every object rotated or current; census: SAFE, proven that nothing
is older than --min-version); 1 partly (rotate: some objects failed, were opaque or unreadable;
census: NOT SAFE or UNKNOWN); 2 nothing could be done (configuration, credentials, bucket refused
or unlisted, every object failed; census: nothing could be read).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from rewrap.census import Census, CensusTaker, ObjectCensus
from rewrap.census_runs import merge_run
from rewrap.config import Settings, SweepTarget
from rewrap.deadline import Deadline
from rewrap.engine import UNSEEN, ObjectResult, Status
from rewrap.errors import ConfigError, RewrapError
from rewrap.objects import S3Store
from rewrap.ports import ObjectRef
from rewrap.reports import CENSUS_COLUMNS, ROTATE_COLUMNS, Format, ReportFile
from rewrap.runtime import Runtime, aws_client_config, build_runtime
from rewrap.service import summarize
from rewrap.sweep import probe_newest_versions
from rewrap_cli import fleet
from rewrap_cli.plan import Fleet, Prices, make_plan, read_census_report, read_inventory_csv

OK, PARTIAL, NOTHING_DONE = 0, 1, 2
# Objects handed to the engine at once: enough to batch KMS requests well, small enough to report often.
BATCH_OBJECTS = 250
# Example objects listed per status in the rotate summary.
EXAMPLES = 10
# Hints by error code: what the operator can do about it.
_HINTS = {
    "s3-denied": "check that your AWS identity may list and read the bucket",
    "s3-error": "check the bucket name and its region (AWS_REGION)",
    "no-such-bucket": "check the bucket name and its region (AWS_REGION)",
    "s3-unavailable": "check AWS credentials and network (aws sts get-caller-identity), then run again",
    "secret-invalid": "check NCP_KMS_SECRET_ID and that your AWS identity may read that secret",
    "secret-unavailable": "check AWS credentials, region and network, then run again",
    "kms-auth": "check the NCP access key / secret key in the secret and NCP_KMS_SIGNATURE_VERSION",
    "kms-rejected": "check the key tag (NCP_KMS_KEY_TAG / --key-tag) and that the key is enabled",
    "kms-unavailable": "check NCP_KMS_ENDPOINT and the network, then run again",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # These two own their arguments; they are listed in --help below.
    if args[:1] in (["emulator"], ["demo"]):
        try:
            require_local_extra(f"rewrap {args[0]}")
        except LocalExtraMissing as missing:
            print(f"rewrap: {missing}", file=sys.stderr)
            return NOTHING_DONE
        from rewrap_local.demo import main as demo_main
        from rewrap_local.emulator import main as emulator_main

        return emulator_main(args[1:]) if args[0] == "emulator" else demo_main()
    options = _parser().parse_args(args)
    logging.basicConfig(level=logging.DEBUG if options.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(options.run(options))
    except KeyboardInterrupt:
        print("rewrap: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
        print(f"rewrap: {_explain(exc)}", file=sys.stderr)
        if options.verbose:
            traceback.print_exception(exc, file=sys.stderr)
        return NOTHING_DONE


def _explain(exc: BaseException) -> str:
    if isinstance(exc, RewrapError):
        text = str(exc)
        if "NoCredentialsError" in text:
            return f"{text}: no AWS credentials found; configure them (aws configure, AWS_PROFILE) or pass --local"
        if "NoRegionError" in text:
            return f"{text}: no AWS region; set AWS_REGION or pass --local"
        hint = _HINTS.get(exc.code)
        return f"{text}: {hint}" if hint else text
    return f"unexpected {type(exc).__name__}: {exc} (run again with --verbose for the traceback)"


class LocalExtraMissing(ConfigError):
    """The embedded stack is an optional part of the package."""


def require_local_extra(what: str) -> None:
    """The embedded stack (moto, the emulator's cryptography) comes with the optional ``local`` extra."""
    try:
        import cryptography  # noqa: F401
        import moto.server  # noqa: F401
    except ModuleNotFoundError as missing:
        raise LocalExtraMissing(
            f"{what} needs the embedded stack, which is not installed ({missing.name} is missing): "
            "pip install 'rewrap[local]' (from a checkout: pip install '.[local]')"
        ) from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("target", metavar="s3://bucket/prefix", type=_target)
    common.add_argument("--key-tag", metavar="T", help="default NCP key tag (default: NCP_KMS_KEY_TAG)")
    common.add_argument("--concurrency", type=_positive, metavar="N", help="parallel S3/KMS requests")
    common.add_argument("--report", type=Path, metavar="FILE", help="one line per object")
    common.add_argument("--format", choices=("json", "csv"), help="report format (default: by FILE suffix, json)")
    common.add_argument("--local", action="store_true", help="use the embedded stack (moto + emulator, loopback)")
    common.add_argument(
        "--exclude-prefix",
        action="append",
        default=[],
        metavar="P",
        help="skip keys starting with P (from the bucket root; repeatable); the census verdict names it",
    )
    common.add_argument(
        "--exclude-suffix",
        action="append",
        default=[],
        metavar="S",
        help="skip keys ending with S, e.g. .jpg (repeatable); the census verdict names it",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")

    parser = argparse.ArgumentParser(
        prog="rewrap",
        description="Operator tools for rewrap: from a rotated NCP KMS key to a disabled old version.",
        epilog="Exit codes: 0 done (census: SAFE), 1 partly (census: NOT SAFE or UNKNOWN), 2 nothing could be done.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    census = commands.add_parser(
        "census", parents=[common], help="count tokens and objects per key version (read only)"
    )
    census.add_argument("--versions", action="store_true", help="include noncurrent object versions")
    census.add_argument(
        "--min-version",
        type=_positive,
        metavar="N",
        help="verdict: SAFE (exit 0) only if proven nothing is older than vN",
    )
    census.add_argument(
        "--from-reports",
        action="store_true",
        help="merge a fleet census run's partials instead: the target is s3://…/census/<runId>/",
    )
    census.set_defaults(run=run_census)
    rotate = commands.add_parser("rotate", parents=[common], help="re-wrap every token to the newest key version")
    rotate.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    rotate.add_argument("--rate", type=float, metavar="R", help="NCP KMS requests per second (0 = unlimited)")
    rotate.set_defaults(run=run_rotate)
    _plan_parser(commands)
    _fleet_parser(commands)
    commands.add_parser("emulator", help="run the local NCP KMS emulator (rewrap emulator --help)")
    commands.add_parser("demo", help="rotate a seeded bucket end to end on the embedded stack")
    return parser


def _plan_parser(commands: Any) -> None:
    fleet, prices = Fleet(), Prices()
    plan = commands.add_parser(
        "plan",
        help="what a rotation will take: requests, hours and cost (from a census report or S3 Inventory)",
        epilog="Prices default to AWS us-east-1 list prices (arm64 Lambda); NCP KMS is not priced unless given.",
    )
    plan.add_argument("target", metavar="s3://bucket/prefix", type=_target)
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--census-report", type=Path, metavar="FILE", help="rewrap census --report FILE (json/csv)")
    source.add_argument("--inventory", type=Path, metavar="FILE", help="an S3 Inventory CSV data file")
    plan.add_argument("--min-version", type=_positive, metavar="N", help="census report: rotate what is older than vN")
    plan.add_argument("--tokens-per-object", type=int, default=1, metavar="N", help="inventory: assumed (default 1)")
    plan.add_argument("--kms-rate", type=float, default=fleet.kms_rate, help="NCP requests/s for the fleet (200)")
    plan.add_argument("--containers", type=_positive, default=fleet.containers, help="rotate containers at once (6)")
    plan.add_argument("--memory-gb", type=float, default=fleet.memory_gb, help="rotate function memory (1.0)")
    plan.add_argument(
        "--seconds-per-object", type=float, default=fleet.seconds_per_object, help="S3 work per object (0.05)"
    )
    plan.add_argument("--tokens-per-kms-request", type=_positive, default=fleet.tokens_per_kms_request)
    for name, value in prices.__dict__.items():
        plan.add_argument(
            f"--price-{name.replace('_', '-')}", type=float, default=value, help=f"USD (default {value:g})"
        )
    plan.add_argument("-v", "--verbose", action="store_true", help="tracebacks")
    plan.set_defaults(run=run_plan)


def _fleet_parser(commands: Any) -> None:
    parser = commands.add_parser("fleet", help="start a census or rotation on the deployed sweep; follow a census run")
    actions = parser.add_subparsers(title="actions", required=True, metavar="ACTION")
    for mode in ("census", "rotate"):
        start = actions.add_parser(mode, help=f"invoke the deployed sweep in {mode} mode")
        start.add_argument("targets", metavar="s3://bucket/prefix", type=_target, nargs="+")
        where = start.add_mutually_exclusive_group(required=True)
        where.add_argument("--function", metavar="NAME", help="the sweep function's name or ARN")
        where.add_argument("--stack", metavar="NAME", help="the deployed stack (its SweepFunction)")
        start.add_argument("--run-id", metavar="ID", help="census: the run id (default: time and a random part)")
        start.add_argument("-v", "--verbose", action="store_true", help="tracebacks")
        start.set_defaults(run=run_fleet_start, mode=mode)
    state = actions.add_parser("status", help="keys listed, enqueued, reported and failed of a census run")
    state.add_argument("run_id", metavar="RUN_ID")
    state.add_argument("--reports", required=True, metavar="s3://bucket/prefix", help="the stack's ReportPrefix")
    state.add_argument("--watch", action="store_true", help="refresh every --interval seconds until done")
    state.add_argument("--interval", type=float, default=10.0, metavar="S")
    state.add_argument("-v", "--verbose", action="store_true", help="tracebacks")
    state.set_defaults(run=run_fleet_status)


def run_fleet_start(options: argparse.Namespace) -> int:
    import boto3

    session = boto3.session.Session()
    name = fleet.sweep_function(session.client("cloudformation"), options.function, options.stack)
    run_id = fleet.start(session.client("lambda"), name, options.mode, options.targets, options.run_id)
    if options.mode == "census":
        print(f"census run {run_id} started on {name}")
        print(f"  follow it:  rewrap fleet status {run_id} --reports <ReportPrefix> --watch")
        print(f"  verdict:    rewrap census --from-reports <ReportPrefix>census/{run_id}/ --min-version N")
    else:
        print(f"rotation sweep started on {name} (request {run_id}); watch the dashboard or the rotate queue")
    return 0


def run_fleet_status(options: argparse.Namespace) -> int:
    s3 = _s3_client(Settings.from_env())
    while True:
        state = fleet.status(s3, options.reports, options.run_id)
        print(state.line(), flush=True)
        if state.done or not options.watch:
            return 0 if state.done else 1
        time.sleep(options.interval)


def run_plan(options: argparse.Namespace) -> int:
    target: SweepTarget = options.target
    per_request = options.tokens_per_kms_request
    if options.census_report is not None:
        inventory = read_census_report(options.census_report, target.prefix, options.min_version, per_request)
    else:
        inventory = read_inventory_csv(options.inventory, target.prefix, options.tokens_per_object, per_request)
    fleet = Fleet(options.kms_rate, options.containers, options.memory_gb, options.seconds_per_object)
    prices = Prices(**{name: getattr(options, f"price_{name}") for name in Prices().__dict__})
    plan = make_plan(inventory, fleet, prices)
    print(f"plan for {_url(target)}: {fleet.containers} containers, NCP {fleet.kms_rate:g} requests/s")
    _table(("", "count", "cost"), plan.rows())
    return 0


def _target(text: str) -> SweepTarget:
    if not text.startswith("s3://"):
        raise argparse.ArgumentTypeError(f"{text!r} is not an s3://bucket/prefix URL")
    try:
        return SweepTarget.parse(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ≥ 1")
    return int(text)


def _url(target: SweepTarget) -> str:
    return f"s3://{target.bucket}/{target.prefix}"


# --------------------------------------------------------------------------- progress
class Progress:
    """One updating line on a terminal; a plain line every ``interval`` seconds otherwise."""

    def __init__(self, stream: IO[str], *, enabled: bool = True, interval: float | None = None) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.interval = interval if interval is not None else (0.2 if self.tty else 10.0)
        self.started = time.monotonic()
        self._shown = self.started
        self._width = 0

    def update(self, done: int, detail: Callable[[], str]) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._shown < self.interval:
            return
        self._shown = now
        line = f"{done:,} objects, {done / max(now - self.started, 1e-9):,.0f}/s — {detail()}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> float:
        if self.enabled and self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
        return time.monotonic() - self.started


@contextmanager
def _report(options: argparse.Namespace, columns: Sequence[str]) -> Iterator[ReportFile | None]:
    if options.report is None:
        yield None
        return
    fmt: Format = options.format or ("csv" if options.report.suffix.lower() == ".csv" else "json")
    try:
        report = ReportFile(options.report, fmt, columns)
    except OSError as exc:
        raise ConfigError(f"cannot write the report {options.report}: {exc.strerror}") from None
    with report:
        yield report


# --------------------------------------------------------------------------- wiring
@contextmanager
def _runtime(options: argparse.Namespace, *, kms: bool) -> Iterator[tuple[Settings, Runtime | None, S3Store]]:
    """Settings, the engine's runtime (only with ``kms``) and an S3 store: the embedded stack with
    --local, otherwise AWS's default credential chain and the functions' environment variables."""
    target: SweepTarget = options.target
    with ExitStack() as stack:
        if options.local:
            require_local_extra("--local")
            from rewrap_local.stack import local_stack

            print(f"starting the embedded stack (moto + NCP KMS emulator) for s3://{target.bucket}", file=sys.stderr)
            local = stack.enter_context(local_stack(bucket=target.bucket))
            settings = _overrides(local.settings(), options)
            runtime: Runtime | None = build_runtime(settings, session=local.session, endpoint_url=local.moto_url)
        else:
            settings = _overrides(_settings_from_env(options, kms=kms), options)
            runtime = build_runtime(settings) if kms else None
        if runtime is not None:
            stack.callback(runtime.kms.http.close)
            yield settings, runtime, runtime.store
        else:
            yield settings, None, S3Store(_s3_client(settings))


def _settings_from_env(options: argparse.Namespace, *, kms: bool) -> Settings:
    settings = Settings.from_env()
    bucket = options.target.bucket
    if kms and settings.buckets and bucket not in settings.buckets:
        raise ConfigError(f"bucket {bucket!r} is not in REWRAP_BUCKETS: add it there or unset the variable")
    if kms and not (options.key_tag or settings.key_tag):
        raise ConfigError("NCP_KMS_KEY_TAG is not set: pass --key-tag or set the variable")
    if kms and not settings.secret_id:
        raise ConfigError(
            "NCP_KMS_SECRET_ID is not set: set it to the Secrets Manager secret (name or ARN) holding "
            '{"accessKey", "secretKey"}, or pass --local'
        )
    return replace(settings, buckets=settings.buckets | {bucket})


def _overrides(settings: Settings, options: argparse.Namespace) -> Settings:
    changes: dict[str, Any] = {}
    if options.key_tag and not options.local:
        changes["key_tag"] = options.key_tag
    if options.concurrency:
        changes["concurrency"] = options.concurrency
    if getattr(options, "rate", None) is not None:
        if options.rate < 0:
            raise ConfigError("--rate must be 0 (unlimited) or more requests per second")
        changes["kms_rate_limit"] = options.rate
    if getattr(options, "dry_run", False):
        changes["dry_run"] = True
    return replace(settings, **changes)


def _s3_client(settings: Settings) -> Any:
    import boto3

    return boto3.session.Session().client("s3", config=aws_client_config(settings.concurrency))


# --------------------------------------------------------------------------- census
def run_census(options: argparse.Namespace) -> int:
    if options.from_reports:
        return run_census_from_reports(options)
    with _runtime(options, kms=False) as (settings, _, store), _report(options, CENSUS_COLUMNS) as report:
        target: SweepTarget = options.target
        judged = options.key_tag or settings.key_tag or None
        census = Census(
            min_version=options.min_version,
            key_tag=judged,
            exclude_prefixes=tuple(options.exclude_prefix),
            exclude_suffixes=tuple(options.exclude_suffix),
        )
        taker = CensusTaker(store, default_key_tag=settings.key_tag, concurrency=settings.concurrency)
        progress = Progress(sys.stderr, enabled=not options.quiet)

        def seen(item: ObjectCensus) -> None:
            if report is not None:
                report.write(item.to_dict())
            progress.update(census.objects, lambda: f"{census.stale_tokens:,} tokens older than the minimum")

        taker.run(target.bucket, target.prefix, census, versions=options.versions, on_object=seen)
        elapsed = progress.finish()
        judgement = census.judge()
        if report is not None:
            report.write({"record": "verdict", "kind": "verdict", "reason": judgement.lines[0], **judgement.to_dict()})
    _print_census(options, census, elapsed)
    return judgement.exit_code


def run_census_from_reports(options: argparse.Namespace) -> int:
    """Merge the partials of a fleet census run (``rewrap census --from-reports s3://…/census/<runId>/``)."""
    if options.local:
        raise ConfigError("--from-reports reads a deployed run's partials; it cannot be combined with --local")
    target: SweepTarget = options.target
    if not target.prefix.rstrip("/").rpartition("/")[2]:
        raise ConfigError("--from-reports needs the run's folder: s3://bucket/prefix/census/<runId>/")
    settings = Settings.from_env()
    store = S3Store(_s3_client(settings))
    folder = target.prefix.rstrip("/") + "/"
    started = time.monotonic()

    def records() -> Iterator[tuple[str, bytes]]:
        token: str | None = None
        while True:
            items, token = store.list_page(target.bucket, folder, token)
            for item in items:
                name = item.key[len(folder) :]
                ref = ObjectRef(target.bucket, item.key)
                head = store.head(ref)
                body = store.get_body(ref, head) if head is not None else None
                if body is not None:
                    yield name, body.data
            if token is None:
                return

    run = merge_run(records(), _url(target), options.min_version, options.key_tag or settings.key_tag or None)
    code, verdict = run.judge_lines()
    census = run.census
    print(
        f"census run {run.run_id} ({_url(target)}): {run.partials:,} partials from {run.listings:,} sweep "
        f"listing records merged in {time.monotonic() - started:.1f} s; {census.objects:,} objects, "
        f"{census.bytes_read / 1048576:,.1f} MiB read by the fleet"
    )
    _census_tables(census)
    for line in verdict:
        print(line if line.startswith(" ") else f"  {line}")
    if options.report is not None:
        with _report(options, CENSUS_COLUMNS) as report:
            if report is not None:
                report.write({"record": "verdict", "kind": "verdict", "reason": verdict[0], "exitCode": code})
    return code


def _print_census(options: argparse.Namespace, census: Census, elapsed: float) -> None:
    scope = " (current and noncurrent versions)" if options.versions else ""
    print(
        f"census of {_url(options.target)}{scope}: {census.objects:,} objects, "
        f"{census.bytes_read / 1048576:,.1f} MiB read in {elapsed:.1f} s"
    )
    _census_tables(census)
    # The verdict comes last: it is the line an operator acts on.
    for line in census.judge().lines:
        print(line if line.startswith(" ") else f"  {line}")


def _census_tables(census: Census) -> None:
    rows = [
        (tag, f"v{version}", f"{c.tokens:,}", f"{c.objects:,}", f"{c.noncurrent_objects:,}")
        for tag, versions in sorted(census.by_key.items())
        for version, c in sorted(versions.items())
    ]
    _table(("key tag", "version", "tokens", "objects", "noncurrent"), rows or [("—", "—", "0", "0", "0")])
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in sorted(census.kinds.items()))
    print(f"  objects by kind: {kinds or 'none'}; noncurrent versions {census.noncurrent_objects:,}")
    if census.stale_noncurrent_objects:
        print(
            f"  {census.stale_noncurrent_objects:,} objects with older tokens are noncurrent versions, which cannot be "
            "rotated (S3 versions are immutable): expire them (lifecycle NoncurrentVersionExpiration) or delete them"
        )
    if census.stale_examples:
        print("  objects with older tokens (first few):")
    for item in census.stale_examples:
        assert census.min_version is not None
        versions = ", ".join(f"v{v}: {n} tokens" for v, n in sorted(item.versions.items()) if v < census.min_version)
        print(f"    {item.ref}{' (noncurrent)' if item.noncurrent else ''}: {versions}")
    if census.stale_objects > len(census.stale_examples):
        print(f"    … and {census.stale_objects - len(census.stale_examples):,} more (see --report)")


# --------------------------------------------------------------------------- rotate
@dataclass
class _Tally:
    counts: Counter[str] = field(default_factory=Counter)  # summarize() fields, summed over batches
    tokens: Counter[str] = field(default_factory=Counter)  # tokens per status
    before: Counter[int] = field(default_factory=Counter)  # objects per key version
    after: Counter[int] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)  # opaque, unreadable, failed: the first few
    excluded: int = 0

    def add(self, results: list[ObjectResult]) -> None:
        self.counts.update(summarize(results))
        for result in results:
            if result.status in (*UNSEEN, Status.FAILED):
                shown = self.examples.setdefault(str(result.status), [])
                reason = result.error.reason if result.error is not None else result.reason
                if len(shown) < EXAMPLES:
                    shown.append(f"{result.ref}: {reason}")
            self.tokens[str(result.status)] += result.tokens
            self.before.update(result.old_versions)
            if result.status in (Status.ROTATED, Status.WOULD_ROTATE) and result.new_version is not None:
                self.after[result.new_version] += 1
            else:
                self.after.update(result.old_versions)

    def line(self) -> str:
        shown = (str(s) for s in Status if self.counts[str(s)])
        return ", ".join(f"{s} {self.counts[s]:,}" for s in shown) or "listing"


def run_rotate(options: argparse.Namespace) -> int:
    with _runtime(options, kms=True) as (settings, runtime, store), _report(options, ROTATE_COLUMNS) as report:
        assert runtime is not None
        target: SweepTarget = options.target
        newest = probe_newest_versions(runtime.kms, [settings.key_tag], Deadline(None))
        for key_tag, version in newest.items():
            runtime.engine.versions.observe(key_tag, version)
        mode = " (dry run: nothing is written)" if settings.dry_run else ""
        print(f"rotating {_url(target)} to key {settings.key_tag} v{newest[settings.key_tag]}{mode}", file=sys.stderr)
        tally = _Tally()
        progress = Progress(sys.stderr, enabled=not options.quiet)
        listing_error: RewrapError | None = None
        token: str | None = None
        while True:
            try:
                page, token = store.list_page(target.bucket, target.prefix, token)
            except RewrapError as error:
                if not tally.counts["total"]:
                    raise
                listing_error = error
                break
            kept = [item for item in page if not _excluded(options, item.key)]
            tally.excluded += len(page) - len(kept)
            for start in range(0, len(kept), BATCH_OBJECTS):
                refs = [ObjectRef(target.bucket, item.key) for item in kept[start : start + BATCH_OBJECTS]]
                results = runtime.engine.rotate(refs, dry_run=settings.dry_run)
                tally.add(results)
                if report is not None:
                    for result in results:
                        report.write(result.to_dict())
                progress.update(tally.counts["total"], tally.line)
            if token is None:
                break
        elapsed = progress.finish()
    _print_rotate(options, tally, runtime.kms.stats.snapshot(), elapsed, settings.dry_run)
    total, failed = tally.counts["total"], tally.counts[str(Status.FAILED)]
    unseen = sum(tally.counts[str(s)] for s in UNSEEN)
    if listing_error is not None:
        print(f"rewrap: listing stopped early: {_explain(listing_error)}", file=sys.stderr)
        return PARTIAL
    if total and failed == total:
        return NOTHING_DONE
    return PARTIAL if failed or unseen else OK


def _excluded(options: argparse.Namespace, key: str) -> bool:
    return key.startswith(tuple(options.exclude_prefix)) or key.endswith(tuple(options.exclude_suffix))


def _print_rotate(options: argparse.Namespace, tally: _Tally, kms: dict[str, int], elapsed: float, dry: bool) -> None:
    total = tally.counts["total"]
    print(f"rotate {_url(options.target)}: {total:,} objects in {elapsed:.1f} s ({total / max(elapsed, 1e-9):,.0f}/s)")
    always = (
        {Status.ROTATED, Status.CURRENT, Status.FAILED}
        if not dry
        else {Status.WOULD_ROTATE, Status.CURRENT, Status.FAILED}
    )
    shown = [s for s in Status if s in always or tally.counts[str(s)]]
    rows = [(str(s), f"{tally.counts[str(s)]:,}", f"{tally.tokens[str(s)]:,}") for s in shown]
    rows += [
        ("  retryable", f"{tally.counts['retryable']:,}", ""),
        ("  permanent", f"{tally.counts['permanent']:,}", ""),
    ]
    _table(("status", "objects", "tokens"), rows)

    def spread(counter: Counter[int]) -> str:
        return ", ".join(f"v{v}: {n:,}" for v, n in sorted(counter.items())) or "—"

    after = "after (would be)" if dry else "after"
    print(f"  objects per key version: before {spread(tally.before)} → {after} {spread(tally.after)}")
    print(f"  NCP KMS: {kms['requests']:,} requests, {kms['retries']:,} retries")
    if tally.excluded:
        print(f"  excluded by the operator, not read: {tally.excluded:,} objects")
    for status in (*UNSEEN, Status.FAILED):
        examples = tally.examples.get(str(status), [])
        if examples:
            what = {
                Status.OPAQUE: "opaque (could hold tokens rewrap cannot read; handle them by hand)",
                Status.UNREADABLE: "unreadable (restore, grant access or decrypt them, then run again)",
                Status.FAILED: "failed",
            }[status]
            print(f"  {what}:")
            print("\n".join(f"    {line}" for line in examples))
            if tally.counts[str(status)] > len(examples):
                print(f"    … and {tally.counts[str(status)] - len(examples):,} more (see --report)")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  " + "  ".join(cells).rstrip())


if __name__ == "__main__":
    sys.exit(main())
