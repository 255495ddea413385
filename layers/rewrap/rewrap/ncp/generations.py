"""The NCP KMS API generations rewrap speaks, and every assumption about them, in one place.

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
choices made for them are listed with their sources in :data:`ASSUMPTIONS` (and the README table of the
section "NCP KMS API generations"), and marked ``ASSUMPTION`` where they are applied. Correct them here
and client, emulator and README stay in line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from rewrap.errors import (
    KmsAuthError,
    KmsInvalidReplyError,
    KmsRejectedError,
    KmsThrottledError,
    KmsUnavailableError,
    KmsWrongRegionError,
    RewrapError,
)

DEFAULT_API = "1.0"
GLOBAL_OCAPI = "https://ocapi.ncloud.com"
# Region-isolated keys carry a region prefix in their tag (case-insensitive) and answer only on that
# region's host; anywhere else NCP answers 400.
REGION_HOSTS: Mapping[str, str] = {"kr": "ocapi-kr.ncloud.com", "jpn": "ocapi-jp.ncloud.com"}
KEY_TAG_REGION_PREFIXES: Mapping[str, str] = {"kr-": "kr", "jpn-": "jpn"}
_APIGW_HOSTS = frozenset({"kms.apigw.ntruss.com", "kms.apigw.gov-ntruss.com"})
_GLOBAL_HOSTS = _APIGW_HOSTS | {"ocapi.ncloud.com", "ocapi.gov-ncloud.com"}

# ASSUMPTION: the code NCP puts in the 400 for a region-prefixed key called on another region's host
# (only the status is documented). 1.0/2.0 envelope code, v3 errorCode.
WRONG_REGION_CODE = "REGION_MISMATCH"
WRONG_REGION_CODE_V3 = "RegionMismatch"
WRONG_REGION_CODES = frozenset({WRONG_REGION_CODE, WRONG_REGION_CODE_V3})
# ASSUMPTION: v3 errorCodes of items in a batch ``failures`` map that a later attempt may pass; an item
# carries no HTTP status of its own. Any other code is permanent.
RETRYABLE_ITEM_CODES: Mapping[str, type[RewrapError]] = {
    "TooManyRequests": KmsThrottledError,
    "InternalServerError": KmsUnavailableError,
    "ServiceUnavailable": KmsUnavailableError,
    "GatewayTimeout": KmsUnavailableError,
}
# The gateway's "Not Found Exception" (404, code 300): also what a misspelt path gets, so a path with
# another documented spelling is tried once with that one (documented: API Gateway error table).
PATH_NOT_FOUND_CODE = "300"
# ASSUMPTION: the headers naming a request for NCP support. v3 documents x-ncp-request-id on every
# status; the API Gateway's trace header name is not documented (x-ncp-trace-id is our guess).
REQUEST_ID_HEADERS = ("x-ncp-request-id", "x-ncp-trace-id")
# documented: a request timestamp 5 minutes or more off the gateway's clock is refused (401, code 200).
CLOCK_SKEW_SECONDS = 300
# documented limits of one item (§4): an AES256 plaintext up to 32 KB, a context up to 50 bytes decoded.
MAX_PLAINTEXT_BYTES = 32 * 1024
MAX_CONTEXT_BYTES = 50
# the path segment under a key that names its versions (2.0 versions list, v3 one version and rotation)
VERSIONS_SEGMENT = "versions"
# ASSUMPTION: the codes of a refusal caused by a key's or a version's state. 1.0 documents
# UNPROCESSABLE_ENTITY "Invalid status"; the 2.0 and v3 codes are not documented (2.0 and v3 are asked
# for key info instead, so only 1.0 depends on this).
STATE_REFUSAL_CODES = frozenset({"UNPROCESSABLE_ENTITY", "KeyVersionDisabled", "KeyDisabled", "KeyNotEnabled"})
# documented key states: 2.0 ENABLE | DISABLE | REVOKE, v3 ENABLED | DISABLED | REVOKED (REVOKE(D):
# deletion requested, destroyed 72 hours later unless cancelled); versions ENABLE(D) | DISABLE(D).
ENABLED_STATES = frozenset({"ENABLE", "ENABLED"})
STATE_WORDS: Mapping[str, str] = {
    "DISABLE": "disabled",
    "DISABLED": "disabled",
    "REVOKE": "revoked (deletion pending; destroyed 72 hours after the request unless cancelled)",
    "REVOKED": "revoked (deletion pending; destroyed 72 hours after the request unless cancelled)",
}
# ASSUMPTION: how a 2.0 endpoint that takes no arrays says so: a 400 whose message names an invalid
# type (the Korean 2.0 table types ciphertext as String only; no error text is documented).
ARRAY_REFUSAL_RE = re.compile(r"invalid type|type mismatch|must be a string|string expected|not a string|array", re.I)


# Every assumption that remains, with what supports it (reference/ncp-kms-api.md sections). The README
# table "Assumptions" lists the same entries; tests/integration/test_ncp_answers.py keeps them in step.
ASSUMPTIONS: tuple[tuple[str, str], ...] = (
    (
        "1.0 re-encrypt is sent as reencrypt first, re-encrypt on a 404 code 300",
        "ko/ja/gov and the newest en page (2026-09-17) say reencrypt, the seed page re-encrypt (§1.1, §8)",
    ),
    (
        "2.0 re-encrypt is sent as re-encrypt first, reencrypt on a 404 code 300",
        "both spellings listed (§1.1); 2.0 paths spell words apart (create-custom-key, get-pub-key)",
    ),
    (
        "2.0 arrays follow 1.0's 32 KB combined limit; a 400 naming an invalid type turns on one item per request",
        "en token page shows arrays, the ko 2.0 table String only (§3.3, §8); no 2.0 limit documented (§4)",
    ),
    (
        "v3 batches have no combined size limit besides 1-100 items",
        "1-100 items documented (§3.3, §4); each token at most 43,746 characters",
    ),
    (
        "v3 success bodies use 2.0's field names without the envelope; a re-encrypt result named "
        "ciphertext is taken too",
        "field names undocumented (§3.1, §3.3, §8); the token pattern and version checks guard the value",
    ),
    (
        'v3 batch results are {"results": {"0": {...}}}; issue-custom-key answers keyVersion',
        "index keys documented (§8), item field names not",
    ),
    (
        "v3 batch-encrypt is POST .../batch-encrypt",
        "by analogy with batch-decrypt, batch-re-encrypt and the token API batchEncryptWithToken (§1.1)",
    ),
    (
        "a region-isolated key on another region's host answers 400 REGION_MISMATCH / RegionMismatch",
        "only the 400 is documented (§1); global keys are taken to work on regional hosts",
    ),
    (
        "v3 item errorCodes TooManyRequests, InternalServerError, ServiceUnavailable, GatewayTimeout are retryable",
        "the v3 errorCode table is not documented (§5.3)",
    ),
    (
        "key and version states come from key info (2.0, v3 with a signature); 1.0 and token auth read "
        "UNPROCESSABLE_ENTITY and probe with an encrypt",
        "states documented (§3.6, §6); 1.0 documents UNPROCESSABLE_ENTITY Invalid status (§5.1); the error for "
        "a disabled key is not (§6); there is no getKey with a token (§8)",
    ),
    (
        "the request id is x-ncp-request-id, or x-ncp-trace-id from the gateway",
        "x-ncp-request-id documented for v3 (§2.1); the gateway's trace header name is not",
    ),
    (
        "ocapi access tokens are JWTs whose exp claim tells their expiry",
        "tokens are per key and expire (§2.4, §8); the claim is read, never verified (NCP verifies)",
    ),
    (
        "2.0 error bodies look like 1.0's ({code, msg}) or the gateway's ({error: {...}})",
        "2.0 error table not retrieved (§5.2); openbao parses both shapes (§8)",
    ),
)


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


class ItemFailures(Exception):
    """A v3 batch answered with a ``failures`` map: request index → the error of that item. Not a
    RewrapError: the client turns it into per-item results and re-sends the items that did not fail."""

    def __init__(self, errors: dict[int, RewrapError]) -> None:
        super().__init__(f"{len(errors)} batch item(s) failed")
        self.errors = errors


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
        return KeyInfo(key_tag, version, status if isinstance(status, str) else None)


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
    except KeyError:
        raise ValueError(f"unknown NCP KMS API {name!r}; choose one of {', '.join(GENERATIONS)}") from None


# --- errors -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplyInfo:
    """What a failed reply's headers tell an operator: NCP's request id, the server's clock."""

    request_id: str | None = None
    retry_after: float | None = None
    clock_skew_seconds: float | None = None  # server Date minus the local clock, when a Date came back

    def suffix(self) -> str:
        return f", request id {self.request_id}" if self.request_id else ""


def request_error(status: int, payload: Any, reply: ReplyInfo | None = None) -> RewrapError:
    """The error class of a failed request, the same for every generation (by HTTP status first). Its
    reason names the HTTP status, NCP's error code and the request id (for NCP support)."""
    reply = reply or ReplyInfo()
    code = error_code(payload)
    where = f"HTTP {status}, code {code}{reply.suffix()}"
    error: RewrapError
    if status in (401, 403):
        skew = reply.clock_skew_seconds
        if skew is not None and abs(skew) >= CLOCK_SKEW_SECONDS:
            side = "ahead of" if skew > 0 else "behind"
            error = KmsAuthError(
                f"NCP rejected the request signature: clock skew, NCP's clock is {abs(skew):.0f} s {side} this "
                f"one and NCP refuses timestamps 5 minutes or more off; fix the clock ({where})"
            )
        else:
            error = KmsAuthError(
                f"NCP rejected the credentials: check accessKey/secretKey (and apiKey for signature v1) or the "
                f"ocapi token, and the key's permissions ({where})"
            )
    elif status == 429:
        error = KmsThrottledError(f"NCP throttled the request ({where})", retry_after=reply.retry_after)
    elif status >= 500:
        error = KmsUnavailableError(f"NCP KMS answered {where}")
    elif code in WRONG_REGION_CODES:
        error = KmsWrongRegionError(f"the key is region-isolated and this is not its region's host ({where})")
    elif status == 404:
        error = KmsRejectedError(f"key tag not found ({where})")
    else:
        error = KmsRejectedError(f"NCP KMS refused the request ({where}: {error_message(payload)})")
    error.http_status, error.error_code = status, code
    return error


def item_errors(failures: dict[str, Any], status: int, reply: ReplyInfo | None = None) -> dict[int, RewrapError]:
    """A v3 ``failures`` map as request index → error. An item is classified by its errorCode; an unknown
    code takes the class of the response's status (a single cause sets the status; several make it 400)."""
    reply = reply or ReplyInfo()
    errors: dict[int, RewrapError] = {}
    for key, failure in failures.items():
        if not (isinstance(key, str) and key.isdigit() and (key == "0" or key[0] != "0")):
            raise KmsInvalidReplyError("batch failures are not keyed by request index")
        body = {"error": failure} if isinstance(failure, dict) else None
        code = error_code(body)
        error_class = RETRYABLE_ITEM_CODES.get(code)
        if error_class is not None:
            errors[int(key)] = error_class(
                f"NCP KMS could not process this item now ({code}: {error_message(body)}{reply.suffix()})"
            )
            errors[int(key)].error_code = code
        else:
            errors[int(key)] = request_error(status if status >= 400 else 400, body, reply)
    return errors


def refuses_arrays(error: RewrapError) -> bool:
    """Whether a refusal of an array request says the endpoint takes one string only (ARRAY_REFUSAL_RE)."""
    return error.http_status == 400 and bool(ARRAY_REFUSAL_RE.search(str(error)))


def error_code(payload: Any) -> str:
    if isinstance(payload, dict):
        if isinstance(payload.get("error"), dict):
            return str(payload["error"].get("errorCode", "?"))
        return str(payload.get("code", "?"))
    return "?"


def error_message(payload: Any) -> str:
    if isinstance(payload, dict):
        raw = payload.get("error")
        error: dict[str, Any] = raw if isinstance(raw, dict) else {}
        message = payload.get("msg") or error.get("message") or ""
        fields = [f.get("field") for f in error.get("fieldErrors") or () if isinstance(f, dict)]
        suffix = f" [{', '.join(map(str, fields))}]" if fields else ""
        return (str(message)[:160] + suffix)[:240]
    return ""


# --- regions and hosts ------------------------------------------------------------------------------
def key_region(key_tag: str) -> str | None:
    """``kr`` / ``jpn`` for a region-isolated key tag, None for a global one."""
    lowered = key_tag.lower()
    return next((region for prefix, region in KEY_TAG_REGION_PREFIXES.items() if lowered.startswith(prefix)), None)


def endpoint_region(endpoint: str) -> str | None:
    """The region an NCP host serves (``global``, ``kr``, ``jpn``); None for hosts NCP does not name
    (a proxy, the local emulator): there the server decides."""
    host = (urlsplit(endpoint).hostname or "").lower()
    if host in _GLOBAL_HOSTS:
        return "global"
    return next((region for region, name in REGION_HOSTS.items() if host == name), None)


def wrong_region(key_tag: str, endpoint: str) -> KmsWrongRegionError | None:
    """The error for a region-isolated key sent to a host of another region, before anything is sent.
    ASSUMPTION: global keys may be called on the regional hosts too (only the reverse is documented)."""
    region = key_region(key_tag)
    served = endpoint_region(endpoint)
    if region is None or served is None or served == region:
        return None
    return KmsWrongRegionError(
        f"key tag {key_tag[:12]}… is region-isolated ({region}); set NCP_KMS_ENDPOINT to "
        f"https://{REGION_HOSTS[region]} (it is {urlsplit(endpoint).hostname})"
    )


def check_endpoint_serves(api: str, endpoint: str) -> str | None:
    """Why ``endpoint`` cannot serve ``api``, for the NCP hosts we know; None when it can (or is unknown)."""
    host = (urlsplit(endpoint).hostname or "").lower()
    known = _GLOBAL_HOSTS | set(REGION_HOSTS.values())
    if host not in known:
        return None
    if (api == "1.0") != (host in _APIGW_HOSTS):
        hosts = "kms.apigw.ntruss.com" if api == "1.0" else "ocapi.ncloud.com or ocapi-kr/-jp.ncloud.com"
        return f"NCP_KMS_API={api} is served on {hosts}, not on {host}"
    return None


def no_limit(value: int | None) -> int:
    return sys.maxsize if value is None else value
