""":class:`KmsEmulator`: the emulator's Python API, and the path of one HTTP request through its parts."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from rewrap.ncp.management import Activity

from .auth import Authenticator
from .errors import AUTH_FAILED, NOT_FOUND, PERMISSION_DENIED, EmulatorError
from .faults import FaultQueue, act_before
from .keys import KeyStore, check_region, check_region_name
from .routes import CHANGING_ACTIONS, CRYPTO_ACTIONS, RE_ENCRYPT_SPELLINGS, Route, route
from .server import Server
from .stats import EmulatorStats
from .wire import Wire
from .wire_1_0 import Wire10
from .wire_2_0 import Wire20
from .wire_v3 import WireV3

if TYPE_CHECKING:
    from .server import Handler


class KmsEmulator:
    """An in-process NCP KMS: key state, crypto, fault injection and the HTTP server around them."""

    def __init__(self, seed: int | None = None, region: str = "global") -> None:
        # one random source for key material, tokens and latency: a seed reproduces all of them
        self._rng: random.Random = random.Random(seed) if seed is not None else random.SystemRandom()
        self._lock = threading.RLock()
        self._keys = KeyStore(self._rng)
        self._auth = Authenticator(self._rng, self.now)
        self.reset_switches()
        self._region = "global"
        self.region = region
        self._stats = EmulatorStats()
        self._stopping = threading.Event()
        self._faults = FaultQueue(self._rng, self._stats, self._stopping)
        self._wires: dict[str, Wire] = {
            wire.generation.name: wire(self._keys, self._faults, self._stats, self) for wire in (Wire10, Wire20, WireV3)
        }
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def reset_switches(self) -> None:
        """Back to accepting every documented reading (see the package docstring)."""
        self.re_encrypt_spelling: str | None = None
        self.v3_re_encrypt_field = "newCiphertext"
        self.arrays_2_0 = True
        self.refuse_unchanged_version_2_0 = False
        self.activity_delay = 0.0
        self.clock_offset = 0.0

    def now(self) -> float:
        """The emulator's clock (Unix seconds), ``clock_offset`` included."""
        return time.time() + self.clock_offset

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> KmsEmulator:
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the emulator is already running")
            self._stopping.clear()
            server = Server((host, port), self._handle, self._stats, self.now)
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="kms-emulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()  # wakes injected timeouts and latency sleeps
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        server = self._server
        if server is None:
            raise RuntimeError("the emulator is not running")
        host, port = server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def __enter__(self) -> KmsEmulator:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- credentials -------------------------------------------------------------------------------
    def add_credentials(self, access_key: str, secret_key: str, api_key: str | None = None) -> None:
        self._auth.add_credentials(access_key, secret_key, api_key)

    def remove_credentials(self, access_key: str) -> None:
        self._auth.remove_credentials(access_key)

    def allow_management(self, access_key: str, allowed: bool = True) -> None:
        """``allowed=False``: the access key's policy reads keys but may not change them (rotation,
        version states): such a call answers 401, gateway code 210 "Permission Denied"."""
        self._auth.allow_management(access_key, allowed)

    def issue_token(self, tag: str, expires_in: float | None = None) -> str:
        """An ``x-ncp-ocapi-token`` for the crypto calls of one key (2.0 and v3 token auth): a JWT-shaped
        access token, with an ``exp`` claim ``expires_in`` seconds from now when given."""
        return self._auth.issue_token(self._keys.get(tag).tag, expires_in)

    def revoke_token(self, token: str) -> None:
        self._auth.revoke_token(token)

    # --- region --------------------------------------------------------------------------------------
    @property
    def region(self) -> str:
        """The region whose host this emulator stands for: ``global``, ``kr`` or ``jpn``."""
        return self._region

    @region.setter
    def region(self, region: str) -> None:
        check_region_name(region)
        self._region = region

    # --- keys ----------------------------------------------------------------------------------------
    def create_key(self, tag: str | None = None, convergent: bool = False, region: str | None = None) -> str:
        """A new key at version 1; ``region`` (``kr``/``jpn``) makes a region-isolated tag like NCP's."""
        return self._keys.create(tag, convergent, region)

    def rotate(self, tag: str) -> int:
        return self._keys.add_version(self._keys.get(tag))

    def current_version(self, tag: str) -> int:
        key = self._keys.get(tag)
        with self._keys.lock:
            return key.current

    def is_convergent(self, tag: str) -> bool:
        return self._keys.get(tag).convergent

    def set_key_state(self, tag: str, state: str) -> None:
        """``ENABLED``, ``DISABLED`` or ``REVOKED`` (deletion requested)."""
        self._keys.set_state(tag, state)

    def disable_version(self, tag: str, version: int) -> None:
        self._keys.disable_version(tag, version)

    def enable_version(self, tag: str, version: int) -> None:
        self._keys.enable_version(tag, version)

    def version_states(self, tag: str) -> dict[int, str]:
        """Version → ``ENABLED`` / ``DISABLED``."""
        key = self._keys.get(tag)
        with self._keys.lock:
            return {v: "DISABLED" if v in key.disabled else "ENABLED" for v in range(1, key.current + 1)}

    def key_state(self, tag: str) -> str:
        key = self._keys.get(tag)
        with self._keys.lock:
            return key.status

    def history(self, tag: str) -> list[Activity]:
        """The key's activity history as it has arrived, newest first."""
        now_ms = int(self.now() * 1000)
        return self._keys.history(self._keys.get(tag), 0, now_ms, now_ms - int(self.activity_delay * 1000))

    # --- crypto --------------------------------------------------------------------------------------
    def encrypt(self, tag: str, plaintext: bytes, context: bytes | None = None) -> str:
        """A token for ``plaintext`` at the key's current version."""
        return self._keys.seal(self._keys.get(tag), plaintext, context)

    def decrypt(self, tag: str, token: str, context: bytes | None = None) -> bytes:
        """The plaintext of ``token``; raises :class:`EmulatorError` when KMS would refuse."""
        return self._keys.open(self._keys.get(tag), token, context)[0]

    # --- behaviour knobs -----------------------------------------------------------------------------
    @property
    def stats(self) -> EmulatorStats:
        return self._stats

    def set_latency(self, min_s: float, max_s: float | None = None) -> None:
        """Delay every request by a uniform random time in [min_s, max_s] (0 switches it off)."""
        self._faults.set_latency(min_s, max_s)

    def inject(
        self, kind: str, times: int = 1, action: str | None = "re-encrypt", key_tag: str | None = None, **params: Any
    ) -> None:
        """Queue ``kind`` for the next ``times`` requests to ``action`` (None: any action), optionally
        only for requests on ``key_tag``."""
        self._faults.inject(kind, times, action, key_tag, params)

    def clear_faults(self) -> None:
        self._faults.clear()

    def pending_faults(self) -> list[tuple[str, int, str | None]]:
        """(kind, remaining, action) of every queued fault."""
        return self._faults.pending()

    # --- one HTTP request ----------------------------------------------------------------------------
    def _handle(self, handler: Handler, method: str, body: bytes) -> None:
        """Answer one request (the server's handler threads call this)."""
        uri = handler.path  # exactly as received, query included: that is what was signed
        parts = urlsplit(uri)
        target = self._route(method, parts.path)
        if target is None:
            handler.reply_json(404, NOT_FOUND)
            return
        target = replace(target, query=tuple(parse_qsl(parts.query)))
        self._stats._add("requests", target.action)
        if not self._auth.authenticate(method, uri, handler.headers, target):
            self._stats._auth_failure()
            handler.reply_json(401, AUTH_FAILED)
            return
        if target.action in CHANGING_ACTIONS and not self._auth.may_manage(handler.headers):
            handler.reply_json(401, PERMISSION_DENIED)
            return
        self._faults.delay()
        fault = self._faults.take(target.action, pre=True, tag=target.tag)
        if fault is not None and act_before(handler, fault, self._faults.sleep):
            return
        wire = self._wires[target.api]
        try:
            check_region(target.tag, self._region)
            key = self._keys.get(target.tag)
            crypto = target.action in CRYPTO_ACTIONS
            status, payload = (wire.crypto if crypto else wire.admin)(target, key, body)
        except EmulatorError as err:
            status, payload = wire.error(err)
        if target.action != "activities":  # reading the history is not itself recorded
            who = self._auth.requestor(handler.headers)
            entry = Activity(int(self.now() * 1000), target.action, status < 400, who, handler.client_address[0])
            self._keys.record(target.tag, entry)
        handler.reply_json(status, payload)

    def _route(self, method: str, path: str) -> Route | None:
        """The route at ``path``; with ``re_encrypt_spelling`` set, the other spelling lives nowhere."""
        found = route(method, path)
        strict = self.re_encrypt_spelling
        if (
            found is not None
            and strict
            and found.segment in RE_ENCRYPT_SPELLINGS[found.api]
            and found.segment != strict
        ):
            return None
        return found
