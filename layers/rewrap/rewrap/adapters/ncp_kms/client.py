"""NCP KMS client for every API generation (``rewrap.ncp.generations``): the crypto operations and
what the key's state says, on top of its parts: ``transport`` (auth, retries, credential refresh),
``batching`` (request-sized batches, per-item outcomes, path spellings) and ``replies`` (each reply's
validation). When only some items failed the crypto methods raise :class:`PartialBatchError` with
every item's outcome.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from rewrap.adapters.ncp_kms.batching import KmsBatches
from rewrap.adapters.ncp_kms.replies import all_or_raise, checked_plaintexts, checked_re_encrypt, checked_tokens
from rewrap.adapters.ncp_kms.transport import CredentialsSource
from rewrap.core.tokens import token_match, token_version
from rewrap.deadline import SYSTEM_CLOCK, Clock, Deadline, RateLimiter
from rewrap.errors import (
    ConfigError,
    KmsInvalidReplyError,
    KmsKeyDisabledError,
    KmsRejectedError,
    KmsVersionDisabledError,
    OutOfTimeError,
    RewrapError,
)
from rewrap.ncp.generations import (
    CUSTOM_KEY,
    DECRYPT,
    DEFAULT_API,
    ENABLED_STATES,
    ENCRYPT,
    RE_ENCRYPT,
    STATE_WORDS,
    Generation,
    KeyInfo,
    generation,
)
from rewrap.ncp.regions import check_endpoint_serves
from rewrap.ncp.reply_errors import STATE_REFUSAL_CODES

VERSION_PROBE = b"rewrap-version-probe"
# Key and version states learnt from NCP are trusted this long (a disabled key stops every call meanwhile).
STATE_CACHE_SECONDS = 30.0
# A refused list holding more versions than this is not explained version by version (v3: one GET each).
MAX_VERSIONS_EXPLAINED = 8

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class DataKey:
    ciphertext: str
    key_version: int
    plaintext: bytes | None = None

    def __repr__(self) -> str:
        return f"DataKey(key_version={self.key_version})"


class NcpKmsClient(KmsBatches):
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
            gen: Generation = generation(api)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if signature_version not in gen.signatures:
            raise ConfigError(f"NCP KMS API {api} takes signature {' or '.join(gen.signatures)}")
        mismatch = check_endpoint_serves(api, endpoint)
        if mismatch:
            raise ConfigError(mismatch)
        super().__init__(
            gen,
            endpoint.rstrip("/"),
            credentials,
            list_limit=list_limit,
            signature_version=signature_version,
            http=http,
            timeout=timeout,
            max_attempts=max_attempts,
            rate_limiter=rate_limiter,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            clock=clock,
        )
        self._key_states: dict[str, tuple[float, KeyInfo | None, dict[int, str]]] = {}
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
    def re_encrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[str]:
        """New tokens under the key's newest version, in input order, each validated.
        Raises :class:`PartialBatchError` when only some items failed."""
        return all_or_raise(self._each(RE_ENCRYPT, key_tag, ciphertexts, context, deadline, checked_re_encrypt))

    def encrypt(
        self, key_tag: str, plaintexts: Sequence[bytes], context: str | None = None, deadline: Deadline | None = None
    ) -> list[str]:
        encoded = [base64.b64encode(p).decode() for p in plaintexts]
        return all_or_raise(self._each(ENCRYPT, key_tag, encoded, context, deadline, checked_tokens))

    def decrypt(
        self, key_tag: str, ciphertexts: Sequence[str], context: str | None = None, deadline: Deadline | None = None
    ) -> list[bytes]:
        return all_or_raise(self._each(DECRYPT, key_tag, ciphertexts, context, deadline, checked_plaintexts))

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
            version: _version_disabled(key_tag, version, refusal)
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
            raise disabled from error
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


def _version_disabled(key_tag: str, version: int, refusal: RewrapError) -> KmsVersionDisabledError:
    error = KmsVersionDisabledError(
        f"re-enable v{version} to rotate it (key {key_tag[:12]}…: v{version} is disabled, so its tokens cannot be "
        f"decrypted or re-wrapped until then; NCP answered {refusal})"
    )
    error.http_status, error.error_code = refusal.http_status, refusal.error_code
    return error


def _always(path: str) -> Callable[[Any], str]:
    """A path builder that ignores the auth token (the path does not depend on it)."""
    return lambda _token: path
