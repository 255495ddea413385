"""NCP API Gateway request signatures (v1 and v2).

string-to-sign v2: ``{METHOD} {URI-with-query}\\n{timestamp}\\n{accessKey}``
string-to-sign v1: ``{METHOD} {URI-with-query}\\n{timestamp}\\n{apiKey}\\n{accessKey}``
signature = Base64(HMAC-SHA256(secretKey, string-to-sign)). The URI is the path (and query) only.
API 2.0 and v3 also take token auth: the ``x-ncp-ocapi-token`` header instead of all of the above.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

SignatureVersion = Literal["v1", "v2"]

TIMESTAMP_HEADER = "x-ncp-apigw-timestamp"
ACCESS_KEY_HEADER = "x-ncp-iam-access-key"
API_KEY_HEADER = "x-ncp-apigw-api-key"
OCAPI_AUTH_HEADER = "x-ncp-ocapi-token"
SIGNATURE_HEADERS: dict[str, str] = {
    "v1": "x-ncp-apigw-signature-v1",
    "v2": "x-ncp-apigw-signature-v2",
}


@dataclass(frozen=True, repr=False)
class Credentials:
    """NCP API credentials: an access/secret key pair (signatures), an ocapi token, or both.
    ``repr`` never shows the secret parts."""

    access_key: str = ""
    secret_key: str = ""
    api_key: str | None = None
    ocapi_token: str | None = None

    @property
    def can_sign(self) -> bool:
        return bool(self.access_key and self.secret_key)

    def __repr__(self) -> str:
        token = ", ocapi_token=…" if self.ocapi_token else ""
        return f"Credentials(access_key={self.access_key[:4]}…{token})"


def string_to_sign(method: str, uri: str, timestamp_ms: int, access_key: str, api_key: str | None = None) -> str:
    lines = [f"{method.upper()} {uri}", str(timestamp_ms)]
    if api_key is not None:
        lines.append(api_key)
    lines.append(access_key)
    return "\n".join(lines)


def sign(secret_key: str, message: str) -> str:
    digest = hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_headers(
    method: str,
    uri: str,
    timestamp_ms: int,
    credentials: Credentials,
    version: SignatureVersion = "v2",
) -> dict[str, str]:
    """The authentication headers for one request (v1 additionally carries the API key)."""
    api_key = None
    if version == "v1":
        if not credentials.api_key:
            raise ValueError("signature v1 needs an apiKey in the NCP credentials")
        api_key = credentials.api_key
    signature = sign(credentials.secret_key, string_to_sign(method, uri, timestamp_ms, credentials.access_key, api_key))
    headers = {
        TIMESTAMP_HEADER: str(timestamp_ms),
        ACCESS_KEY_HEADER: credentials.access_key,
        SIGNATURE_HEADERS[version]: signature,
    }
    if api_key is not None:
        headers[API_KEY_HEADER] = api_key
    return headers
