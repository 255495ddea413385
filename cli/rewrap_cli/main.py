"""``rewrap`` — the operator's command line, from "key rotated" to "old version disabled".

  rewrap census s3://bucket/prefix [--versions] [--min-version N] [--key-tag T] [--report FILE]
                [--exclude-prefix P]... [--exclude-suffix S]...
  rewrap rotate s3://bucket/prefix [--dry-run] [--concurrency N] [--rate R] [--report FILE] [--local]
                [--exclude-prefix P]... [--exclude-suffix S]...
  rewrap plan s3://bucket/prefix (--census-report FILE | --inventory FILE) ...
  rewrap fleet census|rotate s3://bucket/prefix... (--function NAME | --stack NAME)
  rewrap fleet status RUN_ID --reports s3://bucket/prefix
  rewrap batch-job census|rotate --manifest s3://bucket/key --report s3://bucket/prefix (--stack NAME | ...)
  rewrap retire s3://bucket/prefix... | --from-reports s3://…/census/<runId>/  (--version N... | --below N)
                [--max-age 24h] [--yes] [--dry-run]
  rewrap retire --undo [--version N... | --below N] [--yes]
  rewrap retire status [--watch 7d]
  rewrap emulator ...       the local NCP KMS emulator (needs the local extra)
  rewrap demo               the end-to-end demo on the embedded stack (needs the local extra)

``rotate`` runs the Lambda's engine from a laptop or CI job: AWS through the default credential
chain, NCP with the same environment variables as the functions (NCP_KMS_KEY_TAG,
NCP_KMS_SECRET_ID, NCP_KMS_ENDPOINT, …), or the embedded stack with ``--local``.

Exit codes: 0 done (rotate: every object rotated or current; census: SAFE, proven that nothing
is older than --min-version); 1 partly (rotate: some objects failed, were opaque or unreadable;
census: NOT SAFE or UNKNOWN); 2 nothing could be done (configuration, credentials, bucket refused
or unlisted, every object failed; census: nothing could be read).

The commands live one group to a module: ``parser`` (the arguments), ``census_command``,
``rotate_command`` (with ``wiring``), ``retire_command``, ``plan``, ``fleet``, ``batch_job``; ``common``
holds what they share.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence

from rewrap_cli import parser
from rewrap_cli.common import NOTHING_DONE, LocalExtraMissing, explain, require_local_extra


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # These two own their arguments; they are listed in --help.
    if args[:1] in (["emulator"], ["demo"]):
        return _local(args[0], args[1:])
    if args[:2] == ["retire", "status"]:
        args = ["retire-status", *args[2:]]
    options = parser.build().parse_args(args)
    logging.basicConfig(level=logging.DEBUG if options.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(options.run(options))
    except KeyboardInterrupt:
        print("rewrap: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
        print(f"rewrap: {explain(exc)}", file=sys.stderr)
        if options.verbose:
            traceback.print_exception(exc, file=sys.stderr)
        return NOTHING_DONE


def _local(command: str, args: list[str]) -> int:
    """``rewrap emulator`` and ``rewrap demo``: the embedded stack, from the optional local extra."""
    try:
        require_local_extra(f"rewrap {command}")
    except LocalExtraMissing as missing:
        print(f"rewrap: {missing}", file=sys.stderr)
        return NOTHING_DONE
    from rewrap_local.demo import main as demo_main
    from rewrap_local.emulator import main as emulator_main

    return emulator_main(args) if command == "emulator" else demo_main()


if __name__ == "__main__":
    sys.exit(main())
