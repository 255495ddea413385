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

Facts come from ``reference/ncp-kms-api.md``. The public docs leave some details open; the choices made
for them are the ``ASSUMPTION`` comments below (each also listed in the README section "NCP KMS API
generations"). Correct them here and client, emulator and README stay in line.
"""

from __future__ import annotations

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
    key_info: bool = False  # ``GET {base}/{keyTag}`` tells the current version
    custom_key_version_fields: tuple[str, ...] = ("key_version",)

    @property
    def token_auth(self) -> bool:
        return self.ocapi_auth_base is not None

    # --- requests -----------------------------------------------------------------------------------
    def path(self, operation: str, key_tag: str, *, signature: str, token: bool = False, batch: bool = False) -> str:
        segment = (self.batch_actions if batch else self.actions)[operation]
        return f"{self.key_path(key_tag, signature=signature, token=token)}/{segment}"

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
    def unwrap(self, status: int, payload: Any, *, batch: bool = False, retry_after: float | None = None) -> dict:
        """The reply's data, or the error it stands for (``ItemFailures`` for a v3 batch's failures)."""
        if status < 400:
            return self._success_data(status, payload)
        if batch and isinstance(payload, dict) and isinstance(payload.get("failures"), dict):
            raise ItemFailures(item_errors(payload["failures"], status))
        raise request_error(status, payload, retry_after)

    def _success_data(self, status: int, payload: Any) -> dict:
        if not isinstance(payload, dict):
            raise KmsInvalidReplyError(f"NCP KMS answered HTTP {status} with a body that is not JSON")
        if self.bare_envelope:
            return payload
        if payload.get("code") != "SUCCESS" or not isinstance(payload.get("data"), dict):
            raise KmsRejectedError(f"NCP KMS answered {error_code(payload)}: {error_message(payload)}")
        return payload["data"]

    def items(self, operation: Operation, data: dict, count: int, *, batch: bool) -> list[Any]:
        """The result items of a successful reply, in request order (``count`` were sent)."""
        if batch:
            # ASSUMPTION: v3 batch success is {"results": {"0": {<reply field>: …}, …}} (keys documented,
            # item field names not).
            results = data.get("results")
            if not isinstance(results, dict) or set(results) != {str(i) for i in range(count)}:
                got = len(results) if isinstance(results, dict) else type(results).__name__
                raise KmsInvalidReplyError(f"batch reply holds {got} results for {count} sent")
            return [_field(results[str(i)], operation) for i in range(count)]
        value = _field(data, operation)
        if self.batch_actions and not isinstance(value, str):  # v3 single-item endpoints answer one string
            raise KmsInvalidReplyError(f"reply {operation.reply_field} is not a string")
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or len(items) != count:
            got = len(items) if isinstance(items, list) else type(value).__name__
            raise KmsInvalidReplyError(f"reply holds {got} items for {count} sent")
        return items

    def key_info_from(self, key_tag: str, data: dict) -> KeyInfo:
        # 2.0 documents data.currentVersion. ASSUMPTION: v3 getKey names it currentVersion too.
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
        actions={
            "encrypt": "encrypt",
            "decrypt": "decrypt",
            "re-encrypt": "re-encrypt",
            "custom-key": "createCustomKey",
        },
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
        key_info=True,
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
        # issue-custom-key answers keyVersion.
        bare_envelope=True,
        key_info=True,
        custom_key_version_fields=("keyVersion", "key_version"),
    ),
}


def generation(name: str) -> Generation:
    try:
        return GENERATIONS[name]
    except KeyError:
        raise ValueError(f"unknown NCP KMS API {name!r}; choose one of {', '.join(GENERATIONS)}") from None


# --- errors -----------------------------------------------------------------------------------------
def request_error(status: int, payload: Any, retry_after: float | None = None) -> RewrapError:
    """The error class of a failed request, the same for every generation (by HTTP status first)."""
    code = error_code(payload)
    if status in (401, 403):
        return KmsAuthError(f"NCP rejected the credentials (HTTP {status}, code {code})")
    if status == 429:
        return KmsThrottledError(f"NCP throttled the request (code {code})", retry_after=retry_after)
    if status >= 500:
        return KmsUnavailableError(f"NCP KMS answered HTTP {status} (code {code})")
    if code in WRONG_REGION_CODES:
        return KmsWrongRegionError(f"the key is region-isolated and this is not its region's host ({code})")
    if status == 404:
        return KmsRejectedError(f"key tag not found (HTTP 404, code {code})")
    return KmsRejectedError(f"NCP KMS refused the request (HTTP {status}, {code}: {error_message(payload)})")


def item_errors(failures: dict[str, Any], status: int) -> dict[int, RewrapError]:
    """A v3 ``failures`` map as request index → error. An item is classified by its errorCode; an unknown
    code takes the class of the response's status (a single cause sets the status; several make it 400)."""
    errors: dict[int, RewrapError] = {}
    for key, failure in failures.items():
        if not (isinstance(key, str) and key.isdigit() and (key == "0" or key[0] != "0")):
            raise KmsInvalidReplyError("batch failures are not keyed by request index")
        body = {"error": failure} if isinstance(failure, dict) else None
        code = error_code(body)
        error_class = RETRYABLE_ITEM_CODES.get(code)
        if error_class is not None:
            errors[int(key)] = error_class(f"NCP KMS could not process this item now ({code}: {error_message(body)})")
        else:
            errors[int(key)] = request_error(status if status >= 400 else 400, body)
    return errors


def error_code(payload: Any) -> str:
    if isinstance(payload, dict):
        if isinstance(payload.get("error"), dict):
            return str(payload["error"].get("errorCode", "?"))
        return str(payload.get("code", "?"))
    return "?"


def error_message(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        message = payload.get("msg") or error.get("message") or ""
        fields = [f.get("field") for f in error.get("fieldErrors") or () if isinstance(f, dict)]
        suffix = f" [{', '.join(map(str, fields))}]" if fields else ""
        return (str(message)[:160] + suffix)[:240]
    return ""


def _field(data: Any, operation: Operation) -> Any:
    if isinstance(data, dict):
        for name in (operation.reply_field, operation.reply_list_field):
            if name in data:
                return data[name]
    raise KmsInvalidReplyError(f"reply has no {operation.reply_field}")


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
