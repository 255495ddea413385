"""Who may call: access keys checked with the API Gateway signature (v1 and v2) and per-key ocapi tokens.

Signatures are verified with ``rewrap.ncp.signing``, so client and emulator share one string-to-sign.
Tokens are JWT-shaped with an optional ``exp`` claim; an expired one is refused.
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rewrap.ncp.reply_errors import CLOCK_SKEW_SECONDS
from rewrap.ncp.signing import (
    ACCESS_KEY_HEADER,
    API_KEY_HEADER,
    OCAPI_AUTH_HEADER,
    SIGNATURE_HEADERS,
    TIMESTAMP_HEADER,
    sign,
    string_to_sign,
)

from .routes import TOKEN_AUTH, Route


@dataclass(frozen=True)
class _Secret:
    secret_key: str
    api_key: str | None

    def __repr__(self) -> str:
        return "_Secret(…)"


class Authenticator:
    """Credentials and tokens; ``clock`` is the emulator's clock (Unix seconds). Thread-safe."""

    def __init__(self, rng: random.Random, clock: Callable[[], float]) -> None:
        self._rng = rng
        self._clock = clock
        self._lock = threading.Lock()
        self._credentials: dict[str, _Secret] = {}
        self._tokens: dict[str, tuple[str, float | None]] = {}  # ocapi token -> (key tag, exp)
        self._viewers: set[str] = set()  # access keys whose policy allows reading keys, not changing them

    def add_credentials(self, access_key: str, secret_key: str, api_key: str | None = None) -> None:
        if not access_key or not secret_key:
            raise ValueError("access key and secret key must not be empty")
        with self._lock:
            self._credentials[access_key] = _Secret(secret_key, api_key)

    def remove_credentials(self, access_key: str) -> None:
        with self._lock:
            self._credentials.pop(access_key, None)

    def allow_management(self, access_key: str, allowed: bool) -> None:
        with self._lock:
            (self._viewers.discard if allowed else self._viewers.add)(access_key)

    def may_manage(self, headers: Any) -> bool:
        """Whether the signed request's access key may change key state (sub-account permission)."""
        with self._lock:
            return headers.get(ACCESS_KEY_HEADER) not in self._viewers

    @staticmethod
    def requestor(headers: Any) -> str:
        """Who a request came from, as the activity history names it: the access key, or a token."""
        return str(headers.get(ACCESS_KEY_HEADER) or ("ocapi-token" if headers.get(OCAPI_AUTH_HEADER) else ""))

    def issue_token(self, tag: str, expires_in: float | None) -> str:
        exp = int(self._clock() + expires_in) if expires_in is not None else None
        claims = {"sub": tag, **({"exp": exp} if exp is not None else {})}
        token = ".".join(
            base64.urlsafe_b64encode(part).decode().rstrip("=")
            for part in (
                json.dumps({"alg": "HS256", "typ": "JWT"}).encode(),
                json.dumps(claims).encode(),
                self._rng.randbytes(32),
            )
        )
        with self._lock:
            self._tokens[token] = (tag, exp)
        return token

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def authenticate(self, method: str, uri: str, headers: Any, route: Route) -> bool:
        """Whether the request may reach ``route``: a token for its key where tokens are taken (and sent,
        or the only way in), otherwise a valid signature."""
        token = headers.get(OCAPI_AUTH_HEADER)
        if TOKEN_AUTH in route.auth and (token is not None or route.token_only):
            with self._lock:
                owner, exp = self._tokens.get(token or "", ("", None))
            if exp is not None and self._clock() >= exp:
                return False
            return bool(owner) and owner.lower() == route.tag.lower()
        return self._signature_valid(method, uri, headers, route.signature)

    def _signature_valid(self, method: str, uri: str, headers: Any, version: str) -> bool:
        access_key = headers.get(ACCESS_KEY_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADERS[version])
        if not access_key or not timestamp or not signature:
            return False
        with self._lock:
            secret = self._credentials.get(access_key)
        if secret is None:
            return False
        try:
            timestamp_ms = int(timestamp)
        except ValueError:
            return False
        if abs(self._clock() * 1000 - timestamp_ms) >= CLOCK_SKEW_SECONDS * 1000:
            return False
        api_key = None
        if version == "v1":
            api_key = headers.get(API_KEY_HEADER)
            if not api_key or secret.api_key is None or not hmac.compare_digest(api_key, secret.api_key):
                return False
        expected = sign(secret.secret_key, string_to_sign(method, uri, timestamp_ms, access_key, api_key))
        return hmac.compare_digest(expected.encode(), signature.encode())
