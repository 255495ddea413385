"""Keys: versions, states, regions and the AES-256-GCM crypto behind the ``ncpkms:v{version}:`` tokens.

One 32-byte key per version. Token = ``ncpkms:v{version}:`` + padded base64 of (12-byte nonce + ciphertext +
tag); the AAD binds the key tag (and, for convergent keys, the context), so a token opens only under its
own key. Convergent keys derive the nonce from HMAC-SHA256(version key, len(context) || context ||
plaintext) and require a context; other keys ignore ``context`` (as the v3 docs say).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rewrap.core.tokens import MAX_TOKEN_CHARS, TOKEN_RE
from rewrap.ncp.generations import MAX_CONTEXT_BYTES, MAX_PLAINTEXT_BYTES
from rewrap.ncp.management import HISTORY_RECORDS, Activity
from rewrap.ncp.regions import REGION_HOSTS, WRONG_REGION_CODE, key_region

from .errors import EmulatorError, invalid_status, key_not_enabled, not_found

REGIONS = ("global", *REGION_HOSTS)
KEY_STATES = ("ENABLED", "DISABLED", "REVOKED")  # v3 names; 2.0 drops the trailing D
# The emulator's token layout: AES-GCM's 12-byte nonce and 16-byte tag around the ciphertext (NCP's
# documented 32,796-byte body limit is 32,768 + 28).
NONCE_BYTES = 12
TAG_BYTES = 16
_B64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)")
_KEY_TAG_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what create_key takes (NCP makes 64-68 character tags)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64_decode(value: str) -> bytes | None:
    """Padded standard base64 as NCP takes it, or None."""
    if not _B64_RE.fullmatch(value):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def check_region_name(region: str | None) -> None:
    if region is not None and region not in REGIONS:
        raise ValueError(f"region must be one of {', '.join(REGIONS)}")


def check_region(tag: str, served: str) -> None:
    """Refuse a region-isolated key on the host of another region (400 REGION_MISMATCH)."""
    region = key_region(tag)
    if region is not None and region != served:
        raise EmulatorError(
            f"key {tag[:12]}... is isolated to region {region}; this host serves {served}",
            code=WRONG_REGION_CODE,
        )


@dataclass
class Key:
    tag: str
    convergent: bool
    material: list[bytes] = field(default_factory=list)  # index = version - 1
    aeads: list[AESGCM] = field(default_factory=list)
    disabled: set[int] = field(default_factory=set)
    rotated_ms: list[int] = field(default_factory=list)
    status_ms: dict[int, int] = field(default_factory=dict)  # version -> when its state last changed
    status: str = "ENABLED"  # one of KEY_STATES
    # the key's activity history, oldest first; NCP keeps the latest 30,000 entries (and 30 days)
    history: deque[Activity] = field(default_factory=lambda: deque(maxlen=HISTORY_RECORDS))

    @property
    def current(self) -> int:
        return len(self.material)


class KeyStore:
    """Every key of the emulator, its versions and states. Thread-safe (``lock`` guards the keys)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.lock = threading.RLock()
        self._keys: dict[str, Key] = {}

    # --- keys and versions ---------------------------------------------------------------------------
    def create(self, tag: str | None, convergent: bool, region: str | None) -> str:
        with self.lock:
            check_region_name(region)
            if tag is None:
                prefix = f"{region}-" if region in REGION_HOSTS else ""
                tag = f"{prefix}{self._rng.getrandbits(256):064x}"
            elif not _KEY_TAG_RE.fullmatch(tag):
                raise ValueError("a key tag is 1-128 characters of [A-Za-z0-9_-]")
            if tag in self._keys:
                raise ValueError(f"key {tag} already exists")
            key = Key(tag, convergent)
            self.add_version(key)
            self._keys[tag] = key
            return tag

    def get(self, tag: str) -> Key:
        with self.lock:
            key = self._keys.get(tag)
        if key is None:
            raise not_found()
        return key

    def add_version(self, key: Key) -> int:
        with self.lock:
            material = self._rng.randbytes(32)
            key.material.append(material)
            key.aeads.append(AESGCM(material))
            key.rotated_ms.append(int(time.time() * 1000))
            key.status_ms[key.current] = key.rotated_ms[-1]
            return key.current

    def set_state(self, tag: str, state: str) -> None:
        if state not in KEY_STATES:
            raise ValueError("state must be ENABLED, DISABLED or REVOKED")
        key = self.get(tag)
        with self.lock:
            key.status = state

    def disable_version(self, tag: str, version: int) -> None:
        self.set_version(tag, version, enable=False)

    def enable_version(self, tag: str, version: int) -> None:
        self.set_version(tag, version, enable=True)

    def set_version(self, tag: str, version: int, *, enable: bool, refuse_unchanged: bool = False) -> bool:
        """Enable or disable one version under NCP's rules; whether it is enabled afterwards. A key not
        enabled changes no version (2.0 docs), the current version cannot be disabled (v3 docs), and
        with ``refuse_unchanged`` a version already in the asked state is refused."""
        key = self.get(tag)
        with self.lock:
            self._check_version(key, version)
            if key.status != "ENABLED":
                raise key_not_enabled()
            if not enable and version == key.current:
                raise EmulatorError("the current version cannot be disabled")
            if refuse_unchanged and (version in key.disabled) != enable:
                state = "enabled" if enable else "disabled"
                raise EmulatorError(f"version {version} is already {state}")
            if (version in key.disabled) == enable:
                (key.disabled.discard if enable else key.disabled.add)(version)
                key.status_ms[version] = int(time.time() * 1000)
            return version not in key.disabled

    @staticmethod
    def _check_version(key: Key, version: int) -> None:
        if not 1 <= version <= key.current:
            raise not_found()

    def record(self, tag: str, activity: Activity) -> None:
        """Add an entry to the key's activity history (a key that does not exist has none)."""
        with self.lock:
            key = self._keys.get(tag)
            if key is not None:
                key.history.append(activity)

    def history(self, key: Key, since_ms: int, until_ms: int, visible_before_ms: int) -> list[Activity]:
        """The key's entries within [since, until], newest first, as far as they have arrived."""
        with self.lock:
            entries = list(key.history)
        return [
            entry
            for entry in reversed(entries)
            if since_ms <= entry.time_ms <= until_ms and entry.time_ms <= visible_before_ms
        ]

    # --- crypto --------------------------------------------------------------------------------------
    def seal(self, key: Key, plaintext: bytes, context: bytes | None) -> str:
        """A token for ``plaintext`` at the key's current version."""
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise EmulatorError(f"plaintext is larger than {MAX_PLAINTEXT_BYTES // 1024} KB")
        _check_context(key, context)
        with self.lock:
            version, material, aead = key.current, key.material[-1], key.aeads[-1]
        if key.convergent:
            ctx = context or b""
            mac = hmac.new(material, bytes([len(ctx)]) + ctx + plaintext, hashlib.sha256)
            nonce = mac.digest()[:NONCE_BYTES]
        else:
            nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, plaintext, _aad(key, context))
        return f"ncpkms:v{version}:{b64(nonce + sealed)}"

    def open(self, key: Key, token: str, context: bytes | None) -> tuple[bytes, int]:
        """The plaintext of ``token`` and the version that sealed it; EmulatorError when KMS would refuse."""
        if len(token) > MAX_TOKEN_CHARS:
            raise EmulatorError(f"ciphertext is longer than {MAX_TOKEN_CHARS:,} characters")
        match = TOKEN_RE.fullmatch(token)
        if match is None:
            raise EmulatorError("ciphertext is not an ncpkms token")
        version = int(match.group(1))
        with self.lock:
            if version > key.current:
                raise EmulatorError("ciphertext names an unknown key version")
            if version in key.disabled:
                raise invalid_status()
            aead = key.aeads[version - 1]
        _check_context(key, context)
        raw = base64.b64decode(token[match.end(1) + 1 :])
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            raise EmulatorError("ciphertext is too short")
        try:
            plaintext = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(key, context))
        except InvalidTag:
            raise EmulatorError("decryption failed") from None
        return plaintext, version


def _aad(key: Key, context: bytes | None) -> bytes:
    return key.tag.encode() + b"|" + ((context or b"") if key.convergent else b"")


def _check_context(key: Key, context: bytes | None) -> None:
    if not key.convergent:
        return
    if not context:
        raise EmulatorError("context is required for a convergent key")
    if len(context) > MAX_CONTEXT_BYTES:
        raise EmulatorError(f"context is longer than {MAX_CONTEXT_BYTES} bytes")
