"""NCP credentials from AWS Secrets Manager, cached through Powertools parameters.

The secret is JSON ``{"accessKey": …, "secretKey": …, "apiKey": …?}``, or for token auth (API 2.0 / v3)
``{"ocapiToken": …}`` and/or ``{"ocapiTokens": {"<keyTag>": "<token>", …}}`` (NCP issues access tokens per
key). Both kinds may be present; then requests are signed. Its values never appear in
errors or logs; only the failure class does.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from rewrap.errors import CredentialsInvalidError, CredentialsUnavailableError
from rewrap.ncp.signing import Credentials

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Secrets Manager answers that no retry will fix.
_PERMANENT_CODES = {
    "ResourceNotFoundException",
    "AccessDeniedException",
    "InvalidRequestException",
    "DecryptionFailure",
}


class _NoSecretBodies(logging.Filter):
    """botocore logs every response body at DEBUG (with the root logger at DEBUG, e.g. Lambda's
    ApplicationLogLevel=DEBUG): a GetSecretValue body is the secret itself, so it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        return not any(isinstance(arg, bytes | str) and "SecretString" in str(arg) for arg in args)


class SecretCredentials:
    def __init__(self, secret_id: str, *, max_age: float = 300.0, client: SecretsManagerClient | None = None) -> None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        parsers = logging.getLogger("botocore.parsers")
        if not any(isinstance(f, _NoSecretBodies) for f in parsers.filters):
            parsers.addFilter(_NoSecretBodies())

        if not secret_id:
            raise CredentialsInvalidError("NCP_KMS_SECRET_ID is not set")
        self.secret_id = secret_id
        self.max_age = int(max_age)
        self._provider = SecretsProvider(boto3_client=client)
        self._lock = threading.Lock()

    def get(self, *, refresh: bool = False) -> Credentials:
        with self._lock:
            try:
                return parse_credentials(self._fetch(refresh))
            except CredentialsInvalidError:
                if refresh:
                    raise
                # A cached value that does not parse may have been fixed since: read it again once,
                # or a warm container keeps failing until the cache expires.
                return parse_credentials(self._fetch(True))

    def _fetch(self, refresh: bool) -> Any:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

        try:
            return self._provider.get(self.secret_id, transform="json", max_age=self.max_age, force_fetch=refresh)
        except TransformParameterError:
            # from None: the parser's error would carry the secret's text into a traceback
            raise CredentialsInvalidError("the NCP secret is not valid JSON") from None
        except GetParameterError as exc:
            raise _classify(exc) from exc


def parse_credentials(value: Any) -> Credentials:
    if not isinstance(value, dict):
        raise CredentialsInvalidError("the NCP secret must be a JSON object")
    access_key, secret_key, api_key = value.get("accessKey"), value.get("secretKey"), value.get("apiKey")
    token = value.get("ocapiToken")
    if token is not None and not (isinstance(token, str) and token):
        raise CredentialsInvalidError("the NCP secret's ocapiToken must be a non-empty string")
    tokens = value.get("ocapiTokens", {})
    if not (isinstance(tokens, dict) and all(isinstance(t, str) and t for t in tokens.values())):
        raise CredentialsInvalidError("the NCP secret's ocapiTokens must map key tags to non-empty strings")
    if (token or tokens) and access_key is None and secret_key is None:
        return Credentials(ocapi_token=token, ocapi_tokens=dict(tokens))  # token auth only (API 2.0 / v3)
    if not (isinstance(access_key, str) and access_key and isinstance(secret_key, str) and secret_key):
        raise CredentialsInvalidError(
            "the NCP secret needs string fields accessKey and secretKey (or ocapiToken / ocapiTokens)"
        )
    if api_key is not None and not isinstance(api_key, str):
        raise CredentialsInvalidError("the NCP secret's apiKey must be a string")
    return Credentials(access_key, secret_key, api_key or None, token or None, dict(tokens))


def _classify(exc: Exception) -> Exception:
    cause = exc.__cause__ or exc.__context__
    code = getattr(cause, "response", {}).get("Error", {}).get("Code", "") if cause is not None else ""
    if code in _PERMANENT_CODES:
        return CredentialsInvalidError(f"Secrets Manager refused the NCP secret ({code})")
    return CredentialsUnavailableError(f"Secrets Manager unreachable ({code or type(cause).__name__})")
