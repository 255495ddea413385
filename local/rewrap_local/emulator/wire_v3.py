"""KMS v3: ``POST /kms/v3/keys/{keyTag}/{action}`` (signature v2) or ``/kms/v3/token/keys/...`` (token).

Single-item endpoints take one string; ``batch-*`` take ``{"requests": [{item, context?}]}`` with up to
the generation's ``max_items``, atomic: results ``{"results": {"0": {...}}}``, or only the failed items in
``{"failures": {"<index>": {"errorCode", "message"}}}``, checked in two phases (empty/format first, then
the rest); the status of the single cause, 400 for several; a value of the wrong JSON type fails the whole
request with ``fieldErrors``. Admin: key info, rotation (``POST .../versions``), the versions list
(``GET .../versions``, pages from 0), one version (``GET|PATCH .../versions/{version}``; ``{}`` changes
nothing) and the activity history (``GET .../activities``, newest first, the last 24 hours unless a
period is given). Success bodies are bare; errors ``{"error": {"errorCode", "message"}}``.
``v3_re_encrypt_field`` names the re-encrypt result (single and batch).
"""

from __future__ import annotations

import base64
from typing import Any

from rewrap.core.tokens import MAX_TOKEN_CHARS, TOKEN_RE, token_version
from rewrap.ncp.generations import CUSTOM_KEY, ENCRYPT, GENERATIONS, RE_ENCRYPT, Operation, no_limit
from rewrap.ncp.management import activity_entry

from .errors import EmulatorError
from .keys import Key, b64
from .routes import Route
from .wire import (
    OPERATIONS,
    Answer,
    Reply,
    Wire,
    decode_plaintext,
    item_field,
    json_object,
    page_of,
    path_version,
    read_context,
)


class WireV3(Wire):
    generation = GENERATIONS["v3"]

    def success(self, data: dict[str, Any]) -> Answer:
        return 200, data

    def error(self, err: EmulatorError) -> Answer:
        status, error = err.v3()
        return status, {"error": error}

    def reply_field(self, operation: Operation) -> str:
        return self.switches.v3_re_encrypt_field if operation is RE_ENCRYPT else operation.reply_field

    def request_body(self, route: Route, raw: bytes) -> dict[str, Any]:
        if OPERATIONS[route.action] is CUSTOM_KEY and not raw.strip():
            return {}  # issue-custom-key may omit its body
        return json_object(raw)

    def check_items(self, route: Route, body: dict[str, Any]) -> None:
        name = item_field(route.action)  # single-item endpoints take one string
        if OPERATIONS[route.action] is not CUSTOM_KEY and not isinstance(body.get(name), str):
            raise EmulatorError(f"{name} must be a string", field=name)

    def serve(self, route: Route, key: Key, body: dict[str, Any]) -> Answer:
        return self._batch(route, key, body) if route.batch else super().serve(route, key, body)

    # --- batches -------------------------------------------------------------------------------------
    def _batch(self, route: Route, key: Key, body: dict[str, Any]) -> Answer:
        """All items succeed together, or only the failed items are reported."""
        name = item_field(route.action)
        requests = self._requests(body, name)
        values = [item[name] for item in requests]
        failures = {i: error for i, value in enumerate(values) if (error := _format_error(name, value)) is not None}
        if failures:
            return _failure_reply(failures)
        outcomes: list[tuple[str, bytes, int]] = []
        contexts: list[bytes | None] = []
        for index, item in enumerate(requests):
            try:
                context = read_context(key, item)
                outcomes.append(self._batch_item(key, route.action, item[name], context))
                contexts.append(context)
            except EmulatorError as err:
                failures[index] = err
        if failures:
            return _failure_reply(failures)
        field = self.reply_field(OPERATIONS[route.action])
        items, plaintexts, versions = (list(column) for column in zip(*outcomes, strict=True))
        reply = Reply(key, contexts[0], field, items, True, plaintexts, versions, route.action != "decrypt")
        self.finish(route, reply)
        return 200, {"results": {str(i): {field: item} for i, item in enumerate(reply.items)}}

    def _requests(self, body: dict[str, Any], name: str) -> list[dict[str, Any]]:
        """The ``requests`` list, every item of the right JSON types (else the whole request fails)."""
        requests = body.get("requests")
        most = no_limit(self.generation.max_items)
        if not isinstance(requests, list) or not 1 <= len(requests) <= most:
            raise EmulatorError(f"requests must hold 1 to {most} items", field="requests")
        for index, item in enumerate(requests):
            if not isinstance(item, dict) or not isinstance(item.get(name), str):
                raise EmulatorError(f"{name} must be a string", field=f"requests[{index}].{name}")
            if not isinstance(item.get("context", ""), str):
                raise EmulatorError("context must be a string", field=f"requests[{index}].context")
        return requests

    def _batch_item(self, key: Key, action: str, value: str, context: bytes | None) -> tuple[str, bytes, int]:
        """(result item, plaintext, version of the input) for one batch item."""
        if OPERATIONS[action] is ENCRYPT:
            plaintext = base64.b64decode(value)
            token = self.store.seal(key, plaintext, context)
            return token, plaintext, token_version(token)
        plaintext, version = self.store.open(key, value, context)
        if OPERATIONS[action] is not RE_ENCRYPT:
            return b64(plaintext), plaintext, version
        return self.store.seal(key, plaintext, context), plaintext, version

    # --- key administration --------------------------------------------------------------------------
    def admin(self, route: Route, key: Key, raw: bytes) -> Answer:
        answer = self._admin(route, key, raw)
        self.stats._add("items", route.action)
        return answer

    def _admin(self, route: Route, key: Key, raw: bytes) -> Answer:
        if route.action == "key-info":
            with self.store.lock:
                return 200, {
                    "keyTag": key.tag,
                    "keyType": "AES256",
                    "status": key.status,
                    "currentVersion": key.current,
                    "isConvergent": key.convergent,
                }
        if route.action == "rotate":
            with self.store.lock:
                return 201, {"version": self.store.add_version(key), "status": "ENABLED"}
        if route.action == "versions":
            with self.store.lock:
                every = [_version(key, v) for v in range(1, key.current + 1)]
            versions, number, size = page_of(every, route, "v3", 20)
            return 200, {"versions": versions, "pageNo": number, "pageSize": size, "totalCount": len(every)}
        if route.action == "activities":
            entries = self.activities(route, key)
            page, number, size = page_of(entries, route, "v3", 20)
            activities = [activity_entry("v3", entry) for entry in page]
            return 200, {"activities": activities, "pageNo": number, "pageSize": size, "totalCount": len(entries)}
        version = path_version(route)
        if route.action == "update-version":
            self._update_version(key, version, json_object(raw).get("status"))
        with self.store.lock:
            if not 1 <= version <= key.current:
                raise EmulatorError("Not Found Exception", status=404, code="NOT_FOUND")
            return 200, _version(key, version)

    def _update_version(self, key: Key, version: int, status: Any) -> None:
        if status in ("DISABLED", "ENABLED"):
            self.store.set_version(key.tag, version, enable=status == "ENABLED")
        elif status is not None:
            raise EmulatorError("status must be ENABLED or DISABLED", field="status")


def _version(key: Key, version: int) -> dict[str, Any]:
    """A version as v3 shows it. ASSUMPTION: beside the documented version, status (and current in the
    list) it tells when it was created (createdDate, ms), as 2.0's list does (rotatedDate)."""
    return {
        "version": version,
        "status": "DISABLED" if version in key.disabled else "ENABLED",
        "current": version == key.current,
        "createdDate": key.rotated_ms[version - 1],
    }


def _format_error(name: str, value: str) -> EmulatorError | None:
    """Phase one of a batch: empty values and formats."""
    if not value:
        return EmulatorError(f"{name} must not be empty")
    if name == ENCRYPT.item_field:
        try:
            decode_plaintext(value)
        except EmulatorError as err:
            return err
        return None
    if len(value) > MAX_TOKEN_CHARS or TOKEN_RE.fullmatch(value) is None:
        return EmulatorError("ciphertext is not an ncpkms token")
    return None


def _failure_reply(failures: dict[int, EmulatorError]) -> Answer:
    """A batch failure: the status of the single cause, 400 when the causes differ."""
    rendered = {index: err.v3() for index, err in sorted(failures.items())}
    codes = {error["errorCode"] for _, error in rendered.values()}
    status = next(iter(rendered.values()))[0] if len(codes) == 1 else 400
    return status, {"failures": {str(index): error for index, (_, error) in rendered.items()}}
