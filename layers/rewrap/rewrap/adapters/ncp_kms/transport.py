"""The NCP KMS client's transport: one logical call with auth, retries and credential refresh.

One pooled ``httpx.Client`` is reused across invocations. Failures are mapped onto the rewrap error
hierarchy: 429, 5xx, timeouts, transport errors and replies that fail validation are retryable
(exponential backoff with full jitter, honouring ``Retry-After``, bounded by the caller's deadline);
other 4xx replies are permanent. A 401/403 re-reads the credentials once, since the secret may have
been rotated.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from rewrap.deadline import Clock, Deadline, RateLimiter
from rewrap.errors import (
    CredentialsInvalidError,
    KmsAuthError,
    KmsThrottledError,
    KmsTokenExpiredError,
    KmsUnavailableError,
    OutOfTimeError,
    RetryableError,
)
from rewrap.ncp.generations import Generation
from rewrap.ncp.regions import wrong_region
from rewrap.ncp.reply_errors import REQUEST_ID_HEADERS, ReplyInfo
from rewrap.ncp.signing import OCAPI_AUTH_HEADER, Credentials, signed_headers, token_expiry

# A token this close to its exp claim makes the client read the secret again (at most every
# TOKEN_REREAD_SECONDS per key), so a rotated token is picked up before the old one lapses.
TOKEN_REFRESH_SECONDS = 120.0
TOKEN_REREAD_SECONDS = 15.0


class CredentialsSource(Protocol):
    def get(self, *, refresh: bool = False) -> Credentials: ...


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    items: int = 0

    def snapshot(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries, "items": self.items}


class KmsTransport:
    """Requests to one NCP KMS endpoint in one API generation, signed or token-authenticated."""

    def __init__(
        self,
        generation: Generation,
        endpoint: str,
        credentials: CredentialsSource,
        *,
        signature_version: str,
        http: httpx.Client | None,
        timeout: float,
        max_attempts: int,
        rate_limiter: RateLimiter | None,
        backoff_base: float,
        backoff_cap: float,
        clock: Clock,
    ) -> None:
        self.generation = generation
        self.endpoint = endpoint
        self.credentials = credentials
        self.signature_version = signature_version
        self.timeout = timeout
        self.http = http or new_http_client(timeout)
        self.max_attempts = max_attempts
        self.rate_limiter = rate_limiter
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()
        self._token_reread: dict[str, float] = {}

    def _check_region(self, key_tag: str) -> None:
        error = wrong_region(key_tag, self.endpoint)
        if error is not None:
            raise error

    def _exchange(
        self,
        method: str,
        path_for: Callable[[bool], str],
        body: dict[str, Any] | None,
        deadline: Deadline | None,
        read: Callable[[dict[str, Any]], Any] = lambda data: data,
        *,
        batch: bool = False,
        key_tag: str = "",
    ) -> Any:
        """One logical call: retries, credential refresh, unwrapping and ``read`` (whose
        ``KmsInvalidReplyError`` is retried like a failed request). ``path_for(token_auth)``."""
        deadline = deadline or Deadline(None)
        content = json.dumps(body).encode() if body is not None else None
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return read(self._send_once(method, path_for, content, deadline, batch, key_tag))
            except KmsAuthError:
                if refreshed:
                    raise
                refreshed = True
                self.credentials.get(refresh=True)  # the secret may have been rotated; try once more
                attempt -= 1
            except RetryableError as error:
                if isinstance(error, KmsThrottledError) and self.rate_limiter is not None:
                    self.rate_limiter.throttled()
                if attempt >= self.max_attempts:
                    raise
                pause = self._backoff(attempt, error.retry_after)
                if pause + min(self.timeout, 1.0) >= deadline.remaining():
                    raise
                self._count(retries=1)
                self.clock.sleep(pause)

    def call(self, method: str, path: str, body: dict[str, Any] | None, *, key_tag: str) -> Any:
        """One logical call to a path that does not depend on the auth (key administration)."""
        return self._exchange(method, lambda _token: path, body, None, key_tag=key_tag)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        jitter = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))
        return max(jitter, retry_after) if retry_after is not None else jitter

    def _send_once(
        self,
        method: str,
        path_for: Callable[[bool], str],
        content: bytes | None,
        deadline: Deadline,
        batch: bool,
        key_tag: str,
    ) -> dict[str, Any]:
        if self.rate_limiter is not None and not self.rate_limiter.acquire(deadline):
            raise OutOfTimeError("no KMS request slot before the deadline")
        timeout = min(self.timeout, deadline.remaining())
        if timeout <= 0.05:
            raise OutOfTimeError("no time left for a KMS request")
        path, headers = self._authenticated(method, path_for, key_tag)
        headers["Content-Type"] = "application/json"
        self._count(requests=1)
        try:
            response = self.http.request(
                method, self.endpoint + path, content=content, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException as exc:
            raise KmsUnavailableError("KMS request timed out") from exc
        except httpx.TransportError as exc:
            raise KmsUnavailableError(f"KMS transport error ({type(exc).__name__})") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code < 400:
            return self.generation.unwrap(response.status_code, payload)
        return self.generation.unwrap(
            response.status_code, payload, batch=batch, reply=_reply_info(response, self.clock.wall())
        )

    def _authenticated(self, method: str, path_for: Callable[[bool], str], key_tag: str) -> tuple[str, dict[str, str]]:
        """The path and auth headers: a signature when the secret has a key pair, else the key's ocapi token."""
        credentials = self.credentials.get()
        if credentials.can_sign:
            path = path_for(False)
            timestamp = int(self.clock.wall() * 1000)
            return path, signed_headers(method, path, timestamp, credentials, self.signature_version)  # type: ignore[arg-type]  # v1/v2, checked in __init__
        if credentials.has_tokens and self.generation.token_auth:
            return path_for(True), {OCAPI_AUTH_HEADER: self._fresh_token(credentials, key_tag)}
        raise CredentialsInvalidError(f"NCP KMS API {self.generation.name} needs accessKey and secretKey in the secret")

    def _fresh_token(self, credentials: Credentials, key_tag: str) -> str:
        """The key's ocapi token; one near its ``exp`` makes the secret be read again first."""
        token = credentials.token_for(key_tag)
        expiry = token_expiry(token) if token else None
        now = self.clock.wall()
        if token is None or (expiry is not None and expiry - now < TOKEN_REFRESH_SECONDS):
            last = self._token_reread.get(key_tag, 0.0)
            if token is None or self.clock.now() - last >= TOKEN_REREAD_SECONDS or expiry <= now:  # type: ignore[operator]  # token set: expiry known
                self._token_reread[key_tag] = self.clock.now()
                token = self.credentials.get(refresh=True).token_for(key_tag)
                expiry = token_expiry(token) if token else None
        if token is None:
            raise CredentialsInvalidError(
                f"the NCP secret holds no ocapi token for key {key_tag[:12]}… (ocapiTokens or ocapiToken)"
            )
        if expiry is not None and expiry <= now:
            when = datetime.fromtimestamp(expiry, UTC).isoformat(timespec="seconds")
            raise KmsTokenExpiredError(
                f"the ocapi token for key {key_tag[:12]}… expired at {when}; put a fresh token in the NCP secret"
            )
        return token

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


def _reply_info(response: httpx.Response, wall_now: float) -> ReplyInfo:
    request_id = next((response.headers[h] for h in REQUEST_ID_HEADERS if response.headers.get(h)), None)
    skew = None
    if response.status_code in (401, 403) and response.headers.get("Date"):
        try:
            skew = parsedate_to_datetime(response.headers["Date"]).timestamp() - wall_now
        except (TypeError, ValueError):
            skew = None
    return ReplyInfo(request_id=request_id, retry_after=_retry_after(response), clock_skew_seconds=skew)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None
