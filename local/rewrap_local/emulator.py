"""A local NAVER Cloud Platform KMS emulator: a real HTTP server on loopback.

It serves the part of NCP KMS that rewrap uses, in all three API generations over the same keys, with
NCP's paths, API Gateway signatures (verified with ``rewrap.ncp.signing``, so client and emulator share one
string-to-sign), envelopes and limits (``rewrap.ncp.generations`` holds the assumptions both share):

* KMS API 1.0: ``POST /keys/v2/{keyTag}/{action}`` (signature v2) and ``POST /keys/v1/{keyTag}/{action}``
  (signature v1, which adds the API key), action ``encrypt``, ``decrypt``, ``re-encrypt`` (alias
  ``reencrypt``) or ``createCustomKey``. Success: ``{"code": "SUCCESS", "msg": "", "data": {...}}``; a
  string request gets a string back, an array request an array.
* KMS API 2.0: ``POST /kms/v1/keys/{keyTag}/{action}``, action ``encrypt``, ``decrypt``, ``re-encrypt``
  (alias ``reencrypt``) or ``create-custom-key``, bodies as in 1.0, signature v2 or the
  ``x-ncp-ocapi-token`` header (:meth:`KmsEmulator.issue_token`); admin (signature v2 only):
  ``POST .../rotate``, ``GET /kms/v1/keys/{keyTag}`` (key info) and ``GET .../versions``. Success
  ``{"code": "SUCCESS", "data": {...}}``.
* KMS v3: ``POST /kms/v3/keys/{keyTag}/{action}`` (signature v2) or ``/kms/v3/token/keys/...`` (token),
  action ``encrypt``/``decrypt``/``re-encrypt``/``issue-custom-key`` (one string item) or
  ``batch-encrypt``/``batch-decrypt``/``batch-re-encrypt`` (``{"requests": [{item, context?}]}``, 1-100
  items, atomic: results ``{"results": {"0": {...}}}``, or only the failed items in ``{"failures":
  {"<index>": {"errorCode", "message"}}}``, checked in two phases: empty/format first, then the rest;
  status of the single cause, 400 for several; a value of the wrong JSON type fails the whole request
  with ``fieldErrors``). Admin: ``GET /kms/v3/keys/{keyTag}``, ``POST .../versions`` (rotate),
  ``GET|PATCH .../versions/{version}``. Success bodies are bare; errors ``{"error": {"errorCode",
  "message"}}`` with ``InvalidParameter`` (400), ``NotFound`` (404), ``KeyVersionDisabled`` (409),
  ``RegionMismatch`` (400).

Regions: the emulator stands for the host of one region (``region``: ``global`` (default), ``kr`` or
``jpn``; ``--region`` on the command line), since on loopback the ``Host`` header cannot tell. A key tag
with the prefix ``kr-``/``jpn-`` (any case; :meth:`KmsEmulator.create_key` ``region=``) is served only
when that is the emulator's region, on every path family; elsewhere the answer is 400 with code
``REGION_MISMATCH`` (v3 ``RegionMismatch``). Global keys are served in every region.

Crypto: AES-256-GCM, one 32-byte key per version. Token = ``ncpkms:v{version}:`` + padded base64 of
(12-byte nonce + ciphertext + tag); the AAD binds the key tag (and, for convergent keys, the context), so a
token opens only under its own key. Convergent keys derive the nonce from HMAC-SHA256(version key,
len(context) || context || plaintext) and require a context; other keys ignore ``context`` (as the v3
docs say). The current version cannot be disabled (v3 docs).

The public docs leave the HTTP statuses of KMS errors unconfirmed; this emulator chooses:

* 401 ``{"error": {"errorCode": "200", "message": "Authentication Failed"}}`` — unknown access key, bad
  signature, missing header, wrong API key (v1), timestamp >= 5 minutes off the server clock (API Gateway
  table). Nothing from the request is echoed.
* 404 ``{"error": {"errorCode": "300", "message": "Not Found Exception"}}`` — unknown key tag or route.
* 400 ``{"code": "INVALID_REQUEST", "msg": "<reason>", "data": null}`` — malformed JSON, bad or oversized
  ciphertext/plaintext, array items totalling > 32,768 characters, empty array, missing or wrong context,
  decryption failure. A disabled key version: 400 with code ``UNPROCESSABLE_ENTITY``, msg ``Invalid status``.
* 413 (gateway code 430) for bodies over 16 MiB; 500 (code 900) if the emulator itself breaks.
* Injected faults: 429 ``{"error": {"errorCode": "420", "message": "Rate Limited"}}`` (+ ``Retry-After``)
  and 500/502/503/504 ``{"error": {"errorCode": "900", "message": "Unexpected Error"}}``.

Fault kinds for :meth:`KmsEmulator.inject` (each consumed by one matching request and counted in
``stats.faults_injected``): ``throttle``, ``server-error``, ``timeout``, ``reset`` and ``non-json`` hit a
request after authentication; ``short-reply``, ``extra-item``, ``bad-pattern``, ``lower-version`` and
``corrupt`` rewrite a successful reply (they wait in the queue while the matching requests fail).
On a single-string reply ``short-reply`` drops the field and ``extra-item`` turns it into a 2-item array.

Where NCP's pages disagree, the emulator accepts both readings by default, and a switch makes it serve
only one, so the client's fallbacks are tested against a server that does not forgive
(:meth:`KmsEmulator.reset_switches` restores the defaults):

* ``re_encrypt_spelling``: ``"reencrypt"`` or ``"re-encrypt"`` serves only that 1.0/2.0 path (the other
  answers 404, gateway code 300); None (default) serves both.
* ``v3_re_encrypt_field``: the name of the v3 re-encrypt result, single and batch (``newCiphertext``,
  default, or ``ciphertext``).
* ``arrays_2_0``: False makes 2.0 refuse array bodies with 400 ``INVALID_REQUEST`` "Invalid type:
  ciphertext must be a String" (the Korean 2.0 table types it String only).
* ``clock_offset``: seconds the emulator's clock is off (its ``Date`` header and the 5-minute check).

Key states (:meth:`KmsEmulator.set_key_state`): ``ENABLED``, ``DISABLED`` or ``REVOKED`` (deletion
pending); key info shows them (2.0 ``ENABLE``/``DISABLE``/``REVOKE``). A key not enabled refuses every
crypto call: 1.0/2.0 400 ``UNPROCESSABLE_ENTITY`` "Invalid status" (as a disabled version does; 1.0 has
no key info to tell them apart), v3 409 ``KeyNotEnabled``. Tokens from :meth:`KmsEmulator.issue_token`
are JWT-shaped with an optional ``exp`` claim; an expired one is refused (401). Every reply carries
``x-ncp-request-id``.

Run it: ``python -m rewrap_local.emulator --port 8787 --access-key K --secret-key S``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rewrap.ncp.generations import REGION_HOSTS, WRONG_REGION_CODE, WRONG_REGION_CODE_V3, key_region
from rewrap.ncp.signing import (
    ACCESS_KEY_HEADER,
    API_KEY_HEADER,
    OCAPI_AUTH_HEADER,
    SIGNATURE_HEADERS,
    TIMESTAMP_HEADER,
    sign,
    string_to_sign,
)
from rewrap.tokens import MAX_TOKEN_CHARS, TOKEN_RE, token_version

__all__ = ["FAULT_KINDS", "EmulatorError", "EmulatorStats", "KmsEmulator", "main"]

MAX_PLAINTEXT_BYTES = 32_768  # AES256 plaintext per item
MAX_LIST_CHARS = 32_768  # all items of an array request together (1.0, and 2.0 by assumption)
MAX_BATCH_ITEMS = 100  # v3 batch-* requests
MAX_CONTEXT_BYTES = 50
MAX_BODY_BYTES = 16 * 1024 * 1024
CLOCK_SKEW_MS = 5 * 60 * 1000
NONCE_BYTES = 12
TAG_BYTES = 16

_B64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)")
_KEY_TAG_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_LEGACY_ROUTE = re.compile(r"/keys/(v1|v2)/([^/]+)/([^/]+)")
_V2_ROUTE = re.compile(r"/kms/v1/keys/([^/]+)(?:/([^/]+))?")
_V3_ROUTE = re.compile(r"/kms/v3/(token/)?keys/([^/]+)(?:/([^/]+)(?:/([^/]+))?)?")
_V3_VERSION = re.compile(r"[1-9][0-9]{0,8}")
# Crypto path segments per API generation: segment -> (action, batch). Stats and faults use the action.
_CRYPTO_SEGMENTS: dict[str, dict[str, tuple[str, bool]]] = {
    "1.0": {
        "encrypt": ("encrypt", False),
        "decrypt": ("decrypt", False),
        "re-encrypt": ("re-encrypt", False),
        "reencrypt": ("re-encrypt", False),
        "createCustomKey": ("createCustomKey", False),
    },
    "2.0": {
        "encrypt": ("encrypt", False),
        "decrypt": ("decrypt", False),
        "re-encrypt": ("re-encrypt", False),
        "reencrypt": ("re-encrypt", False),
        "create-custom-key": ("createCustomKey", False),
    },
    "v3": {
        "encrypt": ("encrypt", False),
        "decrypt": ("decrypt", False),
        "re-encrypt": ("re-encrypt", False),
        "issue-custom-key": ("createCustomKey", False),
        "batch-encrypt": ("encrypt", True),
        "batch-decrypt": ("decrypt", True),
        "batch-re-encrypt": ("re-encrypt", True),
    },
}
_RE_ENCRYPT_SPELLINGS = frozenset({"re-encrypt", "reencrypt"})
_ACTION_ALIASES = {segment: action for table in _CRYPTO_SEGMENTS.values() for segment, (action, _) in table.items()}
_CRYPTO_ACTIONS = frozenset(_ACTION_ALIASES.values())
REGIONS = ("global", *REGION_HOSTS)
# v3 errorCode and status for each emulator error code (1.0/2.0 answer the code itself).
_V3_ERRORS = {
    "INVALID_REQUEST": ("InvalidParameter", 400),
    "UNPROCESSABLE_ENTITY": ("KeyVersionDisabled", 409),
    "NOT_FOUND": ("NotFound", 404),
    WRONG_REGION_CODE: (WRONG_REGION_CODE_V3, 400),
}

FAULT_KINDS: dict[str, tuple[str, ...]] = {
    # kind -> accepted parameters
    "throttle": ("retry_after",),
    "server-error": ("status",),
    "timeout": ("seconds",),
    "reset": (),
    "non-json": (),
    "short-reply": (),
    "extra-item": (),
    "bad-pattern": (),
    "lower-version": (),
    "corrupt": (),
}
_PRE_FAULTS = frozenset({"throttle", "server-error", "timeout", "reset", "non-json"})
BAD_PATTERN_ITEM = "ncpkms:v0:!!not-a-token!!"
_NON_JSON_BODY = b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>\n"

_AUTH_FAILED = {"error": {"errorCode": "200", "message": "Authentication Failed"}}
_NOT_FOUND = {"error": {"errorCode": "300", "message": "Not Found Exception"}}
_TOO_LARGE = {"error": {"errorCode": "430", "message": "Request Entity Too Large"}}
_RATE_LIMITED = {"error": {"errorCode": "420", "message": "Rate Limited"}}
_UNEXPECTED = {"error": {"errorCode": "900", "message": "Unexpected Error"}}


class EmulatorError(Exception):
    """A request KMS would reject; ``status``/``code`` are what the HTTP API answers with."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str = "INVALID_REQUEST",
        field: str | None = None,
        v3: tuple[str, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field  # v3: the request field of the wrong JSON type (whole request refused)
        self.v3_error = v3  # v3 errorCode and status, when they differ from the code's usual ones

    def v3(self) -> tuple[int, dict[str, Any]]:
        """Status and v3 error object."""
        code, status = self.v3_error or _V3_ERRORS.get(self.code, ("InvalidParameter", self.status))
        error: dict[str, Any] = {"errorCode": code, "message": str(self)}
        if self.field is not None:
            error["fieldErrors"] = [{"field": self.field, "message": str(self)}]
        return status, error


def _invalid_status() -> EmulatorError:
    return EmulatorError("Invalid status", code="UNPROCESSABLE_ENTITY")


def _key_not_enabled(key: _Key) -> EmulatorError:
    return EmulatorError("Invalid status", code="UNPROCESSABLE_ENTITY", v3=("KeyNotEnabled", 409))


def _not_found() -> EmulatorError:
    return EmulatorError("Not Found Exception", status=404, code="NOT_FOUND")


class EmulatorStats:
    """Counters of HTTP traffic (calls of the Python API are not counted). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # routed requests per action, whatever the outcome
        self.items: Counter[str] = Counter()  # items in successful requests per action
        self.faults_injected: Counter[str] = Counter()  # per fault kind
        self.statuses: Counter[int] = Counter()  # responses per HTTP status
        self.auth_failures = 0
        self.connections = 0  # TCP connections accepted

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.items.clear()
            self.faults_injected.clear()
            self.statuses.clear()
            self.auth_failures = 0
            self.connections = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "items": dict(self.items),
                "faults_injected": dict(self.faults_injected),
                "statuses": dict(self.statuses),
                "auth_failures": self.auth_failures,
                "connections": self.connections,
            }

    def _add(self, counter: Literal["requests", "items", "faults_injected"], name: str, n: int = 1) -> None:
        with self._lock:
            getattr(self, counter)[name] += n

    def _status(self, status: int) -> None:
        with self._lock:
            self.statuses[status] += 1

    def _auth_failure(self) -> None:
        with self._lock:
            self.auth_failures += 1

    def _connection(self) -> None:
        with self._lock:
            self.connections += 1

    def __repr__(self) -> str:
        return f"EmulatorStats({self.snapshot()})"


@dataclass
class _Key:
    tag: str
    convergent: bool
    material: list[bytes] = field(default_factory=list)  # index = version - 1
    aeads: list[AESGCM] = field(default_factory=list)
    disabled: set[int] = field(default_factory=set)
    rotated_ms: list[int] = field(default_factory=list)
    status: str = "ENABLED"  # ENABLED, DISABLED or REVOKED (v3 names; 2.0 drops the trailing D)

    @property
    def current(self) -> int:
        return len(self.material)


@dataclass
class _Fault:
    kind: str
    remaining: int
    action: str | None
    params: dict[str, Any]
    key_tag: str | None = None


@dataclass(frozen=True)
class _Secret:
    secret_key: str
    api_key: str | None

    def __repr__(self) -> str:
        return "_Secret(…)"


@dataclass(frozen=True)
class _Route:
    """A request's target: API generation, key, action (as counted in stats and matched by faults)."""

    api: str  # "1.0", "2.0" or "v3"
    tag: str
    action: str
    auth: str  # "v1", "v2", "token" or "v2|token"
    batch: bool = False
    version: str | None = None  # v3 versions/{version}
    segment: str | None = None  # the crypto path segment as requested


@dataclass
class _Reply:
    """A successful crypto reply before post-processing faults rewrite it."""

    key: _Key
    context: bytes | None
    item_field: str  # the data field holding the items
    items: list[str]
    as_list: bool
    plaintexts: list[bytes]  # what each item holds (for "corrupt")
    input_versions: list[int]  # per item (for "lower-version")
    tokens: bool  # items are tokens (False: base64 plaintexts)
    extra: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.as_list:
            out[self.item_field] = self.items
        elif self.items:  # a "short-reply" fault empties a single-string reply
            out[self.item_field] = self.items[0]
        out.update(self.extra)
        return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64_decode(value: str) -> bytes | None:
    if not _B64_RE.fullmatch(value):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


class KmsEmulator:
    """An in-process NCP KMS: key state, crypto, fault injection and the HTTP server around them."""

    def __init__(self, seed: int | None = None, region: str = "global") -> None:
        self._rng: random.Random = random.Random(seed) if seed is not None else random.SystemRandom()
        self._lock = threading.RLock()
        self._keys: dict[str, _Key] = {}
        self._credentials: dict[str, _Secret] = {}
        self._tokens: dict[str, tuple[str, float | None]] = {}  # ocapi token -> (key tag, exp)
        self.reset_switches()
        self._region = "global"
        self.region = region
        self._faults: list[_Fault] = []
        self._latency: tuple[float, float] | None = None
        self._stats = EmulatorStats()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def reset_switches(self) -> None:
        """Back to accepting every documented reading (see the module docstring)."""
        self.re_encrypt_spelling: str | None = None
        self.v3_re_encrypt_field = "newCiphertext"
        self.arrays_2_0 = True
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
            server = _Server((host, port), _Handler, self)
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
        if not access_key or not secret_key:
            raise ValueError("access key and secret key must not be empty")
        with self._lock:
            self._credentials[access_key] = _Secret(secret_key, api_key)

    def remove_credentials(self, access_key: str) -> None:
        with self._lock:
            self._credentials.pop(access_key, None)

    def issue_token(self, tag: str, expires_in: float | None = None) -> str:
        """An ``x-ncp-ocapi-token`` for the crypto calls of one key (2.0 and v3 token auth): a JWT-shaped
        access token, with an ``exp`` claim ``expires_in`` seconds from now when given."""
        key = self._key(tag)
        exp = int(self.now() + expires_in) if expires_in is not None else None
        claims = {"sub": key.tag, **({"exp": exp} if exp is not None else {})}
        token = ".".join(
            base64.urlsafe_b64encode(part).decode().rstrip("=")
            for part in (
                json.dumps({"alg": "HS256", "typ": "JWT"}).encode(),
                json.dumps(claims).encode(),
                self._rng.randbytes(32),
            )
        )
        with self._lock:
            self._tokens[token] = (key.tag, exp)
        return token

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    # --- region --------------------------------------------------------------------------------------
    @property
    def region(self) -> str:
        """The region whose host this emulator stands for: ``global``, ``kr`` or ``jpn``."""
        return self._region

    @region.setter
    def region(self, region: str) -> None:
        if region not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}")
        self._region = region

    def _check_region(self, tag: str) -> None:
        region = key_region(tag)
        if region is not None and region != self._region:
            raise EmulatorError(
                f"key {tag[:12]}... is isolated to region {region}; this host serves {self._region}",
                code=WRONG_REGION_CODE,
            )

    # --- keys ----------------------------------------------------------------------------------------
    def create_key(self, tag: str | None = None, convergent: bool = False, region: str | None = None) -> str:
        """A new key at version 1; ``region`` (``kr``/``jpn``) makes a region-isolated tag like NCP's."""
        with self._lock:
            if region is not None and region not in REGIONS:
                raise ValueError(f"region must be one of {', '.join(REGIONS)}")
            if tag is None:
                prefix = f"{region}-" if region in REGION_HOSTS else ""
                tag = f"{prefix}{self._rng.getrandbits(256):064x}"
            elif not _KEY_TAG_RE.fullmatch(tag):
                raise ValueError("a key tag is 1-128 characters of [A-Za-z0-9_-]")
            if tag in self._keys:
                raise ValueError(f"key {tag} already exists")
            key = _Key(tag, convergent)
            self._add_version(key)
            self._keys[tag] = key
            return tag

    def _add_version(self, key: _Key) -> int:
        material = self._rng.randbytes(32)
        key.material.append(material)
        key.aeads.append(AESGCM(material))
        key.rotated_ms.append(int(time.time() * 1000))
        return key.current

    def _key(self, tag: str) -> _Key:
        with self._lock:
            key = self._keys.get(tag)
        if key is None:
            raise _not_found()
        return key

    def rotate(self, tag: str) -> int:
        key = self._key(tag)
        with self._lock:
            return self._add_version(key)

    def current_version(self, tag: str) -> int:
        key = self._key(tag)
        with self._lock:
            return key.current

    def is_convergent(self, tag: str) -> bool:
        return self._key(tag).convergent

    def set_key_state(self, tag: str, state: str) -> None:
        """``ENABLED``, ``DISABLED`` or ``REVOKED`` (deletion requested)."""
        if state not in ("ENABLED", "DISABLED", "REVOKED"):
            raise ValueError("state must be ENABLED, DISABLED or REVOKED")
        key = self._key(tag)
        with self._lock:
            key.status = state

    def disable_version(self, tag: str, version: int) -> None:
        key = self._key(tag)
        with self._lock:
            if not 1 <= version <= key.current:
                raise EmulatorError(f"key {tag} has no version {version}")
            if version == key.current:
                raise EmulatorError("the current version cannot be disabled")
            key.disabled.add(version)

    def enable_version(self, tag: str, version: int) -> None:
        key = self._key(tag)
        with self._lock:
            if not 1 <= version <= key.current:
                raise EmulatorError(f"key {tag} has no version {version}")
            key.disabled.discard(version)

    # --- crypto --------------------------------------------------------------------------------------
    def encrypt(self, tag: str, plaintext: bytes, context: bytes | None = None) -> str:
        """A token for ``plaintext`` at the key's current version."""
        return self._seal(self._key(tag), plaintext, context)

    def decrypt(self, tag: str, token: str, context: bytes | None = None) -> bytes:
        """The plaintext of ``token``; raises :class:`EmulatorError` when KMS would refuse."""
        return self._open(self._key(tag), token, context)[0]

    @staticmethod
    def _aad(key: _Key, context: bytes | None) -> bytes:
        return key.tag.encode() + b"|" + ((context or b"") if key.convergent else b"")

    @staticmethod
    def _check_context(key: _Key, context: bytes | None) -> None:
        if not key.convergent:
            return
        if not context:
            raise EmulatorError("context is required for a convergent key")
        if len(context) > MAX_CONTEXT_BYTES:
            raise EmulatorError("context is longer than 50 bytes")

    def _seal(self, key: _Key, plaintext: bytes, context: bytes | None) -> str:
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise EmulatorError("plaintext is larger than 32 KB")
        self._check_context(key, context)
        with self._lock:
            version, material, aead = key.current, key.material[-1], key.aeads[-1]
        if key.convergent:
            ctx = context or b""
            mac = hmac.new(material, bytes([len(ctx)]) + ctx + plaintext, hashlib.sha256)
            nonce = mac.digest()[:NONCE_BYTES]
        else:
            nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, plaintext, self._aad(key, context))
        return f"ncpkms:v{version}:{_b64(nonce + sealed)}"

    def _open(self, key: _Key, token: str, context: bytes | None) -> tuple[bytes, int]:
        if len(token) > MAX_TOKEN_CHARS:
            raise EmulatorError("ciphertext is longer than 43,746 characters")
        match = TOKEN_RE.fullmatch(token)
        if match is None:
            raise EmulatorError("ciphertext is not an ncpkms token")
        version = int(match.group(1))
        with self._lock:
            if version > key.current:
                raise EmulatorError("ciphertext names an unknown key version")
            if version in key.disabled:
                raise _invalid_status()
            aead = key.aeads[version - 1]
        self._check_context(key, context)
        raw = base64.b64decode(token[match.end(1) + 1 :])
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            raise EmulatorError("ciphertext is too short")
        try:
            plaintext = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(key, context))
        except InvalidTag:
            raise EmulatorError("decryption failed") from None
        return plaintext, version

    # --- behaviour knobs -----------------------------------------------------------------------------
    @property
    def stats(self) -> EmulatorStats:
        return self._stats

    def set_latency(self, min_s: float, max_s: float | None = None) -> None:
        """Delay every request by a uniform random time in [min_s, max_s] (0 switches it off)."""
        max_s = min_s if max_s is None else max_s
        if min_s < 0 or max_s < min_s:
            raise ValueError("need 0 <= min_s <= max_s")
        with self._lock:
            self._latency = (min_s, max_s) if max_s > 0 else None

    def inject(
        self, kind: str, times: int = 1, action: str | None = "re-encrypt", key_tag: str | None = None, **params: Any
    ) -> None:
        """Queue ``kind`` for the next ``times`` requests to ``action`` (None: any action), optionally
        only for requests on ``key_tag``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        unknown = set(params) - set(FAULT_KINDS[kind])
        if unknown:
            raise ValueError(f"fault {kind!r} takes no parameter(s) {sorted(unknown)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        if kind == "server-error":
            params.setdefault("status", 500)
            if params["status"] not in (500, 502, 503, 504):
                raise ValueError("server-error status must be 500, 502, 503 or 504")
        if kind == "timeout":
            params.setdefault("seconds", 10.0)
        if action is not None:
            action = _ACTION_ALIASES.get(action, action)
        with self._lock:
            self._faults.append(_Fault(kind, times, action, dict(params), key_tag))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[tuple[str, int, str | None]]:
        """(kind, remaining, action) of every queued fault."""
        with self._lock:
            return [(f.kind, f.remaining, f.action) for f in self._faults]

    def _take_fault(self, action: str, pre: bool, tag: str) -> _Fault | None:
        """Consume the first queued fault matching ``action`` and ``tag`` if it belongs to this phase."""
        with self._lock:
            for fault in self._faults:
                if fault.action is not None and fault.action != action:
                    continue
                if fault.key_tag is not None and fault.key_tag.lower() != tag.lower():
                    continue
                if (fault.kind in _PRE_FAULTS) != pre:
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                break
            else:
                return None
        self._stats._add("faults_injected", fault.kind)
        return fault

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _delay(self) -> None:
        with self._lock:
            latency = self._latency
        if latency is not None:
            self._sleep(self._rng.uniform(*latency) if latency[1] > latency[0] else latency[0])

    # --- request authentication ----------------------------------------------------------------------
    def _authenticate(self, method: str, uri: str, headers: Any, route: _Route) -> bool:
        token = headers.get(OCAPI_AUTH_HEADER)
        if "token" in route.auth and (token is not None or route.auth == "token"):
            with self._lock:
                owner, exp = self._tokens.get(token or "", ("", None))
            if exp is not None and self.now() >= exp:
                return False
            return bool(owner) and owner.lower() == route.tag.lower()
        return self._signature_valid(method, uri, headers, "v1" if route.auth == "v1" else "v2")

    def _signature_valid(self, method: str, uri: str, headers: Any, version: str) -> bool:
        access_key = headers.get(ACCESS_KEY_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADERS[version])
        if not access_key or not timestamp or not signature:
            return False
        with self._lock:
            secret = self._credentials.get(access_key)
        if secret is None:
            return False
        try:
            timestamp_ms = int(timestamp)
        except ValueError:
            return False
        if abs(self.now() * 1000 - timestamp_ms) >= CLOCK_SKEW_MS:
            return False
        api_key = None
        if version == "v1":
            api_key = headers.get(API_KEY_HEADER)
            if not api_key or secret.api_key is None or not hmac.compare_digest(api_key, secret.api_key):
                return False
        expected = sign(secret.secret_key, string_to_sign(method, uri, timestamp_ms, access_key, api_key))
        return hmac.compare_digest(expected.encode(), signature.encode())

    # --- KMS API 1.0 actions -------------------------------------------------------------------------
    @staticmethod
    def _items(body: dict[str, Any], name: str) -> tuple[list[str], bool]:
        value = body.get(name)
        if isinstance(value, str):
            return [value], False
        if isinstance(value, list):
            if not value:
                raise EmulatorError(f"{name} must not be an empty array")
            if not all(isinstance(item, str) for item in value):
                raise EmulatorError(f"{name} must be an array of strings")
            if sum(len(item) for item in value) > MAX_LIST_CHARS:
                raise EmulatorError(f"{name} items exceed 32 KB in total")
            return value, True
        raise EmulatorError(f"{name} is required (a string or an array of strings)")

    @staticmethod
    def _context(key: _Key, body: dict[str, Any]) -> bytes | None:
        raw = body.get("context")
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise EmulatorError("context must be a base64 string")
        if not key.convergent or raw == "":
            return None  # ignored by non-convergent keys
        decoded = _b64_decode(raw)
        if decoded is None:
            raise EmulatorError("context is not base64")
        return decoded

    def _do_encrypt(self, key: _Key, body: dict[str, Any]) -> _Reply:
        items, as_list = self._items(body, "plaintext")
        context = self._context(key, body)
        plaintexts = []
        for item in items:
            decoded = _b64_decode(item)
            if decoded is None:
                raise EmulatorError("plaintext is not base64")
            if len(decoded) > MAX_PLAINTEXT_BYTES:
                raise EmulatorError("plaintext is larger than 32 KB")
            plaintexts.append(decoded)
        tokens = [self._seal(key, p, context) for p in plaintexts]
        current = token_version(tokens[0])
        return _Reply(key, context, "ciphertext", tokens, as_list, plaintexts, [current] * len(items), True)

    def _open_all(
        self, key: _Key, body: dict[str, Any]
    ) -> tuple[list[str], bool, bytes | None, list[tuple[bytes, int]]]:
        items, as_list = self._items(body, "ciphertext")
        context = self._context(key, body)
        opened = [self._open(key, item, context) for item in items]
        return items, as_list, context, opened

    def _do_decrypt(self, key: _Key, body: dict[str, Any]) -> _Reply:
        _, as_list, context, opened = self._open_all(key, body)
        plaintexts = [p for p, _ in opened]
        versions = [v for _, v in opened]
        return _Reply(key, context, "plaintext", [_b64(p) for p in plaintexts], as_list, plaintexts, versions, False)

    def _do_reencrypt(self, key: _Key, body: dict[str, Any]) -> _Reply:
        _, as_list, context, opened = self._open_all(key, body)
        plaintexts = [p for p, _ in opened]
        versions = [v for _, v in opened]
        tokens = [self._seal(key, p, context) for p in plaintexts]
        return _Reply(key, context, "newCiphertext", tokens, as_list, plaintexts, versions, True)

    def _do_create_custom_key(self, key: _Key, body: dict[str, Any]) -> _Reply:
        request_plain = body.get("requestPlainKey", False)
        bits = body.get("bits", 256)
        if not isinstance(request_plain, bool):
            raise EmulatorError("requestPlainKey must be a boolean")
        if isinstance(bits, bool) or not isinstance(bits, int) or bits not in (128, 256, 512):
            raise EmulatorError("bits must be 128, 256 or 512")
        context = self._context(key, body)
        data_key = os.urandom(bits // 8)
        token = self._seal(key, data_key, context)
        version = token_version(token)
        extra: dict[str, Any] = {"key_version": version}
        if request_plain:
            extra["plaintext"] = _b64(data_key)
        return _Reply(key, context, "ciphertext", [token], False, [data_key], [version], True, extra)

    def _apply_post_fault(self, fault: _Fault, reply: _Reply) -> None:
        items = reply.items
        if fault.kind == "short-reply":
            items.pop()
        elif fault.kind == "extra-item":
            items.append(items[-1])
            reply.as_list = True
        elif fault.kind == "bad-pattern":
            items[0] = BAD_PATTERN_ITEM
        elif fault.kind == "lower-version" and reply.tokens:
            lower = max(1, reply.input_versions[0] - 1)
            items[0] = f"ncpkms:v{lower}:" + items[0].split(":", 2)[2]
        elif fault.kind == "corrupt":
            other = bytes(b ^ 0xA5 for b in reply.plaintexts[0]) or b"\x00"
            items[0] = self._seal(reply.key, other, reply.context) if reply.tokens else _b64(other)

    # --- one HTTP request ----------------------------------------------------------------------------
    def _handle(self, handler: _Handler, method: str, body: bytes) -> None:
        uri = handler.path  # exactly as received, query included: that is what was signed
        route = self._route(method, urlsplit(uri).path)
        strict = self.re_encrypt_spelling
        if route is not None and strict and route.segment in _RE_ENCRYPT_SPELLINGS and route.segment != strict:
            route = None  # strict: only one spelling lives here
        if route is None:
            handler.reply_json(404, _NOT_FOUND)
            return
        self._stats._add("requests", route.action)
        if not self._authenticate(method, uri, handler.headers, route):
            self._stats._auth_failure()
            handler.reply_json(401, _AUTH_FAILED)
            return
        self._delay()
        fault = self._take_fault(route.action, pre=True, tag=route.tag)
        if fault is not None and self._pre_fault(handler, fault):
            return
        try:
            self._check_region(route.tag)
            key = self._key(route.tag)
            if route.action in _CRYPTO_ACTIONS:
                status, payload = self._crypto(route, key, body)
            else:
                status, payload = self._admin(route, key, body)
            handler.reply_json(status, payload)
        except EmulatorError as err:
            handler.reply_json(*self._error_reply(route.api, err))

    @staticmethod
    def _route(method: str, path: str) -> _Route | None:
        """What lives at ``path`` for ``method``; None when nothing does."""
        if match := _LEGACY_ROUTE.fullmatch(path):
            signature, tag, segment = match.groups()
            found = _CRYPTO_SEGMENTS["1.0"].get(segment)
            return _Route("1.0", tag, found[0], signature, segment=segment) if found and method == "POST" else None
        if match := _V2_ROUTE.fullmatch(path):
            tag, segment = match.groups()
            admin = {(None, "GET"): "key-info", ("versions", "GET"): "versions", ("rotate", "POST"): "rotate"}
            if (segment, method) in admin:
                return _Route("2.0", tag, admin[(segment, method)], "v2")
            found = _CRYPTO_SEGMENTS["2.0"].get(segment or "")
            return _Route("2.0", tag, found[0], "v2|token", segment=segment) if found and method == "POST" else None
        if match := _V3_ROUTE.fullmatch(path):
            token, tag, segment, version = match.groups()
            if not token and segment == "versions" and version is not None and method in ("GET", "PATCH"):
                return _Route("v3", tag, "version" if method == "GET" else "update-version", "v2", version=version)
            if version is not None:
                return None
            if not token and (segment, method) in ((None, "GET"), ("versions", "POST")):
                return _Route("v3", tag, "key-info" if segment is None else "rotate", "v2")
            found = _CRYPTO_SEGMENTS["v3"].get(segment or "")
            if found is None or method != "POST":
                return None
            return _Route("v3", tag, found[0], "token" if token else "v2", batch=found[1])
        return None

    @staticmethod
    def _error_reply(api: str, err: EmulatorError) -> tuple[int, dict[str, Any]]:
        if api == "v3":
            status, error = err.v3()
            return status, {"error": error}
        if err.status == 404:
            return 404, _NOT_FOUND
        return err.status, {"code": err.code, "msg": str(err), "data": None}

    def _pre_fault(self, handler: _Handler, fault: _Fault) -> bool:
        """Act out a fault that hits before the request is processed; False: carry on normally."""
        if fault.kind == "throttle":
            retry_after = fault.params.get("retry_after")
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            handler.reply_json(429, _RATE_LIMITED, headers)
        elif fault.kind == "server-error":
            handler.reply_json(int(fault.params["status"]), _UNEXPECTED)
        elif fault.kind == "timeout":
            self._sleep(float(fault.params["seconds"]))
            return False
        elif fault.kind == "reset":
            handler.reset()
        elif fault.kind == "non-json":
            handler.reply(200, _NON_JSON_BODY, "text/html; charset=utf-8")
        return True

    # --- crypto over HTTP ------------------------------------------------------------------------------
    def _crypto(self, route: _Route, key: _Key, raw: bytes) -> tuple[int, dict[str, Any]]:
        v3_default_key = route.api == "v3" and route.action == "createCustomKey" and not raw.strip()
        body = {} if v3_default_key else _json_object(raw)  # v3 issue-custom-key may omit its body
        if key.status != "ENABLED":
            raise _key_not_enabled(key)
        if route.api == "2.0" and not self.arrays_2_0:
            name = "plaintext" if route.action == "encrypt" else "ciphertext"
            if isinstance(body.get(name), list):
                raise EmulatorError(f"Invalid type: {name} must be a String")
        if route.batch:
            return self._batch(route, key, body)
        if route.api == "v3":  # single-item endpoints take one string
            name = "plaintext" if route.action == "encrypt" else "ciphertext"
            if route.action != "createCustomKey" and not isinstance(body.get(name), str):
                raise EmulatorError(f"{name} must be a string", field=name)
        reply = self._crypto_reply(key, route.action, body)
        post = self._take_fault(route.action, pre=False, tag=route.tag)
        if post is not None:
            self._apply_post_fault(post, reply)
        self._stats._add("items", route.action, len(reply.plaintexts))
        if route.api == "1.0":
            return 200, {"code": "SUCCESS", "msg": "", "data": reply.data()}
        if route.api == "2.0":
            return 200, {"code": "SUCCESS", "data": reply.data()}
        data = reply.data()
        if "key_version" in data:
            data["keyVersion"] = data.pop("key_version")
        if route.action == "re-encrypt" and "newCiphertext" in data:
            data[self.v3_re_encrypt_field] = data.pop("newCiphertext")
        return 200, data

    def _crypto_reply(self, key: _Key, action: str, body: dict[str, Any]) -> _Reply:
        if action == "encrypt":
            return self._do_encrypt(key, body)
        if action == "decrypt":
            return self._do_decrypt(key, body)
        if action == "re-encrypt":
            return self._do_reencrypt(key, body)
        return self._do_create_custom_key(key, body)

    def _batch(self, route: _Route, key: _Key, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A v3 batch: all items succeed together, or only the failed items are reported."""
        requests = body.get("requests")
        if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_BATCH_ITEMS:
            raise EmulatorError(f"requests must hold 1 to {MAX_BATCH_ITEMS} items", field="requests")
        name = "plaintext" if route.action == "encrypt" else "ciphertext"
        for index, item in enumerate(requests):
            if not isinstance(item, dict) or not isinstance(item.get(name), str):
                raise EmulatorError(f"{name} must be a string", field=f"requests[{index}].{name}")
            if not isinstance(item.get("context", ""), str):
                raise EmulatorError("context must be a string", field=f"requests[{index}].context")
        values = [item[name] for item in requests]
        failures = {i: error for i, value in enumerate(values) if (error := _format_error(name, value)) is not None}
        if failures:
            return _failure_reply(failures)
        outcomes: list[tuple[str, bytes, int]] = []
        contexts: list[bytes | None] = []
        for index, item in enumerate(requests):
            try:
                context = self._context(key, item)
                outcomes.append(self._batch_item(key, route.action, item[name], context))
                contexts.append(context)
            except EmulatorError as err:
                failures[index] = err
        if failures:
            return _failure_reply(failures)
        field = {"encrypt": "ciphertext", "decrypt": "plaintext", "re-encrypt": self.v3_re_encrypt_field}[route.action]
        items, plaintexts, versions = (list(column) for column in zip(*outcomes, strict=True))
        reply = _Reply(key, contexts[0], field, items, True, plaintexts, versions, route.action != "decrypt")
        post = self._take_fault(route.action, pre=False, tag=route.tag)
        if post is not None:
            self._apply_post_fault(post, reply)
        self._stats._add("items", route.action, len(reply.plaintexts))
        return 200, {"results": {str(i): {field: item} for i, item in enumerate(reply.items)}}

    def _batch_item(self, key: _Key, action: str, value: str, context: bytes | None) -> tuple[str, bytes, int]:
        """(result item, plaintext, version of the input) for one batch item."""
        if action == "encrypt":
            plaintext = base64.b64decode(value)
            token = self._seal(key, plaintext, context)
            return token, plaintext, token_version(token)
        plaintext, version = self._open(key, value, context)
        if action == "decrypt":
            return _b64(plaintext), plaintext, version
        return self._seal(key, plaintext, context), plaintext, version

    # --- key administration over HTTP -------------------------------------------------------------------
    def _admin(self, route: _Route, key: _Key, raw: bytes) -> tuple[int, dict[str, Any]]:
        if route.api == "2.0":
            data = self._admin_v2(key, route.action)
            self._stats._add("items", route.action)
            return 200, {"code": "SUCCESS", "data": data}
        status, data = self._admin_v3(key, route, raw)
        self._stats._add("items", route.action)
        return status, data

    def _admin_v2(self, key: _Key, action: str) -> dict[str, Any]:
        with self._lock:
            if action == "rotate":
                version = self._add_version(key)
                return {"keyTag": key.tag, "version": version, "rotatedDate": key.rotated_ms[-1]}
            if action == "versions":
                return {
                    "keyTag": key.tag,
                    "currentVersion": key.current,
                    "versionList": [
                        {
                            "version": v,
                            "status": "DISABLE" if v in key.disabled else "ENABLE",
                            "rotatedDate": key.rotated_ms[v - 1],
                        }
                        for v in range(1, key.current + 1)
                    ],
                }
            return {
                "keyTag": key.tag,
                "currentVersion": key.current,
                "isConvergent": key.convergent,
                "keyType": "AES256",
                "status": key.status.removesuffix("D"),
                "baseUrl": f"https://{REGION_HOSTS.get(key_region(key.tag) or '', 'ocapi.ncloud.com')}",
            }

    def _admin_v3(self, key: _Key, route: _Route, raw: bytes) -> tuple[int, dict[str, Any]]:
        if route.action == "key-info":
            with self._lock:
                return 200, {
                    "keyTag": key.tag,
                    "keyType": "AES256",
                    "status": key.status,
                    "currentVersion": key.current,
                    "isConvergent": key.convergent,
                }
        if route.action == "rotate":
            with self._lock:
                return 201, {"version": self._add_version(key), "status": "ENABLED"}
        if route.version is None or not _V3_VERSION.fullmatch(route.version):
            raise EmulatorError("version must be a decimal number", field="version")
        version = int(route.version)
        if route.action == "update-version":
            status = _json_object(raw).get("status")
            if status == "DISABLED":
                self.disable_version(key.tag, version)
            elif status == "ENABLED":
                self.enable_version(key.tag, version)
            elif status is not None:
                raise EmulatorError("status must be ENABLED or DISABLED", field="status")
        with self._lock:
            if not 1 <= version <= key.current:
                raise _not_found()
            return 200, {"version": version, "status": "DISABLED" if version in key.disabled else "ENABLED"}


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise EmulatorError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise EmulatorError("request body must be a JSON object")
    return body


def _format_error(name: str, value: str) -> EmulatorError | None:
    """Phase one of a v3 batch: empty values and formats."""
    if not value:
        return EmulatorError(f"{name} must not be empty")
    if name == "plaintext":
        decoded = _b64_decode(value)
        if decoded is None:
            return EmulatorError("plaintext is not base64")
        return EmulatorError("plaintext is larger than 32 KB") if len(decoded) > MAX_PLAINTEXT_BYTES else None
    if len(value) > MAX_TOKEN_CHARS or TOKEN_RE.fullmatch(value) is None:
        return EmulatorError("ciphertext is not an ncpkms token")
    return None


def _failure_reply(failures: dict[int, EmulatorError]) -> tuple[int, dict[str, Any]]:
    """A v3 batch failure: the status of the single cause, 400 when the causes differ."""
    rendered = {index: err.v3() for index, err in sorted(failures.items())}
    codes = {error["errorCode"] for _, error in rendered.values()}
    status = next(iter(rendered.values()))[0] if len(codes) == 1 else 400
    return status, {"failures": {str(index): error for index, (_, error) in rendered.items()}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[_Handler], emulator: KmsEmulator) -> None:
        self.emulator = emulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        self.emulator.stats._connection()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        """Hang up idle keep-alive connections so a stopped emulator really stops answering."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-reply are expected; never print request data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "ncp-kms-emulator"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are dropped after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines and headers are never logged

    def date_time_string(self, timestamp: float | None = None) -> str:
        return super().date_time_string(self.server.emulator.now() if timestamp is None else timestamp)

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        try:
            self.server.emulator._handle(self, self.command, body)
        except Exception:  # noqa: BLE001 (a bug must not kill the connection silently)
            if not self._replied:
                self.reply_json(500, _UNEXPECTED)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    _replied = False

    def _read_body(self) -> bytes | None:
        self._replied = False
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.reply_json(400, {"error": {"errorCode": "100", "message": "Bad Request Exception"}}, close=True)
            return None
        if length > MAX_BODY_BYTES:
            self.reply_json(413, _TOO_LARGE, close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.reply_json(400, {"error": {"errorCode": "100", "message": "Bad Request Exception"}}, close=True)
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                self.reply_json(413, _TOO_LARGE, close=True)
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self._replied = True
        self.server.emulator.stats._status(status)
        try:
            self.send_response(status)
            self.send_header("x-ncp-request-id", str(uuid.uuid4()))
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client is gone (e.g. its read timeout fired)

    def reply_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None, close: bool = False
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.reply(status, body, "application/json;charset=UTF-8", headers, close)

    def reset(self) -> None:
        """Abort the connection with a TCP reset and no response."""
        self._replied = True
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


# --- command line ----------------------------------------------------------------------------------
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


if __name__ == "__main__":
    sys.exit(main())
