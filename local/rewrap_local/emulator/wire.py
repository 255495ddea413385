"""What every API generation shares on the wire: reading items and contexts, the crypto of one request,
and the :class:`Wire` each generation's module specialises (``wire_1_0``, ``wire_2_0``, ``wire_v3``).

Field names come from the client's :class:`rewrap.ncp.generations.Operation` table, limits from
``rewrap.ncp.generations``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from rewrap.core.tokens import token_version
from rewrap.ncp.generations import (
    CUSTOM_KEY,
    DECRYPT,
    ENCRYPT,
    MAX_PLAINTEXT_BYTES,
    RE_ENCRYPT,
    Generation,
    Operation,
    no_limit,
)
from rewrap.ncp.management import HISTORY_DAYS, MANAGEMENT, MAX_PAGE_SIZE, Activity

from .errors import NOT_FOUND, EmulatorError, key_not_enabled, not_found
from .faults import FaultQueue, apply_after
from .keys import Key, KeyStore, b64, b64_decode
from .routes import Route, action_name
from .stats import EmulatorStats

# action (as routes name it) → the operation of the client's table
OPERATIONS: dict[str, Operation] = {action_name(op.name): op for op in (ENCRYPT, DECRYPT, RE_ENCRYPT, CUSTOM_KEY)}
CUSTOM_KEY_BITS = (128, 256, 512)  # documented for AES256 data keys (256 by default)
Answer = tuple[int, dict[str, Any]]  # HTTP status and JSON body
_DECIMAL_RE = re.compile(r"[1-9][0-9]{0,8}")  # a version or page as the paths take it ("0x1" is refused)
DAY_MS = 86_400_000


class Switches(Protocol):
    """The strict doc-discrepancy switches the wire formats read (kept on :class:`KmsEmulator`)."""

    arrays_2_0: bool
    v3_re_encrypt_field: str
    refuse_unchanged_version_2_0: bool
    activity_delay: float

    def now(self) -> float: ...


def path_version(route: Route) -> int:
    if route.version is None or not _DECIMAL_RE.fullmatch(route.version):
        raise EmulatorError("version must be a decimal number", field="version")
    return int(route.version)


def query_int(route: Route, name: str, default: int, low: int, high: int) -> int:
    raw = dict(route.query).get(name)
    if raw is None:
        return default
    if not (raw == "0" or _DECIMAL_RE.fullmatch(raw)) or not low <= int(raw) <= high:
        raise EmulatorError(f"{name} must be a decimal number from {low} to {high}", field=name)
    return int(raw)


def page_of(items: list[Any], route: Route, api: str, default_size: int) -> tuple[list[Any], int, int]:
    """(the page asked for, its number, its size), pages numbered from the generation's first page."""
    first = MANAGEMENT[api].first_page
    number = query_int(route, "pageNo", first, first, 2_147_483_646)
    size = query_int(route, "pageSize", default_size, 1, MAX_PAGE_SIZE)
    start = (number - first) * size
    return items[start : start + size], number, size


@dataclass
class Reply:
    """A successful crypto reply before post-processing faults rewrite it."""

    key: Key
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


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise EmulatorError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise EmulatorError("request body must be a JSON object")
    return body


def item_field(action: str) -> str:
    """The request field carrying the items of ``action`` (``plaintext`` to encrypt, else ``ciphertext``)."""
    return ENCRYPT.item_field if action == ENCRYPT.name else DECRYPT.item_field


def read_context(key: Key, body: dict[str, Any]) -> bytes | None:
    raw = body.get("context")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise EmulatorError("context must be a base64 string")
    if not key.convergent or raw == "":
        return None  # ignored by non-convergent keys
    decoded = b64_decode(raw)
    if decoded is None:
        raise EmulatorError("context is not base64")
    return decoded


def decode_plaintext(value: str) -> bytes:
    decoded = b64_decode(value)
    if decoded is None:
        raise EmulatorError("plaintext is not base64")
    if len(decoded) > MAX_PLAINTEXT_BYTES:
        raise EmulatorError(f"plaintext is larger than {MAX_PLAINTEXT_BYTES // 1024} KB")
    return decoded


class Wire:
    """How one API generation reads a crypto request and shapes its answer; 1.0's ways unless overridden."""

    generation: Generation

    def __init__(self, store: KeyStore, faults: FaultQueue, stats: EmulatorStats, switches: Switches) -> None:
        self.store = store
        self.faults = faults
        self.stats = stats
        self.switches = switches

    # --- answers -------------------------------------------------------------------------------------
    def success(self, data: dict[str, Any]) -> Answer:
        raise NotImplementedError

    def error(self, err: EmulatorError) -> Answer:
        """1.0 and 2.0: the gateway's 404, otherwise ``{"code", "msg", "data": null}``."""
        if err.status == 404:
            return 404, NOT_FOUND
        return err.status, {"code": err.code, "msg": str(err), "data": None}

    def reply_field(self, operation: Operation) -> str:
        return operation.reply_field

    def admin(self, route: Route, key: Key, raw: bytes) -> Answer:
        raise not_found()  # routes give a generation only the admin calls it has

    def activities(self, route: Route, key: Key) -> list[Activity]:
        """The entries a history request asks for: its period (the last day by default), newest first,
        only those that have arrived (``activity_delay``) and none older than NCP keeps."""
        now_ms = int(self.switches.now() * 1000)
        start, end = MANAGEMENT[self.generation.name].period
        since = self._moment(route, start, now_ms - DAY_MS)
        until = self._moment(route, end, now_ms)
        since = max(since, now_ms - HISTORY_DAYS * DAY_MS)
        return self.store.history(key, since, until, now_ms - int(self.switches.activity_delay * 1000))

    def _moment(self, route: Route, name: str, default: int) -> int:
        raw = dict(route.query).get(name)
        if raw is None:
            return default
        if MANAGEMENT[self.generation.name].period_in_ms:
            if not raw.isdigit():
                raise EmulatorError(f"{name} must be a Unix timestamp in milliseconds", field=name)
            return int(raw)
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise EmulatorError(f"{name} must be an ISO 8601 date and time", field=name) from None
        return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)

    # --- crypto --------------------------------------------------------------------------------------
    def crypto(self, route: Route, key: Key, raw: bytes) -> Answer:
        body = self.request_body(route, raw)
        if key.status != "ENABLED":
            raise key_not_enabled()
        return self.serve(route, key, body)

    def request_body(self, route: Route, raw: bytes) -> dict[str, Any]:
        return json_object(raw)

    def check_items(self, route: Route, body: dict[str, Any]) -> None:
        """Refuse item shapes this generation does not take (1.0: string or array, checked later)."""

    def serve(self, route: Route, key: Key, body: dict[str, Any]) -> Answer:
        self.check_items(route, body)
        reply = self.operate(key, route.action, body)
        self.finish(route, reply)
        return self.success(reply.data())

    def finish(self, route: Route, reply: Reply) -> None:
        """Let a queued post-processing fault rewrite the reply, and count its items."""
        post = self.faults.take(route.action, pre=False, tag=route.tag)
        if post is not None:
            apply_after(post, reply, self.store.seal)
        self.stats._add("items", route.action, len(reply.plaintexts))

    def operate(self, key: Key, action: str, body: dict[str, Any]) -> Reply:
        operation = OPERATIONS[action]
        if operation is ENCRYPT:
            return self._encrypt(key, body)
        if operation is CUSTOM_KEY:
            return self._custom_key(key, body)
        items, as_list = self._items(body, operation.item_field)
        context = read_context(key, body)
        opened = [self.store.open(key, item, context) for item in items]
        plaintexts = [plaintext for plaintext, _ in opened]
        versions = [version for _, version in opened]
        if operation is DECRYPT:
            texts = [b64(p) for p in plaintexts]
            return Reply(key, context, self.reply_field(DECRYPT), texts, as_list, plaintexts, versions, False)
        tokens = [self.store.seal(key, p, context) for p in plaintexts]
        return Reply(key, context, self.reply_field(RE_ENCRYPT), tokens, as_list, plaintexts, versions, True)

    def _items(self, body: dict[str, Any], name: str) -> tuple[list[str], bool]:
        """The items of a string or array request, and whether it was an array."""
        value = body.get(name)
        if isinstance(value, str):
            return [value], False
        if isinstance(value, list):
            limit = no_limit(self.generation.list_limit_bytes)
            if not value:
                raise EmulatorError(f"{name} must not be an empty array")
            if not all(isinstance(item, str) for item in value):
                raise EmulatorError(f"{name} must be an array of strings")
            if sum(len(item) for item in value) > limit:
                raise EmulatorError(f"{name} items exceed {limit // 1024} KB in total")
            return value, True
        raise EmulatorError(f"{name} is required (a string or an array of strings)")

    def _encrypt(self, key: Key, body: dict[str, Any]) -> Reply:
        items, as_list = self._items(body, ENCRYPT.item_field)
        context = read_context(key, body)
        plaintexts = [decode_plaintext(item) for item in items]
        tokens = [self.store.seal(key, p, context) for p in plaintexts]
        current = token_version(tokens[0])
        return Reply(key, context, self.reply_field(ENCRYPT), tokens, as_list, plaintexts, [current] * len(items), True)

    def _custom_key(self, key: Key, body: dict[str, Any]) -> Reply:
        request_plain = body.get("requestPlainKey", False)
        bits = body.get("bits", 256)
        if not isinstance(request_plain, bool):
            raise EmulatorError("requestPlainKey must be a boolean")
        if isinstance(bits, bool) or not isinstance(bits, int) or bits not in CUSTOM_KEY_BITS:
            raise EmulatorError("bits must be 128, 256 or 512")
        context = read_context(key, body)
        data_key = os.urandom(bits // 8)
        token = self.store.seal(key, data_key, context)
        version = token_version(token)
        extra: dict[str, Any] = {self.generation.custom_key_version_fields[0]: version}
        if request_plain:
            extra[DECRYPT.reply_field] = b64(data_key)
        return Reply(key, context, self.reply_field(CUSTOM_KEY), [token], False, [data_key], [version], True, extra)
