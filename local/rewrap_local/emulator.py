"""A local NAVER Cloud Platform KMS emulator: a real HTTP server on loopback.

It serves the part of NCP KMS that rewrap uses, with NCP's paths, API Gateway signatures (verified with
``rewrap.ncp.signing``, so client and emulator share one string-to-sign), envelopes and limits:

* KMS API 1.0: ``POST /keys/v2/{keyTag}/{action}`` (signature v2) and ``POST /keys/v1/{keyTag}/{action}``
  (signature v1, which adds the API key), action ``encrypt``, ``decrypt``, ``re-encrypt`` (alias
  ``reencrypt``) or ``createCustomKey``. Success: ``{"code": "SUCCESS", "msg": "", "data": {...}}``; a
  string request gets a string back, an array request an array.
* KMS API 2.0 admin (signature v2): ``POST /kms/v1/keys/{keyTag}/rotate``, ``GET /kms/v1/keys/{keyTag}``
  and ``GET /kms/v1/keys/{keyTag}/versions``; success ``{"code": "SUCCESS", "data": {...}}``.

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rewrap.ncp.signing import (
    ACCESS_KEY_HEADER,
    API_KEY_HEADER,
    SIGNATURE_HEADERS,
    TIMESTAMP_HEADER,
    sign,
    string_to_sign,
)
from rewrap.tokens import MAX_TOKEN_CHARS, TOKEN_RE, token_version

__all__ = ["FAULT_KINDS", "EmulatorError", "EmulatorStats", "KmsEmulator", "main"]

MAX_PLAINTEXT_BYTES = 32_768  # AES256 plaintext per item
MAX_LIST_CHARS = 32_768  # all items of an array request together
MAX_CONTEXT_BYTES = 50
MAX_BODY_BYTES = 16 * 1024 * 1024
CLOCK_SKEW_MS = 5 * 60 * 1000
NONCE_BYTES = 12
TAG_BYTES = 16

_B64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)")
_KEY_TAG_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_LEGACY_ROUTE = re.compile(r"/keys/(v1|v2)/([^/]+)/([^/]+)")
_ADMIN_ROUTE = re.compile(r"/kms/v1/keys/([^/]+)(?:/(rotate|versions))?")
_LEGACY_ACTIONS = {
    "encrypt": "encrypt",
    "decrypt": "decrypt",
    "re-encrypt": "re-encrypt",
    "reencrypt": "re-encrypt",
    "createCustomKey": "createCustomKey",
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

    def __init__(self, message: str, *, status: int = 400, code: str = "INVALID_REQUEST") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _invalid_status() -> EmulatorError:
    return EmulatorError("Invalid status", code="UNPROCESSABLE_ENTITY")


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

    def __init__(self, seed: int | None = None) -> None:
        self._rng: random.Random = random.Random(seed) if seed is not None else random.SystemRandom()
        self._lock = threading.RLock()
        self._keys: dict[str, _Key] = {}
        self._credentials: dict[str, _Secret] = {}
        self._faults: list[_Fault] = []
        self._latency: tuple[float, float] | None = None
        self._stats = EmulatorStats()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

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

    # --- keys ----------------------------------------------------------------------------------------
    def create_key(self, tag: str | None = None, convergent: bool = False) -> str:
        with self._lock:
            if tag is None:
                tag = f"{self._rng.getrandbits(256):064x}"
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
            action = _LEGACY_ACTIONS.get(action, action)
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
    def _authenticate(self, method: str, uri: str, headers: Any, version: str) -> bool:
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
        if abs(time.time() * 1000 - timestamp_ms) >= CLOCK_SKEW_MS:
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
        path = urlsplit(uri).path
        route = self._route(method, path)
        if route is None:
            handler.reply_json(404, _NOT_FOUND)
            return
        version, tag, action, legacy = route
        self._stats._add("requests", action)
        if not self._authenticate(method, uri, handler.headers, version):
            self._stats._auth_failure()
            handler.reply_json(401, _AUTH_FAILED)
            return
        self._delay()
        fault = self._take_fault(action, pre=True, tag=tag)
        if fault is not None and self._pre_fault(handler, fault):
            return
        try:
            key = self._key(tag)
            if legacy:
                reply = self._legacy_action(key, action, body)
                post = self._take_fault(action, pre=False, tag=tag)
                if post is not None:
                    self._apply_post_fault(post, reply)
                self._stats._add("items", action, len(reply.plaintexts))
                handler.reply_json(200, {"code": "SUCCESS", "msg": "", "data": reply.data()})
            else:
                data = self._admin_action(key, action)
                self._stats._add("items", action)
                handler.reply_json(200, {"code": "SUCCESS", "data": data})
        except EmulatorError as err:
            if err.status == 404:
                handler.reply_json(404, _NOT_FOUND)
            else:
                handler.reply_json(err.status, {"code": err.code, "msg": str(err), "data": None})

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str, str, bool] | None:
        """(signature version, key tag, action, is KMS API 1.0) or None when nothing lives there."""
        match = _LEGACY_ROUTE.fullmatch(path)
        if match is not None:
            action = _LEGACY_ACTIONS.get(match.group(3))
            if method != "POST" or action is None:
                return None
            return match.group(1), match.group(2), action, True
        match = _ADMIN_ROUTE.fullmatch(path)
        if match is not None:
            sub = match.group(2)
            if sub is None and method == "GET":
                return "v2", match.group(1), "key-info", False
            if sub == "versions" and method == "GET":
                return "v2", match.group(1), "versions", False
            if sub == "rotate" and method == "POST":
                return "v2", match.group(1), "rotate", False
        return None

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

    def _legacy_action(self, key: _Key, action: str, raw: bytes) -> _Reply:
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            raise EmulatorError("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise EmulatorError("request body must be a JSON object")
        if action == "encrypt":
            return self._do_encrypt(key, body)
        if action == "decrypt":
            return self._do_decrypt(key, body)
        if action == "re-encrypt":
            return self._do_reencrypt(key, body)
        return self._do_create_custom_key(key, body)

    def _admin_action(self, key: _Key, action: str) -> dict[str, Any]:
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
                "status": "ENABLE",
            }


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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    emulator = KmsEmulator(seed=args.seed)
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
