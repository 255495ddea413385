"""NCP KMS HTTP client (API 1.0 on ``kms.apigw.ntruss.com``): signing, batching, retries, validation.

One pooled ``httpx.Client`` is reused across invocations. Failures are mapped onto the rewrap error
hierarchy: 429, 5xx, timeouts and transport errors are retryable (exponential backoff with full
jitter, honouring ``Retry-After``, bounded by the caller's deadline); 4xx replies are permanent.
A 401/403 re-reads the credentials once, since the secret may have been rotated.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx

from rewrap.deadline import Deadline, RateLimiter
from rewrap.errors import (
    KmsAuthError,
    KmsInvalidReplyError,
    KmsRejectedError,
    KmsThrottledError,
    KmsUnavailableError,
    OutOfTimeError,
    RetryableError,
)
from rewrap.ncp.signing import Credentials, SignatureVersion, signed_headers
from rewrap.tokens import TOKEN_RE, chunk_by_size

T = TypeVar("T")
R = TypeVar("R")

# 1.0 lists may hold up to 32 KB for all items combined.
LIST_LIMIT_BYTES = 32 * 1024


class CredentialsSource(Protocol):
    def get(self, *, refresh: bool = False) -> Credentials: ...


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    items: int = 0

    def snapshot(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries, "items": self.items}


@dataclass(frozen=True, repr=False)
class DataKey:
    ciphertext: str
    key_version: int
    plaintext: bytes | None = None

    def __repr__(self) -> str:
        return f"DataKey(key_version={self.key_version})"


class NcpKmsClient:
    def __init__(
        self,
        endpoint: str,
        credentials: CredentialsSource,
        *,
        signature_version: SignatureVersion = "v2",
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        max_attempts: int = 6,
        rate_limiter: RateLimiter | None = None,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        list_limit: int = LIST_LIMIT_BYTES,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.credentials = credentials
        self.signature_version = signature_version
        self.timeout = timeout
        self.http = http or new_http_client(timeout)
        self.max_attempts = max_attempts
        self.rate_limiter = rate_limiter
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.list_limit = list_limit
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()

    # --- crypto operations -------------------------------------------------------------------
    # Each reply is read (and validated) inside the retry loop: a malformed reply is retried like a 5xx.
    def re_encrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[str]:
        """New tokens under the key's newest version, in input order, each validated."""

        def read(chunk: list[str], data: dict[str, Any]) -> list[str]:
            replies = _as_list(_field(data, "newCiphertext", "newCiphertextList"), len(chunk))
            validate_re_encrypt_reply(chunk, replies)
            return replies

        return self._per_chunk(key_tag, "re-encrypt", "ciphertext", list(ciphertexts), context, deadline, read)

    def encrypt(
        self, key_tag: str, plaintexts: Sequence[bytes], context: str | None = None, deadline: Deadline | None = None
    ) -> list[str]:
        def read(chunk: list[str], data: dict[str, Any]) -> list[str]:
            replies = _as_list(_field(data, "ciphertext", "ciphertextList"), len(chunk))
            if not all(isinstance(r, str) and TOKEN_RE.fullmatch(r) for r in replies):
                raise KmsInvalidReplyError("encrypt reply holds an item that is not a token")
            return replies

        encoded = [base64.b64encode(p).decode() for p in plaintexts]
        return self._per_chunk(key_tag, "encrypt", "plaintext", encoded, context, deadline, read)

    def decrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[bytes]:
        def read(chunk: list[str], data: dict[str, Any]) -> list[bytes]:
            replies = _as_list(_field(data, "plaintext", "plaintextList"), len(chunk))
            try:
                return [base64.b64decode(r, validate=True) for r in replies]
            except (TypeError, ValueError):
                raise KmsInvalidReplyError("decrypt reply is not base64") from None

        return self._per_chunk(key_tag, "decrypt", "ciphertext", list(ciphertexts), context, deadline, read)

    def _per_chunk(
        self,
        key_tag: str,
        action: str,
        field: str,
        items: list[str],
        context: str | None,
        deadline: Deadline | None,
        read: Callable[[list[str], dict[str, Any]], list[T]],
    ) -> list[T]:
        out: list[T] = []
        for chunk in chunk_by_size(items, self.list_limit):
            body = {field: _one_or_many(chunk), **_ctx(context)}
            out.extend(self.request("POST", self.path(key_tag, action), body, deadline, lambda d, c=chunk: read(c, d)))
        return out

    def create_custom_key(
        self, key_tag: str, *, bits: int = 256, request_plain_key: bool = False, context: str | None = None
    ) -> DataKey:
        body = {"bits": bits, "requestPlainKey": request_plain_key, **_ctx(context)}
        data = self.request("POST", self.path(key_tag, "createCustomKey"), body, None, lambda d: d)
        ciphertext = data.get("ciphertext")
        if not isinstance(ciphertext, str) or not TOKEN_RE.fullmatch(ciphertext):
            raise KmsInvalidReplyError("createCustomKey reply holds no token")
        plain = data.get("plaintext")
        return DataKey(
            ciphertext=ciphertext,
            key_version=int(data.get("key_version") or TOKEN_RE.fullmatch(ciphertext).group(1)),  # type: ignore[union-attr]
            plaintext=base64.b64decode(plain) if plain else None,
        )

    # --- transport -----------------------------------------------------------------------------
    def path(self, key_tag: str, action: str) -> str:
        return f"/keys/{self.signature_version}/{quote(key_tag, safe='')}/{action}"

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        deadline: Deadline | None,
        read: Callable[[dict[str, Any]], R],
    ) -> R:
        """One logical call: retries, credential refresh, reply unwrapping, and ``read`` of ``data``."""
        deadline = deadline or Deadline(None)
        content = json.dumps(body).encode() if body is not None else None
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return read(self._send_once(method, path, content, deadline))
            except KmsAuthError:
                if refreshed:
                    raise
                refreshed = True
                self.credentials.get(refresh=True)  # the secret may have been rotated; try once more
                attempt -= 1
            except RetryableError as error:
                if attempt >= self.max_attempts:
                    raise
                pause = self._backoff(attempt, error.retry_after)
                if pause + min(self.timeout, 1.0) >= deadline.remaining():
                    raise
                self._count(retries=1)
                time.sleep(pause)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        jitter = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))
        return max(jitter, retry_after) if retry_after is not None else jitter

    def _send_once(self, method: str, path: str, content: bytes | None, deadline: Deadline) -> dict[str, Any]:
        if self.rate_limiter is not None and not self.rate_limiter.acquire(deadline):
            raise OutOfTimeError("no KMS request slot before the deadline")
        timeout = min(self.timeout, deadline.remaining())
        if timeout <= 0.05:
            raise OutOfTimeError("no time left for a KMS request")
        credentials = self.credentials.get()
        headers = signed_headers(method, path, int(time.time() * 1000), credentials, self.signature_version)  # type: ignore[arg-type]
        headers["Content-Type"] = "application/json"
        self._count(requests=1)
        try:
            response = self.http.request(
                method, self.endpoint + path, content=content, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException:
            raise KmsUnavailableError("KMS request timed out") from None
        except httpx.TransportError as exc:
            raise KmsUnavailableError(f"KMS transport error ({type(exc).__name__})") from None
        return _unwrap(response)

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)


def new_http_client(timeout: float, max_connections: int = 32) -> httpx.Client:
    """TLS verification stays on; ``trust_env=False`` keeps .netrc credentials and proxies out."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        trust_env=False,
    )


def _unwrap(response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    try:
        payload = response.json()
    except ValueError:
        payload = None
    code = _error_code(payload)
    if status in (401, 403):
        raise KmsAuthError(f"NCP rejected the credentials (HTTP {status}, code {code})")
    if status == 429:
        raise KmsThrottledError(f"NCP throttled the request (code {code})", retry_after=_retry_after(response))
    if status >= 500:
        raise KmsUnavailableError(f"NCP KMS answered HTTP {status} (code {code})")
    if status == 404:
        raise KmsRejectedError(f"key tag not found (HTTP 404, code {code})")
    if status >= 400:
        raise KmsRejectedError(f"NCP KMS refused the request (HTTP {status}, {code}: {_message(payload)})")
    if not isinstance(payload, dict):
        raise KmsInvalidReplyError(f"NCP KMS answered HTTP {status} with a body that is not JSON")
    if payload.get("code") != "SUCCESS" or not isinstance(payload.get("data"), dict):
        raise KmsRejectedError(f"NCP KMS answered {code}: {_message(payload)}")
    return payload["data"]


def _error_code(payload: Any) -> str:
    if isinstance(payload, dict):
        if isinstance(payload.get("error"), dict):
            return str(payload["error"].get("errorCode", "?"))
        return str(payload.get("code", "?"))
    return "?"


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        message = payload.get("msg") or (payload.get("error") or {}).get("message") or ""
        return str(message)[:160]
    return ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None


def _one_or_many(chunk: list[str]) -> str | list[str]:
    return chunk[0] if len(chunk) == 1 else chunk


def _ctx(context: str | None) -> dict[str, str]:
    return {"context": context} if context else {}


def _field(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in data:
            return data[name]
    raise KmsInvalidReplyError(f"reply has no {names[0]}")


def _as_list(value: Any, expected: int) -> list[Any]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) != expected:
        got = len(items) if isinstance(items, list) else type(value).__name__
        raise KmsInvalidReplyError(f"reply holds {got} items for {expected} sent")
    return items


def validate_re_encrypt_reply(sent: Sequence[str], replies: Sequence[Any]) -> None:
    """Same count, every item a token, no version lower than the one sent."""
    if len(replies) != len(sent):
        raise KmsInvalidReplyError(f"reply holds {len(replies)} items for {len(sent)} sent")
    for old, new in zip(sent, replies, strict=True):
        new_match = TOKEN_RE.fullmatch(new) if isinstance(new, str) else None
        if new_match is None:
            raise KmsInvalidReplyError("reply holds an item that is not an ncpkms token")
        old_version = int(TOKEN_RE.fullmatch(old).group(1))  # type: ignore[union-attr]
        if int(new_match.group(1)) < old_version:
            raise KmsInvalidReplyError("reply holds a token at a lower key version than sent")
