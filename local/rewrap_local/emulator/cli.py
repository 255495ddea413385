"""``python -m rewrap_local.emulator`` (and ``rewrap emulator``): run the emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .core import KmsEmulator
from .keys import REGIONS


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rewrap_local.emulator", description="Run a local NCP KMS emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--api-key", default=None, help="enables signature v1 (/keys/v1/...)")
    parser.add_argument("--create-key", metavar="TAG", default=None, help="key tag (default: random)")
    parser.add_argument("--convergent", action="store_true", help="make the key convergent")
    parser.add_argument("--seed", type=int, default=None, help="reproducible key material")
    parser.add_argument(
        "--region", choices=REGIONS, default="global", help="the region whose host this emulator stands for"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    emulator = KmsEmulator(seed=args.seed, region=args.region)
    emulator.add_credentials(args.access_key, args.secret_key, args.api_key)
    tag = emulator.create_key(args.create_key, convergent=args.convergent)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        emulator.start(args.host, args.port)
    except OSError as err:
        print(f"cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    print(f"NCP KMS emulator at {emulator.url} key tag {tag}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0
