"""Failed NCP KMS replies as rewrap errors, the same for every API generation: the error codes NCP
answers, what a failed reply's headers tell (request id, clock), a request's error class by HTTP status
first, and a v3 batch's ``failures`` map as per-item errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rewrap.errors import (
    KmsAuthError,
    KmsInvalidReplyError,
    KmsRejectedError,
    KmsThrottledError,
    KmsUnavailableError,
    KmsWrongRegionError,
    RewrapError,
)
from rewrap.ncp.regions import WRONG_REGION_CODES

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
# ASSUMPTION: the codes of a refusal caused by a key's or a version's state. 1.0 documents
# UNPROCESSABLE_ENTITY "Invalid status"; the 2.0 and v3 codes are not documented (2.0 and v3 are asked
# for key info instead, so only 1.0 depends on this).
STATE_REFUSAL_CODES = frozenset({"UNPROCESSABLE_ENTITY", "KeyVersionDisabled", "KeyDisabled", "KeyNotEnabled"})
# ASSUMPTION: how a 2.0 endpoint that takes no arrays says so: a 400 whose message names an invalid
# type (the Korean 2.0 table types ciphertext as String only; no error text is documented).
ARRAY_REFUSAL_RE = re.compile(r"invalid type|type mismatch|must be a string|string expected|not a string|array", re.I)


class ItemFailures(Exception):
    """A v3 batch answered with a ``failures`` map: request index → the error of that item. Not a
    RewrapError: the client turns it into per-item results and re-sends the items that did not fail."""

    def __init__(self, errors: dict[int, RewrapError]) -> None:
        super().__init__(f"{len(errors)} batch item(s) failed")
        self.errors = errors


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
