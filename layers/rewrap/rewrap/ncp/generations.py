"""The NCP KMS API generations rewrap speaks: each one's paths, envelopes, limits and replies, in one table.

``NCP_KMS_API`` picks one of :data:`GENERATIONS`:

* ``1.0`` — ``https://kms.apigw.ntruss.com/keys/{v1|v2}/{keyTag}/{action}`` (API Gateway signature v1 or
  v2); string or array bodies; success ``{"code": "SUCCESS", "msg": "", "data": {...}}``.
* ``2.0`` — ``https://ocapi.ncloud.com/kms/v1/keys/{keyTag}/{action}`` (signature v2, or the
  ``x-ncp-ocapi-token`` header); string or array bodies; success ``{"code": "SUCCESS", "data": {...}}``;
  key info at ``GET /kms/v1/keys/{keyTag}`` (``data.currentVersion``).
* ``v3`` — ``https://ocapi.ncloud.com/kms/v3/keys/{keyTag}/{action}`` (signature v2) or
  ``/kms/v3/token/keys/...`` (token); one item per ``re-encrypt``, 1-100 per ``batch-re-encrypt``
  (``{"requests": [{ciphertext, context?}]}``, atomic, results and failures keyed by request index);
  bare success bodies; errors ``{"error": {"errorCode", "message", "fieldErrors"?}}`` or ``{"failures": {...}}``.

Facts come from ``reference/ncp-kms-api.md``. The public docs leave some details open or disagree; the
choices made for them are listed with their sources in :data:`rewrap_local.emulator.assumptions.ASSUMPTIONS` (and
the README table of the section "NCP KMS API generations"), and marked ``ASSUMPTION`` where they are
applied. Hosts and regions live in :mod:`rewrap.ncp.regions`, NCP's error codes and the classification
of failed replies in :mod:`rewrap.ncp.reply_errors`. Correct a fact where it lives and client, emulator
and README stay in line.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from rewrap.errors import KmsInvalidReplyError, KmsRejectedError
from rewrap.ncp.regions import GLOBAL_OCAPI
from rewrap.ncp.reply_errors import ItemFailures, ReplyInfo, error_code, error_message, item_errors, request_error

DEFAULT_API = "1.0"
# documented limits of one item (§4): an AES256 plaintext up to 32 KB, a context up to 50 bytes decoded.
MAX_PLAINTEXT_BYTES = 32 * 1024
MAX_CONTEXT_BYTES = 50
# the path segment under a key that names its versions (2.0 versions list, v3 one version and rotation)
VERSIONS_SEGMENT = "versions"
# documented key states: 2.0 ENABLE | DISABLE | REVOKE, v3 ENABLED | DISABLED | REVOKED (REVOKE(D):
# deletion requested, destroyed 72 hours later unless cancelled); versions ENABLE(D) | DISABLE(D).
ENABLED_STATES = frozenset({"ENABLE", "ENABLED"})
STATE_WORDS: Mapping[str, str] = {
    "DISABLE": "disabled",
    "DISABLED": "disabled",
    "REVOKE": "revoked (deletion pending; destroyed 72 hours after the request unless cancelled)",
    "REVOKED": "revoked (deletion pending; destroyed 72 hours after the request unless cancelled)",
}


@dataclass(frozen=True)
class Operation:
    """A crypto call: the request field carrying the items and the reply field carrying the results."""

    name: str
    item_field: str
    reply_field: str
    reply_list_field: str  # older 1.0 docs name the array form of the reply differently


ENCRYPT = Operation("encrypt", "plaintext", "ciphertext", "ciphertextList")
DECRYPT = Operation("decrypt", "ciphertext", "plaintext", "plaintextList")
RE_ENCRYPT = Operation("re-encrypt", "ciphertext", "newCiphertext", "newCiphertextList")
CUSTOM_KEY = Operation("custom-key", "", "ciphertext", "ciphertext")


@dataclass(frozen=True)
class KeyInfo:
    key_tag: str
    current_version: int
    status: str | None = None
    next_rotation_ms: int | None = None  # 2.0 key info's nextRotationDate, when auto rotation is on


@dataclass(frozen=True)
class Generation:
    name: str
    default_endpoint: str
    signatures: tuple[str, ...]
    list_limit_bytes: int | None  # combined characters of the items of one request
    max_items: int | None  # items of one request
    base: str  # path up to the key tag; ``{sig}`` is the signature version
    ocapi_auth_base: str | None  # the same with x-ncp-ocapi-token auth (None: not offered)
    actions: Mapping[str, str]  # operation → path segment (one item, or an array on 1.0/2.0)
    batch_actions: Mapping[str, str] = field(default_factory=dict)  # operation → segment for a ``requests`` list
    bare_envelope: bool = False  # v3: the success body is the data itself
    key_info: bool = False  # ``GET {base}/{keyTag}`` tells the current version and the key's state
    custom_key_version_fields: tuple[str, ...] = ("key_version",)
    # operation → other documented spellings of its path segment, tried on a "Not Found" (code 300)
    other_spellings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # operation → further reply field names accepted for its result
    reply_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # version states: "list" (one GET for every version, 2.0) or "each" (one GET per version, v3)
    version_info: str | None = None
    # ``POST {key path}/{segment}`` adds a key version (documented admin call; rewrap never rotates, the
    # emulator serves it)
    rotate_segment: str | None = None

    @property
    def token_auth(self) -> bool:
        return self.ocapi_auth_base is not None

    # --- requests -----------------------------------------------------------------------------------
    def path(
        self,
        operation: str,
        key_tag: str,
        *,
        signature: str,
        token: bool = False,
        batch: bool = False,
        segment: str | None = None,
    ) -> str:
        segment = segment or (self.batch_actions if batch else self.actions)[operation]
        return f"{self.key_path(key_tag, signature=signature, token=token)}/{segment}"

    def spellings(self, operation: str) -> tuple[str, ...]:
        """The path segments of ``operation`` (one item or array form), the primary source's first."""
        return (self.actions[operation], *self.other_spellings.get(operation, ()))

    def versions_path(self, key_tag: str, version: int | None = None) -> str:
        path = f"{self.key_path(key_tag)}/{VERSIONS_SEGMENT}"
        return f"{path}/{version}" if self.version_info == "each" else path

    def key_path(self, key_tag: str, *, signature: str = "v2", token: bool = False) -> str:
        base = self.ocapi_auth_base if token and self.ocapi_auth_base else self.base
        return f"{base.format(sig=signature)}/{quote(key_tag, safe='')}"

    def body(self, operation: Operation, items: Sequence[str], context: str | None, *, batch: bool) -> dict[str, Any]:
        ctx = {"context": context} if context else {}
        if batch:
            return {"requests": [{operation.item_field: item, **ctx} for item in items]}
        return {operation.item_field: items[0] if len(items) == 1 else list(items), **ctx}

    def uses_batch(self, count: int) -> bool:
        """v3 has an endpoint for one item and one for many; 1.0/2.0 take a string or an array."""
        return bool(self.batch_actions) and count > 1

    # --- replies ------------------------------------------------------------------------------------
    def unwrap(self, status: int, payload: Any, *, batch: bool = False, reply: ReplyInfo | None = None) -> dict:
        """The reply's data, or the error it stands for (``ItemFailures`` for a v3 batch's failures)."""
        if status < 400:
            return self._success_data(status, payload)
        if batch and isinstance(payload, dict) and isinstance(payload.get("failures"), dict):
            raise ItemFailures(item_errors(payload["failures"], status, reply))
        raise request_error(status, payload, reply)

    def _success_data(self, status: int, payload: Any) -> dict:
        if not isinstance(payload, dict):
            raise KmsInvalidReplyError(f"NCP KMS answered HTTP {status} with a body that is not JSON")
        if self.bare_envelope:
            return payload
        data = payload.get("data")
        if payload.get("code") != "SUCCESS" or not isinstance(data, dict):
            raise KmsRejectedError(f"NCP KMS answered {error_code(payload)}: {error_message(payload)}")
        return data

    def items(self, operation: Operation, data: dict, count: int, *, batch: bool) -> list[Any]:
        """The result items of a successful reply, in request order (``count`` were sent)."""
        if batch:
            # ASSUMPTION: v3 batch success is {"results": {"0": {<reply field>: …}, …}} (keys documented,
            # item field names not).
            results = data.get("results")
            if not isinstance(results, dict) or set(results) != {str(i) for i in range(count)}:
                got = len(results) if isinstance(results, dict) else type(results).__name__
                raise KmsInvalidReplyError(f"batch reply holds {got} results for {count} sent")
            return [self._field(results[str(i)], operation) for i in range(count)]
        value = self._field(data, operation)
        if self.batch_actions and not isinstance(value, str):  # v3 single-item endpoints answer one string
            raise KmsInvalidReplyError(f"reply {operation.reply_field} is not a string")
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or len(items) != count:
            got = len(items) if isinstance(items, list) else type(value).__name__
            raise KmsInvalidReplyError(f"reply holds {got} items for {count} sent")
        return items

    def _field(self, data: Any, operation: Operation) -> Any:
        if isinstance(data, dict):
            names = (operation.reply_field, operation.reply_list_field, *self.reply_aliases.get(operation.name, ()))
            for name in names:
                if name in data:
                    return data[name]
        raise KmsInvalidReplyError(f"reply has no {operation.reply_field}")

    def version_states_from(self, data: dict) -> dict[int, str]:
        """Version → state from a versions reply: 2.0 ``versionList`` or one v3 version."""
        entries = data.get("versionList") if self.version_info == "list" else [data]
        states: dict[int, str] = {}
        for entry in entries if isinstance(entries, list) else ():
            version, status = (entry.get("version"), entry.get("status")) if isinstance(entry, dict) else (0, 0)
            if isinstance(version, int) and isinstance(status, str):
                states[version] = status
        if not states:
            raise KmsInvalidReplyError("version info holds no version states")
        return states

    def key_info_from(self, key_tag: str, data: dict) -> KeyInfo:
        # 2.0 documents data.currentVersion; v3 getKey names it currentVersion too (second reading).
        version = data.get("currentVersion")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise KmsInvalidReplyError("key info holds no current version")
        status = data.get("status")
        # 2.0 documents isAutoRotation and nextRotationDate (ms); v3 tells it at .../rotation only (not asked)
        upcoming = data.get("nextRotationDate") if data.get("isAutoRotation") is True else None
        next_rotation = upcoming if isinstance(upcoming, int) and not isinstance(upcoming, bool) else None
        return KeyInfo(key_tag, version, status if isinstance(status, str) else None, next_rotation)


GENERATIONS: Mapping[str, Generation] = {
    "1.0": Generation(
        name="1.0",
        default_endpoint="https://kms.apigw.ntruss.com",
        signatures=("v2", "v1"),
        list_limit_bytes=32 * 1024,  # documented: "up to 32 KB for all items combined"
        max_items=None,
        base="/keys/{sig}",
        ocapi_auth_base=None,
        # The Korean, Japanese, gov and newest English (2026-09-17) pages spell it reencrypt; the seed
        # page and some English HTML revisions re-encrypt. Both are tried (second reading, §8).
        actions={
            "encrypt": "encrypt",
            "decrypt": "decrypt",
            "re-encrypt": "reencrypt",
            "custom-key": "createCustomKey",
        },
        other_spellings={"re-encrypt": ("re-encrypt",)},
    ),
    "2.0": Generation(
        name="2.0",
        default_endpoint=GLOBAL_OCAPI,
        signatures=("v2",),
        # ASSUMPTION: 2.0 arrays follow 1.0's 32 KB combined limit (2.0 documents no limit).
        list_limit_bytes=32 * 1024,
        max_items=None,
        base="/kms/v1/keys",
        ocapi_auth_base="/kms/v1/keys",  # documented: same paths, x-ncp-ocapi-token instead of a signature
        actions={
            "encrypt": "encrypt",
            "decrypt": "decrypt",
            "re-encrypt": "re-encrypt",
            "custom-key": "create-custom-key",
        },
        # Both spellings are listed for 2.0; its paths spell words apart (create-custom-key, get-pub-key).
        other_spellings={"re-encrypt": ("reencrypt",)},
        key_info=True,
        version_info="list",  # documented: GET /kms/v1/keys/{keyTag}/versions → data.versionList
        rotate_segment="rotate",  # documented: POST /kms/v1/keys/{keyTag}/rotate
    ),
    "v3": Generation(
        name="v3",
        default_endpoint=GLOBAL_OCAPI,
        signatures=("v2",),
        # ASSUMPTION: no combined size limit besides 1-100 items (each item ≤ 43,746 characters).
        list_limit_bytes=None,
        max_items=100,
        base="/kms/v3/keys",
        ocapi_auth_base="/kms/v3/token/keys",  # documented
        actions={
            "encrypt": "encrypt",
            "decrypt": "decrypt",
            "re-encrypt": "re-encrypt",
            "custom-key": "issue-custom-key",
        },
        # batch-re-encrypt and batch-decrypt are documented; ASSUMPTION: batch-encrypt by analogy
        # (the token API batchEncryptWithToken exists).
        batch_actions={"encrypt": "batch-encrypt", "decrypt": "batch-decrypt", "re-encrypt": "batch-re-encrypt"},
        # ASSUMPTION: v3 success bodies use 2.0's data field names (ciphertext, plaintext, newCiphertext),
        # issue-custom-key answers keyVersion. A re-encrypt result named ciphertext is taken too: the token
        # pattern and version checks guard the value whatever its name.
        bare_envelope=True,
        key_info=True,
        custom_key_version_fields=("keyVersion", "key_version"),
        reply_aliases={"re-encrypt": ("ciphertext",)},
        version_info="each",  # documented: GET /kms/v3/keys/{keyTag}/versions/{version} → {version, status}
        rotate_segment=VERSIONS_SEGMENT,  # documented: POST /kms/v3/keys/{keyTag}/versions (createKeyVersion)
    ),
}


def generation(name: str) -> Generation:
    try:
        return GENERATIONS[name]
    except KeyError as exc:
        raise ValueError(f"unknown NCP KMS API {name!r}; choose one of {', '.join(GENERATIONS)}") from exc


def no_limit(value: int | None) -> int:
    return sys.maxsize if value is None else value
