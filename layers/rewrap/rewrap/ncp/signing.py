"""NCP API Gateway request signatures (v1 and v2).

string-to-sign v2: ``{METHOD} {URI-with-query}\\n{timestamp}\\n{accessKey}``
string-to-sign v1: ``{METHOD} {URI-with-query}\\n{timestamp}\\n{apiKey}\\n{accessKey}``
signature = Base64(HMAC-SHA256(secretKey, string-to-sign)). The URI is the path (and query) only.
API 2.0 and v3 also take token auth: the ``x-ncp-ocapi-token`` header instead of all of the above.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rewrap.errors import ConfigError

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
    """NCP API credentials: an access/secret key pair (signatures), ocapi tokens, or both. NCP issues
    access tokens per key: ``ocapi_tokens`` maps key tags to theirs, ``ocapi_token`` serves any other.
    ``repr`` never shows the secret parts."""

    access_key: str = ""
    secret_key: str = ""
    api_key: str | None = None
    ocapi_token: str | None = None
    ocapi_tokens: Mapping[str, str] = field(default_factory=dict)

    @property
    def can_sign(self) -> bool:
        return bool(self.access_key and self.secret_key)

    @property
    def has_tokens(self) -> bool:
        return bool(self.ocapi_token or self.ocapi_tokens)

    def token_for(self, key_tag: str) -> str | None:
        """The key's own token (key tags compare case-insensitively), else the single one."""
        lowered = key_tag.lower()
        own = next((t for tag, t in self.ocapi_tokens.items() if tag.lower() == lowered), None)
        return own or self.ocapi_token

    def __repr__(self) -> str:
        token = ", ocapi_token=…" if self.has_tokens else ""
        return f"Credentials(access_key={self.access_key[:4]}…{token})"


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (Unix seconds) of a JWT access token, read and not verified (NCP verifies it);
    None for a token that is not a JWT or has no ``exp``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


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
            raise ConfigError("NCP_KMS_SIGNATURE_VERSION=v1 needs apiKey in the NCP secret (or use v2)")
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
