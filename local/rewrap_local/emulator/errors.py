"""The emulator's refusals: :class:`EmulatorError` and the API Gateway's fixed error bodies."""

from __future__ import annotations

from typing import Any

from rewrap.ncp.regions import WRONG_REGION_CODE, WRONG_REGION_CODE_V3
from rewrap.ncp.reply_errors import PATH_NOT_FOUND_CODE

# The gateway's own answers (API Gateway error table), the same on every path family.
AUTH_FAILED = {"error": {"errorCode": "200", "message": "Authentication Failed"}}
NOT_FOUND = {"error": {"errorCode": PATH_NOT_FOUND_CODE, "message": "Not Found Exception"}}
BAD_REQUEST = {"error": {"errorCode": "100", "message": "Bad Request Exception"}}
TOO_LARGE = {"error": {"errorCode": "430", "message": "Request Entity Too Large"}}
RATE_LIMITED = {"error": {"errorCode": "420", "message": "Rate Limited"}}
UNEXPECTED = {"error": {"errorCode": "900", "message": "Unexpected Error"}}
# A sub account whose policy does not allow the call (gateway table: 401, code 210); ASSUMPTION: ocapi's
# gateway answers a management call the same way.
PERMISSION_DENIED = {"error": {"errorCode": "210", "message": "Permission Denied"}}

# v3 errorCode and status for each emulator error code (1.0/2.0 answer the code itself).
_V3_ERRORS = {
    "INVALID_REQUEST": ("InvalidParameter", 400),
    "UNPROCESSABLE_ENTITY": ("KeyVersionDisabled", 409),
    "NOT_FOUND": ("NotFound", 404),
    WRONG_REGION_CODE: (WRONG_REGION_CODE_V3, 400),
}


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


def invalid_status() -> EmulatorError:
    """A disabled key version (1.0 documents UNPROCESSABLE_ENTITY "Invalid status")."""
    return EmulatorError("Invalid status", code="UNPROCESSABLE_ENTITY")


def key_not_enabled() -> EmulatorError:
    """A key that is disabled or pending deletion: 1.0/2.0 as a disabled version, v3 409 KeyNotEnabled."""
    return EmulatorError("Invalid status", code="UNPROCESSABLE_ENTITY", v3=("KeyNotEnabled", 409))


def not_found() -> EmulatorError:
    return EmulatorError("Not Found Exception", status=404, code="NOT_FOUND")
