"""NCP KMS HTTP client for every API generation (``rewrap.ncp.generations``): auth, batching, retries,
validation and per-item outcomes.

One pooled ``httpx.Client`` is reused across invocations. Failures are mapped onto the rewrap error
hierarchy: 429, 5xx, timeouts, transport errors and replies that fail validation are retryable
(exponential backoff with full jitter, honouring ``Retry-After``, bounded by the caller's deadline);
other 4xx replies are permanent. A 401/403 re-reads the credentials once, since the secret may have
been rotated.

Items travel in request-sized batches (:meth:`NcpKmsClient.batches`). A request that fails fails its
items; a v3 batch that fails some items (its ``failures`` map) fails only those, and the others, which
the atomic batch left unprocessed, are sent again. When only some items failed the crypto methods
raise :class:`PartialBatchError` with every item's outcome.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import httpx

from rewrap.deadline import SYSTEM_CLOCK, Clock, Deadline, RateLimiter
from rewrap.errors import (
    ConfigError,
    CredentialsInvalidError,
    KmsAuthError,
    KmsInvalidReplyError,
    KmsKeyDisabledError,
    KmsRejectedError,
    KmsThrottledError,
    KmsTokenExpiredError,
    KmsUnavailableError,
    KmsVersionDisabledError,
    KmsWrongRegionError,
    OutOfTimeError,
    PartialBatchError,
    RetryableError,
    RewrapError,
)
from rewrap.ncp.generations import (
    CUSTOM_KEY,
    DECRYPT,
    DEFAULT_API,
    ENABLED_STATES,
    ENCRYPT,
    PATH_NOT_FOUND_CODE,
    RE_ENCRYPT,
    REQUEST_ID_HEADERS,
    STATE_REFUSAL_CODES,
    STATE_WORDS,
    Generation,
    ItemFailures,
    KeyInfo,
    Operation,
    ReplyInfo,
    check_endpoint_serves,
    generation,
    no_limit,
    refuses_arrays,
    wrong_region,
)
from rewrap.ncp.signing import OCAPI_AUTH_HEADER, Credentials, signed_headers, token_expiry
from rewrap.tokens import chunk_by_size, known_version, token_match, token_version

VERSION_PROBE = b"rewrap-version-probe"
# A token this close to its exp claim makes the client read the secret again (at most every
# TOKEN_REREAD_SECONDS per key), so a rotated token is picked up before the old one lapses.
TOKEN_REFRESH_SECONDS = 120.0
TOKEN_REREAD_SECONDS = 15.0
# Key and version states learnt from NCP are trusted this long (a disabled key stops every call meanwhile).
STATE_CACHE_SECONDS = 30.0
# A refused list holding more versions than this is not explained version by version (v3: one GET each).
MAX_VERSIONS_EXPLAINED = 8

log = logging.getLogger(__name__)

T = TypeVar("T")


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
        api: str = DEFAULT_API,
        signature_version: str = "v2",
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        max_attempts: int = 6,
        rate_limiter: RateLimiter | None = None,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        list_limit: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        try:
            self.generation: Generation = generation(api)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if signature_version not in self.generation.signatures:
            raise ConfigError(f"NCP KMS API {api} takes signature {' or '.join(self.generation.signatures)}")
        mismatch = check_endpoint_serves(api, endpoint)
        if mismatch:
            raise ConfigError(mismatch)
        self.endpoint = endpoint.rstrip("/")
        self.credentials = credentials
        self.signature_version = signature_version
        self.timeout = timeout
        self.http = http or new_http_client(timeout)
        self.max_attempts = max_attempts
        self.rate_limiter = rate_limiter
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.list_limit = list_limit or self.generation.list_limit_bytes
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()
        # What this endpoint was found to speak (per container: the client lives as long as it does).
        self._segments: dict[str, str] = {}  # operation → the path spelling that answered
        self._single_items = False  # the endpoint refused an array body: one item per request
        self._key_states: dict[str, tuple[float, KeyInfo | None, dict[int, str]]] = {}
        self._disabled_keys: dict[str, tuple[float, KmsKeyDisabledError]] = {}
        self._token_reread: dict[str, float] = {}
        self._probed: dict[str, float] = {}  # key tag → until when its encrypt probe counts as passed

    def check_configuration(self) -> None:
        """Configuration mistakes that the secret reveals, raised as permanent :class:`ConfigError` before
        any object is read. A secret that cannot be read now is left for the first request to report."""
        try:
            credentials = self.credentials.get()
        except RewrapError:
            return
        if credentials.can_sign:
            if self.signature_version == "v1" and not credentials.api_key:
                raise ConfigError("NCP_KMS_SIGNATURE_VERSION=v1 needs apiKey in the NCP secret (or use v2)")
        elif credentials.has_tokens and not self.generation.token_auth:
            raise ConfigError(
                f"the NCP secret holds only ocapi tokens, and NCP_KMS_API={self.generation.name} takes no token "
                "auth; add accessKey and secretKey, or use NCP_KMS_API=2.0 or v3"
            )

    # --- crypto operations -------------------------------------------------------------------
    def batches(self, items: Sequence[str]) -> Iterator[list[str]]:
        """Consecutive groups of ``items`` that fit one request of this generation."""
        step = 1 if self._single_items else self.generation.max_items
        for chunk in chunk_by_size(items, no_limit(self.list_limit)):
            yield from (chunk[i : i + step] for i in range(0, len(chunk), step)) if step else (chunk,)

    def re_encrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[str]:
        """New tokens under the key's newest version, in input order, each validated.
        Raises :class:`PartialBatchError` when only some items failed."""
        return _all_or_raise(self._each(RE_ENCRYPT, key_tag, ciphertexts, context, deadline, _checked_re_encrypt))

    def encrypt(
        self, key_tag: str, plaintexts: Sequence[bytes], context: str | None = None, deadline: Deadline | None = None
    ) -> list[str]:
        encoded = [base64.b64encode(p).decode() for p in plaintexts]
        return _all_or_raise(self._each(ENCRYPT, key_tag, encoded, context, deadline, _checked_tokens))

    def decrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[bytes]:
        return _all_or_raise(self._each(DECRYPT, key_tag, ciphertexts, context, deadline, _checked_plaintexts))

    def create_custom_key(
        self, key_tag: str, *, bits: int = 256, request_plain_key: bool = False, context: str | None = None
    ) -> DataKey:
        self._check_region(key_tag)
        body = {"bits": bits, "requestPlainKey": request_plain_key, **({"context": context} if context else {})}
        data = self._exchange(
            "POST", functools.partial(self._path, CUSTOM_KEY, key_tag, False), body, None, key_tag=key_tag
        )
        ciphertext = data.get("ciphertext")
        match = token_match(ciphertext) if isinstance(ciphertext, str) else None
        if match is None:
            raise KmsInvalidReplyError("custom key reply holds no token")
        version = next((data[f] for f in self.generation.custom_key_version_fields if data.get(f)), None)
        plain = data.get("plaintext")
        return DataKey(
            ciphertext=ciphertext,
            key_version=int(version or match.group(1)),
            plaintext=base64.b64decode(plain) if plain else None,
        )

    # --- key versions -------------------------------------------------------------------------
    def key_info(self, key_tag: str, deadline: Deadline | None = None) -> KeyInfo | None:
        """The key's info where the generation offers it to these credentials (2.0, v3 with a signature);
        None otherwise."""
        if not self.generation.key_info or not self.credentials.get().can_sign:
            return None
        self._check_region(key_tag)
        path = self.generation.key_path(key_tag, signature=self.signature_version)
        data = self._exchange("GET", lambda _token: path, None, deadline, key_tag=key_tag)
        return self.generation.key_info_from(key_tag, data)

    def newest_version(self, key_tag: str, deadline: Deadline | None = None) -> int:
        """The key's current version: from key info when available, else by encrypting a fixed probe.
        Raises :class:`KmsKeyDisabledError` when the key is not enabled (a sweep stops there)."""
        info = self.key_info(key_tag, deadline)
        if info is not None:
            self._remember_key(key_tag, info)
            return info.current_version
        return token_version(self._probe(key_tag, deadline))

    def version_states(
        self, key_tag: str, versions: set[int] | None = None, deadline: Deadline | None = None
    ) -> dict[int, str] | None:
        """Version → state (``ENABLE(D)``/``DISABLE(D)``) where the generation tells it to these
        credentials (2.0: all versions; v3: the ``versions`` asked for); None where it cannot."""
        gen = self.generation
        if gen.version_info is None or not self.credentials.get().can_sign:
            return None
        self._check_region(key_tag)
        if gen.version_info == "list":
            data = self._exchange("GET", lambda _t: gen.versions_path(key_tag), None, deadline, key_tag=key_tag)
            return gen.version_states_from(data)
        states: dict[int, str] = {}
        for version in sorted(versions or ()):
            path = gen.versions_path(key_tag, version)
            data = self._exchange("GET", _always(path), None, deadline, key_tag=key_tag)
            states.update(gen.version_states_from(data))
        return states

    def explain_refusal(
        self, key_tag: str, versions: Sequence[int], refusal: RewrapError, deadline: Deadline | None = None
    ) -> dict[int, RewrapError]:
        """What the key's state says about a refused request holding tokens of ``versions``: raises
        :class:`KmsKeyDisabledError` when the key is not enabled; otherwise the error for each of those
        versions that is disabled (empty: the state explains nothing, an item was refused itself).
        2.0/v3 ask key and version info; 1.0 reads the refusal's code and probes the key with an encrypt."""
        distinct = set(versions)
        try:
            if self.generation.key_info and self.credentials.get().can_sign:
                states = self._states(key_tag, distinct, deadline)
            elif refusal.error_code in STATE_REFUSAL_CODES:
                if self._probed.get(key_tag, 0.0) < self.clock.now():
                    self._probe(key_tag, deadline)  # raises when the key itself is not enabled
                    self._probed[key_tag] = self.clock.now() + STATE_CACHE_SECONDS
                states = {next(iter(distinct)): "DISABLED"} if len(distinct) == 1 else {}
            else:
                return {}
        except (KmsKeyDisabledError, OutOfTimeError):
            raise
        except RewrapError as error:  # no explanation; the refusal stands as it is
            log.info("could not read the state of NCP key %s…: %s", key_tag[:12], error.reason)
            return {}
        return {
            version: _version_disabled(version, refusal)
            for version, state in states.items()
            if version in distinct and state not in ENABLED_STATES
        }

    def _states(self, key_tag: str, versions: set[int], deadline: Deadline | None) -> dict[int, str]:
        now = self.clock.now()
        cached = self._key_states.get(key_tag)
        if cached is not None and cached[0] > now and versions <= set(cached[2]):
            return cached[2]
        info = self.key_info(key_tag, deadline)
        if info is not None:
            self._remember_key(key_tag, info)
        asked = versions if len(versions) <= MAX_VERSIONS_EXPLAINED else set()
        states = {**(cached[2] if cached else {}), **(self.version_states(key_tag, asked, deadline) or {})}
        self._key_states[key_tag] = (now + STATE_CACHE_SECONDS, info, states)
        return states

    def _probe(self, key_tag: str, deadline: Deadline | None) -> str:
        """Encrypt a fixed probe: a token at the key's current version. A refusal for the key's state
        means the key is not enabled (1.0 and token auth cannot ask for key info)."""
        try:
            (token,) = self.encrypt(key_tag, [VERSION_PROBE], deadline=deadline)
        except KmsRejectedError as error:
            if error.error_code not in STATE_REFUSAL_CODES or isinstance(error, KmsKeyDisabledError):
                raise
            disabled = KmsKeyDisabledError(
                f"NCP key {key_tag[:12]}… is disabled or pending deletion (revoked): it refuses even to encrypt "
                f"({error}); enable it (or cancel its deletion) to re-wrap its objects"
            )
            self._disabled_keys[key_tag] = (self.clock.now() + STATE_CACHE_SECONDS, disabled)
            raise disabled from None
        return token

    def _remember_key(self, key_tag: str, info: KeyInfo) -> None:
        if info.status is None or info.status in ENABLED_STATES:
            self._disabled_keys.pop(key_tag, None)
            return
        state = STATE_WORDS.get(info.status, info.status.lower())
        disabled = KmsKeyDisabledError(
            f"NCP key {key_tag[:12]}… is {state} (key info status {info.status}); nothing of this key can be "
            "re-wrapped until it is enabled again"
        )
        self._disabled_keys[key_tag] = (self.clock.now() + STATE_CACHE_SECONDS, disabled)
        raise disabled

    def _check_key_enabled(self, key_tag: str) -> None:
        known = self._disabled_keys.get(key_tag)
        if known is not None:
            if known[0] > self.clock.now():
                raise known[1]
            self._disabled_keys.pop(key_tag, None)

    # --- batching ------------------------------------------------------------------------------
    def _each(
        self,
        operation: Operation,
        key_tag: str,
        items: Sequence[str],
        context: str | None,
        deadline: Deadline | None,
        check: Callable[[list[str], list[Any]], list[T]],
    ) -> list[T | RewrapError]:
        """Per item, in input order: its result or the error it failed with. A request-level failure
        ends the call: the items not yet answered fail with it."""
        if not items:
            return []
        self._check_region(key_tag)
        self._check_key_enabled(key_tag)
        out: list[T | RewrapError] = []
        for chunk in self.batches(items):
            try:
                answered = self._send_chunk(operation, key_tag, chunk, context, deadline, check)
                out.extend(answered)
            except RewrapError as error:
                if len(chunk) == 1 and len(items) > 1 and _refuses_item(error):
                    out.append(error)  # one item per request: this refusal is the item's own
                    continue
                out.extend([error] * (len(items) - len(out)))
                break
        return out

    def _send_chunk(
        self,
        operation: Operation,
        key_tag: str,
        chunk: list[str],
        context: str | None,
        deadline: Deadline | None,
        check: Callable[[list[str], list[Any]], list[T]],
    ) -> list[T | RewrapError]:
        gen = self.generation
        if not gen.uses_batch(len(chunk)):
            body = gen.body(operation, chunk, context, batch=False)
            read = functools.partial(self._read, operation, chunk, check, False)
            try:
                return list(self._spelled_exchange(operation, key_tag, body, deadline, read))
            except KmsRejectedError as error:
                if len(chunk) == 1 or gen.batch_actions or not refuses_arrays(error):
                    raise
                if not self._single_items:
                    self._single_items = True
                    log.warning(
                        "NCP KMS at %s refused an array body (%s); sending one item per request from now on",
                        self.endpoint,
                        error,
                    )
                return [
                    outcome
                    for item in chunk
                    for outcome in self._alone(operation, key_tag, item, context, deadline, check)
                ]
        # A v3 batch is atomic: on failure it names the failed items only, the rest go again.
        results: list[T | RewrapError | None] = [None] * len(chunk)
        pending = list(range(len(chunk)))
        path_for = functools.partial(self._path, operation, key_tag, True)
        while pending:
            sent = [chunk[i] for i in pending]
            read = functools.partial(self._read, operation, sent, check, True)
            try:
                replies = self._exchange(
                    "POST",
                    path_for,
                    gen.body(operation, sent, context, batch=True),
                    deadline,
                    read,
                    batch=True,
                    key_tag=key_tag,
                )
            except ItemFailures as failures:
                failed = {pending[i]: error for i, error in failures.errors.items() if i < len(pending)}
                if not failed:
                    raise KmsInvalidReplyError("batch failures name no item that was sent") from None
                for index, failure in failed.items():
                    results[index] = failure
                pending = [i for i in pending if i not in failed]
                continue
            except RewrapError as error:
                if len(pending) == len(chunk):
                    raise
                replies = [error] * len(pending)
            for index, reply in zip(pending, replies, strict=True):
                results[index] = reply
            pending = []
        return results  # type: ignore[return-value]  # every index was filled

    def _alone(
        self,
        operation: Operation,
        key_tag: str,
        item: str,
        context: str | None,
        deadline: Deadline | None,
        check: Callable[[list[str], list[Any]], list[T]],
    ) -> list[T | RewrapError]:
        try:
            return self._send_chunk(operation, key_tag, [item], context, deadline, check)
        except RewrapError as error:
            if not _refuses_item(error):
                raise
            return [error]

    def _spelled_exchange(
        self,
        operation: Operation,
        key_tag: str,
        body: dict[str, Any],
        deadline: Deadline | None,
        read: Callable[[dict[str, Any]], Any],
    ) -> Any:
        """A one-item/array request on the path spelling this endpoint answers. NCP's pages spell some
        actions two ways; a "Not Found" (404, gateway code 300) on one is tried once with the other,
        and the one that answers is kept (and logged once)."""
        spellings = self.generation.spellings(operation.name)
        current = self._segments.get(operation.name, spellings[0])

        def send(segment: str) -> Any:
            path_for = functools.partial(self._path, operation, key_tag, False, segment=segment)
            return self._exchange("POST", path_for, body, deadline, read, key_tag=key_tag)

        try:
            return send(current)
        except KmsRejectedError as error:
            others = [s for s in spellings if s != current]
            if not others or error.http_status != 404 or error.error_code != PATH_NOT_FOUND_CODE:
                raise
            first_error = error
        try:
            result = send(others[0])
        except KmsRejectedError as error:
            if error.http_status == 404 and error.error_code == PATH_NOT_FOUND_CODE:
                raise first_error from None  # neither spelling: the key tag is unknown
            self._learn_spelling(operation, current, others[0])
            raise
        self._learn_spelling(operation, current, others[0])
        return result

    def _learn_spelling(self, operation: Operation, tried: str, answered: str) -> None:
        if self._segments.get(operation.name) != answered:
            self._segments[operation.name] = answered
            log.warning(
                "NCP KMS at %s answers %s on .../%s, not .../%s; using that spelling from now on",
                self.endpoint,
                operation.name,
                answered,
                tried,
            )

    def _read(
        self,
        operation: Operation,
        sent: list[str],
        check: Callable[[list[str], list[Any]], list[T]],
        batch: bool,
        data: dict[str, Any],
    ) -> list[T]:
        return check(sent, self.generation.items(operation, data, len(sent), batch=batch))

    def _path(self, operation: Operation, key_tag: str, batch: bool, token: bool, *, segment: str | None = None) -> str:
        return self.generation.path(
            operation.name, key_tag, signature=self.signature_version, token=token, batch=batch, segment=segment
        )

    def _check_region(self, key_tag: str) -> None:
        error = wrong_region(key_tag, self.endpoint)
        if error is not None:
            raise error

    # --- transport -----------------------------------------------------------------------------
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
        except httpx.TimeoutException:
            raise KmsUnavailableError("KMS request timed out") from None
        except httpx.TransportError as exc:
            raise KmsUnavailableError(f"KMS transport error ({type(exc).__name__})") from None
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


def _refuses_item(error: RewrapError) -> bool:
    """A refusal of one item's own (not of the key, the region or the credentials)."""
    return isinstance(error, KmsRejectedError) and not isinstance(error, KmsKeyDisabledError | KmsWrongRegionError)


def _version_disabled(version: int, refusal: RewrapError) -> KmsVersionDisabledError:
    error = KmsVersionDisabledError(
        f"v{version} is disabled; re-enable it to re-wrap these objects (they cannot be decrypted until then; "
        f"NCP answered {refusal})"
    )
    error.http_status, error.error_code = refusal.http_status, refusal.error_code
    return error


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None


def _all_or_raise(results: list[T | RewrapError]) -> list[T]:
    """The results when every item succeeded; the error when one request-level error failed them all;
    otherwise a PartialBatchError with every item's outcome."""
    errors = [r for r in results if isinstance(r, RewrapError)]
    if not errors:
        return results  # type: ignore[return-value]  # every index was filled
    if len(errors) == len(results) and all(e is errors[0] for e in errors):
        raise errors[0]
    raise PartialBatchError(list(results))


def _checked_re_encrypt(sent: list[str], replies: list[Any]) -> list[str]:
    validate_re_encrypt_reply(sent, replies)
    return replies


def _checked_tokens(sent: list[str], replies: list[Any]) -> list[str]:
    if not all(isinstance(r, str) and token_match(r) for r in replies):
        raise KmsInvalidReplyError("encrypt reply holds an item that is not a token")
    return replies


def _checked_plaintexts(sent: list[str], replies: list[Any]) -> list[bytes]:
    try:
        return [base64.b64decode(r, validate=True) for r in replies]
    except (TypeError, ValueError):
        raise KmsInvalidReplyError("decrypt reply is not base64") from None


def validate_re_encrypt_reply(sent: Sequence[str], replies: Sequence[Any]) -> None:
    """Same count, every item a token, no version lower than the one sent."""
    if len(replies) != len(sent):
        raise KmsInvalidReplyError(f"reply holds {len(replies)} items for {len(sent)} sent")
    for old, new in zip(sent, replies, strict=True):
        new_match = token_match(new) if isinstance(new, str) else None
        if new_match is None:
            raise KmsInvalidReplyError("reply holds an item that is not an ncpkms token")
        if int(new_match.group(1)) < known_version(old):  # sent tokens were validated when found
            raise KmsInvalidReplyError("reply holds a token at a lower key version than sent")


def _always(path: str) -> Callable[[Any], str]:
    """A path builder that ignores the auth token (the path does not depend on it)."""
    return lambda _token: path
