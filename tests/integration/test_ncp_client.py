"""The real NCP KMS client against the emulator over loopback: batching, signing, retries, reply
validation, credential refresh, deadlines and rate limits, and credentials from Secrets Manager."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.config import Config

from rewrap.adapters.ncp_kms.client import NcpKmsClient
from rewrap.adapters.ncp_kms.replies import validate_re_encrypt_reply
from rewrap.adapters.ncp_kms.transport import ClientStats
from rewrap.adapters.secrets_manager import SecretCredentials
from rewrap.app.runtime import Runtime
from rewrap.core.tokens import token_version
from rewrap.deadline import AdaptiveRateLimiter, Deadline, RateLimiter
from rewrap.errors import (
    CredentialsInvalidError,
    CredentialsUnavailableError,
    KmsAuthError,
    KmsInvalidReplyError,
    KmsRejectedError,
    KmsUnavailableError,
    OutOfTimeError,
    RetryableError,
)
from rewrap.ncp.signing import Credentials
from rewrap_local.stack import ACCESS_KEY, API_KEY, FAKE_AWS, SECRET_KEY, LocalStack, provision
from tests.clocks import ManualClock

INVALID_REPLIES = ["short-reply", "extra-item", "bad-pattern", "lower-version"]


class CountingSource:
    """Wraps a credentials source and counts forced refreshes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.refreshes = 0

    def get(self, *, refresh: bool = False) -> Credentials:
        if refresh:
            self.refreshes += 1
        return self.inner.get(refresh=refresh)


class Recorder:
    """An httpx client that remembers every request it sends."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.http = httpx.Client(event_hooks={"request": [self.requests.append]}, trust_env=False)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


ClientFactory = Callable[..., NcpKmsClient]


@pytest.fixture(scope="module")
def shared(servers: tuple[str, Any]) -> Iterator[tuple[LocalStack, Runtime]]:
    """One provisioned stack and wired runtime for the module (provisioning per test costs seconds);
    every test still gets its own key, so no test sees another's key versions."""
    moto_url, emulator = servers
    stack = provision(moto_url, emulator, bucket=f"rewrap-ncp-client-{uuid.uuid4().hex[:8]}")
    parameters.clear_caches()
    runtime = stack.runtime()
    yield stack, runtime
    runtime.kms.http.close()


@pytest.fixture
def kms(shared: tuple[LocalStack, Runtime]) -> Iterator[LocalStack]:
    """The shared stack with a fresh key, no faults and zeroed emulator counters."""
    base, _ = shared
    emulator = base.kms
    emulator.clear_faults()
    emulator.set_latency(0)
    emulator.add_credentials(ACCESS_KEY, SECRET_KEY, API_KEY)
    stack = dataclasses.replace(base, key_tag=emulator.create_key())
    emulator.stats.reset()
    yield stack
    emulator.clear_faults()
    emulator.add_credentials(ACCESS_KEY, SECRET_KEY, API_KEY)


@pytest.fixture
def wired(shared: tuple[LocalStack, Runtime], kms: LocalStack) -> NcpKmsClient:
    """The runtime's real client (credentials from moto Secrets Manager), counters zeroed."""
    client = shared[1].kms
    client.stats = ClientStats()
    return client


@pytest.fixture(scope="module")
def secrets_client(shared: tuple[LocalStack, Runtime]) -> Any:
    return shared[0].client("secretsmanager")


@pytest.fixture
def make_client(kms: LocalStack, wired: NcpKmsClient) -> Iterator[ClientFactory]:
    made: list[NcpKmsClient] = []

    def make(**options: Any) -> NcpKmsClient:
        options.setdefault("backoff_base", 0.01)
        credentials = options.pop("credentials", wired.credentials)
        client = NcpKmsClient(kms.kms.url, credentials, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.http.close()


def old_tokens(stack: LocalStack, plaintexts: list[bytes], rotations: int = 1) -> list[str]:
    """Tokens made at the key's current version, after which the key is rotated."""
    tokens = [stack.kms.encrypt(stack.key_tag, p) for p in plaintexts]
    for _ in range(rotations):
        stack.kms.rotate(stack.key_tag)
    return tokens


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- round trips -----------------------------------------------------------------------------------
def test_round_trip_string_form(kms: LocalStack, make_client: ClientFactory) -> None:
    recorder = Recorder()
    client = make_client(http=recorder.http)

    [token] = client.encrypt(kms.key_tag, [b"s3cr3t"])
    assert kms.kms.rotate(kms.key_tag) == 2
    [new] = client.re_encrypt(kms.key_tag, [token])
    [plain_old, plain_new] = client.decrypt(kms.key_tag, [token]) + client.decrypt(kms.key_tag, [new])

    assert (token_version(token), token_version(new)) == (1, 2)
    assert plain_old == plain_new == b"s3cr3t"
    assert kms.kms.decrypt(kms.key_tag, new) == b"s3cr3t"
    # one item travels as a string, not as a one-element list
    assert recorder.bodies() == [
        {"plaintext": b64(b"s3cr3t")},
        {"ciphertext": token},
        {"ciphertext": token},
        {"ciphertext": new},
    ]
    assert [r.url.path for r in recorder.requests] == [
        f"/keys/v2/{kms.key_tag}/{action}" for action in ("encrypt", "reencrypt", "decrypt", "decrypt")
    ]
    assert client.stats.requests == 4
    assert client.stats.retries == 0


def test_round_trip_list_form_with_the_wired_runtime(stack: LocalStack, runtime: Runtime) -> None:
    client = runtime.kms
    plain = [b"one", b"\x00\xff binary", "유니코드".encode(), b"x" * 1000]
    stack.kms.stats.reset()

    tokens = client.encrypt(stack.key_tag, plain)
    stack.kms.rotate(stack.key_tag)
    stack.kms.rotate(stack.key_tag)
    new = client.re_encrypt(stack.key_tag, tokens)

    assert [token_version(t) for t in tokens] == [1, 1, 1, 1]
    assert [token_version(t) for t in new] == [3, 3, 3, 3]
    assert client.decrypt(stack.key_tag, new) == plain
    assert stack.kms.stats.requests == {"encrypt": 1, "re-encrypt": 1, "decrypt": 1}
    assert stack.kms.stats.items == {"encrypt": 4, "re-encrypt": 4, "decrypt": 4}


def test_re_encrypt_of_nothing_sends_nothing(kms: LocalStack, wired: NcpKmsClient) -> None:
    assert wired.re_encrypt(kms.key_tag, []) == []
    assert sum(kms.kms.stats.requests.values()) == 0


def test_create_custom_key(kms: LocalStack, wired: NcpKmsClient) -> None:
    key = wired.create_custom_key(kms.key_tag, bits=128, request_plain_key=True)

    assert key.plaintext is not None and len(key.plaintext) == 16
    assert key.key_version == token_version(key.ciphertext) == 1
    assert wired.decrypt(kms.key_tag, [key.ciphertext]) == [key.plaintext]
    assert b64(key.plaintext) not in repr(key)
    assert wired.create_custom_key(kms.key_tag).plaintext is None


def test_convergent_key_needs_its_context(kms: LocalStack, wired: NcpKmsClient) -> None:
    tag = kms.kms.create_key(convergent=True)
    context = b64(b"tenant-42")
    [token] = wired.encrypt(tag, [b"data"], context=context)
    kms.kms.rotate(tag)

    [new] = wired.re_encrypt(tag, [token], context=context)

    assert token_version(new) == 2
    assert wired.decrypt(tag, [new], context=context) == [b"data"]
    with pytest.raises(KmsRejectedError):
        wired.re_encrypt(tag, [token])


def test_many_tokens_are_split_under_the_list_limit(kms: LocalStack, make_client: ClientFactory) -> None:
    recorder = Recorder()
    client = make_client(http=recorder.http)
    plaintexts = [i.to_bytes(2, "big") * 500 for i in range(100)]  # tokens of 1,382 characters
    tokens = old_tokens(kms, plaintexts)
    per_request = (32 * 1024) // len(tokens[0])
    expected_requests = -(-len(tokens) // per_request)

    new = client.re_encrypt(kms.key_tag, tokens)

    assert {len(t) for t in tokens} == {1382}
    assert (per_request, expected_requests) == (23, 5)
    assert kms.kms.stats.requests["re-encrypt"] == expected_requests == client.stats.requests
    assert kms.kms.stats.statuses == {200: expected_requests}  # no 400 for an oversized list
    sent = [body["ciphertext"] for body in recorder.bodies()]
    assert [len(items) for items in sent] == [23, 23, 23, 23, 8]
    assert all(sum(map(len, items)) <= 32 * 1024 for items in sent)
    assert [t for items in sent for t in items] == tokens  # order kept across requests
    assert [kms.kms.decrypt(kms.key_tag, t) for t in new] == plaintexts
    assert {token_version(t) for t in new} == {2}


def test_signature_v1(kms: LocalStack, make_client: ClientFactory) -> None:
    recorder = Recorder()
    client = make_client(http=recorder.http, signature_version="v1")
    [token] = old_tokens(kms, [b"v1 please"])

    [new] = client.re_encrypt(kms.key_tag, [token])

    assert token_version(new) == 2
    [request] = recorder.requests
    assert request.url.path == f"/keys/v1/{kms.key_tag}/reencrypt"
    assert request.headers["x-ncp-apigw-api-key"] == API_KEY
    assert "x-ncp-apigw-signature-v1" in request.headers
    assert "x-ncp-apigw-signature-v2" not in request.headers
    assert kms.kms.stats.auth_failures == 0


# --- retries ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("throttle", {}),
        ("server-error", {"status": 500}),
        ("server-error", {"status": 502}),
        ("server-error", {"status": 503}),
        ("server-error", {"status": 504}),
        ("reset", {}),
        ("non-json", {}),
    ],
    ids=["throttle", "500", "502", "503", "504", "reset", "non-json"],
)
def test_transient_failure_is_retried(
    kms: LocalStack, make_client: ClientFactory, kind: str, params: dict[str, Any]
) -> None:
    client = make_client()
    tokens = old_tokens(kms, [b"a", b"b"])
    kms.kms.inject(kind, times=2, **params)

    new = client.re_encrypt(kms.key_tag, tokens)

    assert [kms.kms.decrypt(kms.key_tag, t) for t in new] == [b"a", b"b"]
    assert kms.kms.stats.faults_injected == {kind: 2}
    assert kms.kms.stats.requests["re-encrypt"] == 3
    assert (client.stats.requests, client.stats.retries) == (3, 2)


def test_throttle_honours_retry_after(kms: LocalStack, make_client: ClientFactory) -> None:
    manual = ManualClock()
    client = make_client(clock=manual.clock)
    tokens = old_tokens(kms, [b"a"])
    kms.kms.inject("throttle", retry_after=0.6)

    client.re_encrypt(kms.key_tag, tokens)

    assert manual.slept and manual.slept[0] >= 0.6  # backoff alone (base 0.01 s) would wait milliseconds
    assert client.stats.retries == 1


def test_a_429_from_ncp_halves_the_adaptive_rate(kms: LocalStack, make_client: ClientFactory) -> None:
    manual = ManualClock()
    limiter = AdaptiveRateLimiter(40, clock=manual.clock)
    client = make_client(rate_limiter=limiter, clock=manual.clock)
    tokens = old_tokens(kms, [b"a"])
    kms.kms.inject("throttle", times=2)

    client.re_encrypt(kms.key_tag, tokens)

    assert client.stats.retries == 2 and limiter.cuts >= 1
    assert limiter.per_second < 40


def test_client_timeout_is_retried(kms: LocalStack, make_client: ClientFactory) -> None:
    client = make_client(timeout=0.3)
    tokens = old_tokens(kms, [b"slow"])
    kms.kms.inject("timeout", seconds=6)

    [new] = client.re_encrypt(kms.key_tag, tokens)

    # answered by the retry while the stalled request had not been answered yet: it did not wait
    assert sum(kms.kms.stats.statuses.values()) == 1
    assert kms.kms.decrypt(kms.key_tag, new) == b"slow"
    assert kms.kms.stats.faults_injected == {"timeout": 1}
    assert client.stats.retries == 1
    # let the stalled request finish here, so its late reply is not counted by the next test
    deadline = time.monotonic() + 10
    while sum(kms.kms.stats.statuses.values()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_retries_stop_at_max_attempts(kms: LocalStack, make_client: ClientFactory) -> None:
    client = make_client(max_attempts=3)
    tokens = old_tokens(kms, [b"a"])
    kms.kms.inject("server-error", times=10, status=503)

    with pytest.raises(KmsUnavailableError) as caught:
        client.re_encrypt(kms.key_tag, tokens)

    assert caught.value.retryable
    assert kms.kms.stats.requests["re-encrypt"] == 3
    assert client.stats.retries == 2


# --- reply validation ------------------------------------------------------------------------------
def v2_tokens_under_v3(stack: LocalStack, plaintexts: list[bytes]) -> list[str]:
    """Tokens at v2 while the key is at v3, so a "lower-version" fault can answer v1."""
    stack.kms.rotate(stack.key_tag)
    return old_tokens(stack, plaintexts)


@pytest.mark.parametrize("kind", INVALID_REPLIES)
def test_invalid_reply_is_refused(kms: LocalStack, make_client: ClientFactory, kind: str) -> None:
    client = make_client(max_attempts=1)
    tokens = v2_tokens_under_v3(kms, [b"a", b"b"])
    kms.kms.inject(kind)

    with pytest.raises(KmsInvalidReplyError) as caught:
        client.re_encrypt(kms.key_tag, tokens)

    assert caught.value.retryable
    assert kms.kms.stats.faults_injected == {kind: 1}
    assert kms.kms.stats.requests["re-encrypt"] == 1


@pytest.mark.parametrize("kind", ["short-reply", "extra-item"])
def test_invalid_single_string_reply_is_refused(kms: LocalStack, make_client: ClientFactory, kind: str) -> None:
    client = make_client(max_attempts=1)
    tokens = old_tokens(kms, [b"alone"])
    kms.kms.inject(kind)

    with pytest.raises(KmsInvalidReplyError):
        client.re_encrypt(kms.key_tag, tokens)


@pytest.mark.parametrize("kind", INVALID_REPLIES)
def test_invalid_reply_is_retried(kms: LocalStack, make_client: ClientFactory, kind: str) -> None:
    client = make_client(max_attempts=3)
    tokens = v2_tokens_under_v3(kms, [b"a", b"b"])
    kms.kms.inject(kind)

    new = client.re_encrypt(kms.key_tag, tokens)

    assert [token_version(t) for t in new] == [3, 3]
    assert [kms.kms.decrypt(kms.key_tag, t) for t in new] == [b"a", b"b"]
    assert kms.kms.stats.faults_injected == {kind: 1}
    assert kms.kms.stats.requests["re-encrypt"] == 2
    assert client.stats.retries == 1


def test_validate_re_encrypt_reply() -> None:
    sent = ["ncpkms:v2:AAAA", "ncpkms:v3:BBBB"]

    validate_re_encrypt_reply(sent, ["ncpkms:v2:CCCC", "ncpkms:v4:DDDD"])  # same or higher: fine
    for reply in (
        ["ncpkms:v3:CCCC"],
        ["ncpkms:v3:CCCC", "ncpkms:v3:DDDD", "ncpkms:v3:EEEE"],
        ["ncpkms:v3:CCCC", None],
        ["ncpkms:v3:CCCC", "ncpkms:v3:DDD"],
        ["ncpkms:v3:CCCC", "ncpkms:v2:DDDD"],
        ["ncpkms:v1:CCCC", "ncpkms:v3:DDDD"],
    ):
        with pytest.raises(KmsInvalidReplyError):
            validate_re_encrypt_reply(sent, reply)


# --- permanent refusals ----------------------------------------------------------------------------
def test_disabled_version_is_rejected_once(kms: LocalStack, make_client: ClientFactory) -> None:
    client = make_client()
    tokens = old_tokens(kms, [b"a"])
    kms.kms.disable_version(kms.key_tag, 1)

    with pytest.raises(KmsRejectedError) as caught:
        client.re_encrypt(kms.key_tag, tokens)

    assert not caught.value.retryable
    assert "UNPROCESSABLE_ENTITY" in str(caught.value)
    assert kms.kms.stats.requests["re-encrypt"] == 1
    assert (client.stats.requests, client.stats.retries) == (1, 0)


def test_unknown_key_tag_is_rejected_once_per_spelling(kms: LocalStack, make_client: ClientFactory) -> None:
    # An unknown key and a misspelt path both answer the gateway's 404 code 300: each spelling once
    client = make_client()
    tokens = old_tokens(kms, [b"a"])

    with pytest.raises(KmsRejectedError) as caught:
        client.re_encrypt("f" * 64, tokens)

    assert not caught.value.retryable and "not found" in caught.value.reason
    assert kms.kms.stats.requests["re-encrypt"] == 2
    assert client.stats.retries == 0
    assert client._segments == {}  # neither answered, so nothing is remembered


def test_token_of_another_key_is_rejected(kms: LocalStack, wired: NcpKmsClient) -> None:
    other = kms.kms.create_key()
    token = kms.kms.encrypt(other, b"not yours")

    with pytest.raises(KmsRejectedError):
        wired.re_encrypt(kms.key_tag, [token])
    assert kms.kms.stats.requests["re-encrypt"] == 1


# --- credential rotation ---------------------------------------------------------------------------
ORIGINAL_SECRET = {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY, "apiKey": API_KEY}


def new_secret(client: Any, value: str) -> str:
    return client.create_secret(Name=f"rewrap/ncp-test-{uuid.uuid4().hex}", SecretString=value)["ARN"]


@pytest.fixture
def own_secret(secrets_client: Any) -> tuple[str, CountingSource]:
    """A secret only this test rotates, read through Powertools and counted."""
    arn = new_secret(secrets_client, json.dumps(ORIGINAL_SECRET))
    return arn, CountingSource(SecretCredentials(arn, client=secrets_client))


def test_rotated_secret_is_refreshed_once(
    kms: LocalStack, make_client: ClientFactory, secrets_client: Any, own_secret: tuple[str, CountingSource]
) -> None:
    arn, source = own_secret
    client = make_client(credentials=source)
    tokens = old_tokens(kms, [b"a"])
    assert source.get().access_key == ACCESS_KEY  # cached from here on
    kms.kms.add_credentials("rotated-access-key", "rotated-secret-key")
    rotated = {"accessKey": "rotated-access-key", "secretKey": "rotated-secret-key"}
    secrets_client.put_secret_value(SecretId=arn, SecretString=json.dumps(rotated))
    kms.kms.remove_credentials(ACCESS_KEY)
    try:
        [new] = client.re_encrypt(kms.key_tag, tokens)
    finally:
        kms.kms.remove_credentials("rotated-access-key")

    assert token_version(new) == 2
    assert source.refreshes == 1
    assert kms.kms.stats.auth_failures == 1
    assert kms.kms.stats.requests["re-encrypt"] == 2
    assert client.stats.retries == 0


def test_auth_fails_after_one_refresh(
    kms: LocalStack, make_client: ClientFactory, secrets_client: Any, own_secret: tuple[str, CountingSource]
) -> None:
    arn, source = own_secret
    client = make_client(credentials=source)
    tokens = old_tokens(kms, [b"a"])
    source.get()
    wrong = {"accessKey": "never-registered", "secretKey": "never-valid-secret"}
    secrets_client.put_secret_value(SecretId=arn, SecretString=json.dumps(wrong))
    kms.kms.remove_credentials(ACCESS_KEY)

    with pytest.raises(KmsAuthError) as caught:
        client.re_encrypt(kms.key_tag, tokens)

    assert not caught.value.retryable
    assert "never-valid-secret" not in str(caught.value)
    assert source.refreshes == 1
    assert kms.kms.stats.auth_failures == 2
    assert kms.kms.stats.requests["re-encrypt"] == 2


# --- deadlines and rate limits ---------------------------------------------------------------------
def test_deadline_bounds_retries(kms: LocalStack, make_client: ClientFactory) -> None:
    manual = ManualClock()
    client = make_client(max_attempts=1000, timeout=0.2, clock=manual.clock)
    tokens = old_tokens(kms, [b"a"])
    kms.kms.inject("server-error", times=10_000)

    with pytest.raises(RetryableError):
        client.re_encrypt(kms.key_tag, tokens, deadline=Deadline(0.5, manual.clock))

    assert sum(manual.slept) <= 0.5  # never waited past the deadline
    assert 1 < client.stats.requests < 1000  # retried while time allowed, then gave up


def test_deadline_shorter_than_the_backoff_gives_up_at_once(kms: LocalStack, make_client: ClientFactory) -> None:
    manual = ManualClock()
    client = make_client(max_attempts=10, backoff_base=2.0, backoff_cap=5.0, clock=manual.clock)
    tokens = old_tokens(kms, [b"a"])
    kms.kms.inject("server-error", times=100)

    with pytest.raises(KmsUnavailableError):
        client.re_encrypt(kms.key_tag, tokens, deadline=Deadline(0.5, manual.clock))

    assert manual.slept == []  # no backoff that would have outlasted the deadline
    assert kms.kms.stats.requests["re-encrypt"] == 1


def test_expired_deadline_sends_nothing(kms: LocalStack, make_client: ClientFactory) -> None:
    client = make_client()
    tokens = old_tokens(kms, [b"a"])

    with pytest.raises(OutOfTimeError):
        client.re_encrypt(kms.key_tag, tokens, deadline=Deadline(0))

    assert sum(kms.kms.stats.requests.values()) == 0


@pytest.mark.parametrize(("burst", "minimum"), [(None, 0.5), (1.0, 1.45)], ids=["default-burst", "burst-1"])
def test_rate_limiter_spaces_requests(
    kms: LocalStack, make_client: ClientFactory, burst: float | None, minimum: float
) -> None:
    manual = ManualClock()
    client = make_client(rate_limiter=RateLimiter(per_second=20, burst=burst, clock=manual.clock), clock=manual.clock)

    for i in range(30):
        client.encrypt(kms.key_tag, [bytes([i])])

    assert kms.kms.stats.requests["encrypt"] == 30
    assert sum(manual.slept) == pytest.approx(minimum)


def test_rate_limiter_gives_up_before_the_deadline(kms: LocalStack, make_client: ClientFactory) -> None:
    limiter = RateLimiter(per_second=1, burst=1)
    assert limiter.acquire(Deadline(None))  # the only slot of this second is gone
    client = make_client(rate_limiter=limiter)

    with pytest.raises(OutOfTimeError):
        client.encrypt(kms.key_tag, [b"x"], deadline=Deadline(0.3))

    assert sum(kms.kms.stats.requests.values()) == 0


# --- Secrets Manager -------------------------------------------------------------------------------
def test_secret_credentials_are_read(shared: tuple[LocalStack, Runtime], secrets_client: Any) -> None:
    source = SecretCredentials(shared[0].secret_id, client=secrets_client)

    assert source.get() == Credentials(ACCESS_KEY, SECRET_KEY, API_KEY)


@pytest.mark.parametrize(
    "value",
    [
        "not json at all",
        '{"accessKey": "a", "secretKey": ',
        "[]",
        '"just a string"',
        "{}",
        '{"accessKey": "only-access"}',
        '{"secretKey": "s3cr3t-value"}',
        '{"accessKey": "", "secretKey": "s3cr3t-value"}',
        '{"accessKey": 12345, "secretKey": "s3cr3t-value"}',
        '{"accessKey": "a", "secretKey": "s3cr3t-value", "apiKey": 42}',
    ],
)
def test_malformed_secret_is_invalid(secrets_client: Any, value: str) -> None:
    source = SecretCredentials(new_secret(secrets_client, value), client=secrets_client)

    with pytest.raises(CredentialsInvalidError) as caught:
        source.get()

    assert not caught.value.retryable
    assert "s3cr3t-value" not in str(caught.value)


def test_malformed_secret_fails_the_kms_call(kms: LocalStack, secrets_client: Any) -> None:
    arn = new_secret(secrets_client, "accessKey=a;secretKey=b")
    client = NcpKmsClient(kms.kms.url, SecretCredentials(arn, client=secrets_client))
    try:
        with pytest.raises(CredentialsInvalidError):
            client.encrypt(kms.key_tag, [b"x"])
    finally:
        client.http.close()
    assert sum(kms.kms.stats.requests.values()) == 0


def test_unknown_secret_is_invalid(secrets_client: Any) -> None:
    source = SecretCredentials(f"rewrap/no-such-secret-{uuid.uuid4().hex}", client=secrets_client)

    with pytest.raises(CredentialsInvalidError, match="ResourceNotFoundException") as caught:
        source.get()
    assert not caught.value.retryable


def test_empty_secret_id_is_invalid() -> None:
    with pytest.raises(CredentialsInvalidError):
        SecretCredentials("")


def test_unreachable_secrets_manager_is_retryable() -> None:
    parameters.clear_caches()
    unreachable = boto3.session.Session(**FAKE_AWS).client(
        "secretsmanager",
        endpoint_url="http://127.0.0.1:9",
        config=Config(connect_timeout=0.2, read_timeout=0.2, retries={"max_attempts": 1}),
    )
    source = SecretCredentials("rewrap/ncp-kms", client=unreachable)

    with pytest.raises(CredentialsUnavailableError) as caught:
        source.get()

    assert caught.value.retryable


def test_secret_is_cached_until_refreshed(secrets_client: Any, own_secret: tuple[str, CountingSource]) -> None:
    arn, source = own_secret
    assert source.get().access_key == ACCESS_KEY
    second = {"accessKey": "second-access-key", "secretKey": "second-secret"}
    secrets_client.put_secret_value(SecretId=arn, SecretString=json.dumps(second))

    assert source.get().access_key == ACCESS_KEY
    assert source.get(refresh=True) == Credentials("second-access-key", "second-secret", None)
    assert source.get().access_key == "second-access-key"
