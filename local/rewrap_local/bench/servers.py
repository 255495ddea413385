"""The moto server and the NCP KMS emulator, each in its own process (so this process's CPU time and
memory are the contenders' alone)."""

from __future__ import annotations

import contextlib
import multiprocessing
import random
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from rewrap_local.stack import ACCESS_KEY, API_KEY, SECRET_KEY

from .constants import DATA_KEY_BYTES


def moto_main(conn: Connection) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    conn.send(f"http://{host}:{port}")
    while True:
        try:
            command, args = conn.recv()
        except EOFError:  # the parent went away
            break
        if command != "seed":  # "stop", or anything else
            break
        try:
            conn.send(("ok", _seed(*args)))
        except Exception as exc:  # noqa: BLE001 (reported to the parent, which raises it)
            conn.send(("error", repr(exc)))
    server.stop()


def _seed(bucket: str, objects: list[tuple[str, bytes, str, dict[str, str]]]) -> int:
    """(key, body, content type, user metadata) written straight into moto's backend, without HTTP:
    seeding a bucket of many thousand objects in seconds. Nothing measured goes this way."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.s3.utils import metadata_from_headers

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key, body, content_type, metadata in objects:
        headers = {"Content-Type": content_type, **{f"x-amz-meta-{k}": v for k, v in metadata.items()}}
        backend.put_object(bucket, key, body).set_metadata(metadata_from_headers(headers))
    return len(objects)


def kms_main(conn: Connection, seed: int) -> None:
    from rewrap_local.emulator import KmsEmulator

    kms = KmsEmulator(seed).start()
    kms.add_credentials(ACCESS_KEY, SECRET_KEY, API_KEY)
    conn.send((kms.url, kms.create_key()))
    rng = random.Random(seed)
    while True:
        try:
            command, args = conn.recv()
        except EOFError:
            break
        if command == "stop":
            break
        try:
            if command == "encrypt":  # n fresh data keys wrapped at the key's current version
                tag, n = args
                value: Any = [kms.encrypt(tag, rng.randbytes(DATA_KEY_BYTES)) for _ in range(n)]
            elif command == "rotate":
                value = kms.rotate(*args)
            elif command == "latency":
                value = kms.set_latency(*args)
            elif command == "inject":  # a queued fault: (kind, times[, action])
                value = kms.inject(*args)
            elif command == "undecryptable":  # how many of the tokens do not decrypt
                tag, tokens = args
                value = sum(not _decrypts(kms, tag, token) for token in tokens)
            elif command == "stats":
                value = kms.stats.snapshot()
            else:
                raise ValueError(f"unknown command {command!r}")
            conn.send(("ok", value))
        except Exception as exc:  # noqa: BLE001 (reported to the parent, which raises it)
            conn.send(("error", repr(exc)))
    kms.stop()


def _decrypts(kms: Any, tag: str, token: str) -> bool:
    from rewrap_local.emulator import EmulatorError

    try:
        kms.decrypt(tag, token)
    except EmulatorError:
        return False
    return True


class Child:
    """A server in a child process, driven through a pipe."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child_conn, *args), daemon=True)
        self.process.start()
        child_conn.close()
        self.hello = self.conn.recv()

    def call(self, command: str, *args: Any) -> Any:
        self.conn.send((command, args))
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"emulator {command} failed: {value}")
        return value

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop", ()))
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
