"""NCP as it may really answer, against the emulator's strict switches: poison that fails alone, both
path spellings, both v3 reply field names, 2.0 without arrays, key and version states, per-key tokens
with expiry, and errors an operator can act on (request id, clock skew, configuration)."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import rewrap.core.rewrapping
from rewrap.adapters.ncp_kms.client import NcpKmsClient
from rewrap.adapters.ncp_kms.management import NcpKeyManager
from rewrap.adapters.ncp_kms.replies import checked_re_encrypt
from rewrap.core.census import Census
from rewrap.core.census_taker import CensusTaker, RescueList, version_states, with_version_states
from rewrap.core.engine import Status
from rewrap.core.ports import ObjectRef
from rewrap.core.rewrapping import isolate
from rewrap.core.sweep import sweep_event
from rewrap.core.tokens import scan, token_version
from rewrap.errors import ConfigError, KmsKeyDisabledError, KmsRejectedError, RetryableError
from rewrap.ncp.generations import RE_ENCRYPT
from rewrap.ncp.signing import Credentials, token_expiry
from rewrap_local.emulator.assumptions import ASSUMPTIONS
from rewrap_local.lambda_context import LambdaContext
from rewrap_local.stack import ACCESS_KEY, SECRET_KEY, LocalStack
from tests.fakes import SIGNING, StaticCredentials
from tests.stack_fixtures import RuntimeFactory

APIS = ["1.0", "2.0", "v3"]


def client_for(stack: LocalStack, api: str, credentials: Any = SIGNING, **options: Any) -> NcpKmsClient:
    return NcpKmsClient(stack.kms.url, credentials, api=api, backoff_base=0.01, **options)


_CLIENTS: dict[tuple[str, str], Any] = {}


def aws(stack: LocalStack, service: str) -> Any:
    """One client per service and moto server (making a boto3 client costs tens of milliseconds)."""
    if (stack.moto_url, service) not in _CLIENTS:
        _CLIENTS[(stack.moto_url, service)] = stack.client(service)
    return _CLIENTS[(stack.moto_url, service)]


def put(stack: LocalStack, key: str, tokens: list[str]) -> None:
    aws(stack, "s3").put_object(Bucket=stack.bucket, Key=key, Body="\n".join(tokens).encode())


def body_of(stack: LocalStack, key: str) -> bytes:
    return aws(stack, "s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()


def refs(stack: LocalStack, keys: list[str]) -> list[ObjectRef]:
    return [ObjectRef(stack.bucket, key) for key in keys]


def secret_with(stack: LocalStack, value: dict[str, Any]) -> str:
    secrets = aws(stack, "secretsmanager")
    name = f"{stack.bucket}-secret-{time.monotonic_ns()}"
    return secrets.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]


def kms_requests(stack: LocalStack) -> int:
    return sum(stack.kms.stats.snapshot()["requests"].values())


# --- 4. poison fails alone -------------------------------------------------------------------------
def seed_poison(stack: LocalStack, good: int, poison: int) -> tuple[list[str], set[str]]:
    """``good`` objects with a token of the stack's key and ``poison`` objects holding a token of another
    key, in a shuffled order; the key is rotated afterwards."""
    other = stack.kms.create_key()
    keys = [f"good-{i:02d}.txt" for i in range(good)] + [f"poison-{i:02d}.txt" for i in range(poison)]
    random.Random(12).shuffle(keys)
    for key in keys:
        tag = other if key.startswith("poison") else stack.key_tag
        put(stack, key, [stack.kms.encrypt(tag, key.encode())])
    stack.kms.rotate(stack.key_tag)
    return keys, {k for k in keys if k.startswith("poison")}


@pytest.mark.parametrize("api", APIS)
def test_60_good_and_12_poison_objects_in_one_batch(
    stack: LocalStack, make_runtime: RuntimeFactory, api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 60 good objects and 12 holding another key's tokens, rotated in one invocation, read in one chunk so
    # they meet KMS in one round however long the reads take (a round stops gathering after GATHER_SECONDS)
    runtime, _ = make_runtime(api, concurrency=36)
    keys, poison = seed_poison(stack, 60, 12)
    before = {key: body_of(stack, key) for key in poison}
    stack.kms.stats.reset()

    # When
    results = dict(zip(keys, runtime.engine.rotate(refs(stack, keys)), strict=True))

    # Then every good object rotated, every poison object failed permanently and is untouched
    spent = kms_requests(stack)
    with capsys.disabled():
        print(f"\n[poison 60+12, NCP_KMS_API={api}] KMS requests: {stack.kms.stats.snapshot()['requests']}")
    assert {k for k, r in results.items() if r.status is Status.ROTATED} == set(keys) - poison
    for key in poison:
        result = results[key]
        assert result.status is Status.FAILED and result.error is not None, key
        assert not result.retryable and result.error.code == "kms-rejected", key
        assert body_of(stack, key) == before[key]
    for key in set(keys) - poison:
        (token,) = scan(body_of(stack, key))[0]
        assert token.version == 2 and stack.kms.decrypt(stack.key_tag, token.text) == key.encode()
    # and the search spent well under one request per object (v3 names the failed items: two requests,
    # and key plus version info to tell why they failed)
    assert spent <= (4 if api == "v3" else 64), spent


def test_unresolved_items_are_retryable_when_the_search_budget_runs_out(
    stack: LocalStack, make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a search allowed only 12 requests for 72 items
    monkeypatch.setattr(rewrap.core.rewrapping, "ISOLATION_EXTRA_REQUESTS", -60)
    runtime, _ = make_runtime("1.0")
    keys, poison = seed_poison(stack, 60, 12)

    results = dict(zip(keys, runtime.engine.rotate(refs(stack, keys)), strict=True))

    # Then no good object failed permanently: each rotated or is pending retry
    good = [results[k] for k in keys if k not in poison]
    assert all(r.status is Status.ROTATED or (r.retryable and r.error.code == "kms-isolation-pending") for r in good)  # type: ignore[union-attr]
    assert any(r.retryable for r in good)
    assert all(results[k].status is Status.FAILED for k in poison)
    permanent = [k for k, r in results.items() if r.status is Status.FAILED and not r.retryable]
    assert set(permanent) <= poison


def test_a_request_level_failure_during_the_search_is_retryable(stack: LocalStack) -> None:
    # Given a list refused for one item, and NCP unavailable while the search runs
    client = client_for(stack, "1.0", max_attempts=1)
    other = stack.kms.create_key()
    tokens = [stack.kms.encrypt(stack.key_tag, b"g%d" % i) for i in range(7)] + [stack.kms.encrypt(other, b"x")]
    stack.kms.inject("server-error", times=50)

    def attempt(part: list[str]) -> list[Any] | KmsRejectedError:
        try:
            return list(client.re_encrypt(stack.key_tag, part))
        except KmsRejectedError as refusal:
            return refusal

    outcomes = isolate(attempt, tokens, KmsRejectedError("refused as a whole"))

    assert all(isinstance(o, RetryableError) for o in outcomes)


def test_isolation_finds_exactly_the_refused_items_within_its_budget() -> None:
    for seed, (count, bad) in enumerate([(72, 12), (72, 1), (10, 10), (2, 1), (100, 3), (72, 72)]):
        rng = random.Random(seed)
        refused = set(rng.sample(range(count), bad))
        items = [f"t{i}" for i in range(count)]
        sent: list[list[str]] = []

        def attempt(
            part: list[str], refused: set[int] = refused, sent: list[list[str]] = sent
        ) -> list[Any] | KmsRejectedError:
            sent.append(part)
            if any(int(p[1:]) in refused for p in part):
                return KmsRejectedError("refused")
            return [f"new-{p}" for p in part]

        outcomes = isolate(attempt, items)

        assert {i for i, o in enumerate(outcomes) if isinstance(o, KmsRejectedError)} == refused
        assert all(o == f"new-{items[i]}" for i, o in enumerate(outcomes) if i not in refused)
        assert len(sent) <= count + 9


# --- 1. path spelling --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("api", "served", "first_request"),
    [("1.0", "reencrypt", 1), ("1.0", "re-encrypt", 2), ("2.0", "re-encrypt", 1), ("2.0", "reencrypt", 2)],
)
def test_re_encrypt_path_spelling_falls_back_once_and_is_remembered(
    stack: LocalStack, api: str, served: str, first_request: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an endpoint serving only one spelling of the re-encrypt path
    stack.kms.re_encrypt_spelling = served
    client = client_for(stack, api)
    tokens = [stack.kms.encrypt(stack.key_tag, b"a"), stack.kms.encrypt(stack.key_tag, b"b")]
    stack.kms.rotate(stack.key_tag)
    stack.kms.stats.reset()

    with caplog.at_level(logging.WARNING, logger="rewrap.adapters.ncp_kms.batching"):
        first = client.re_encrypt(stack.key_tag, tokens)
        second = client.re_encrypt(stack.key_tag, tokens[:1])

    # Then the first call found the spelling (one 404 at most), the second used it straight away
    assert [token_version(t) for t in first + second] == [2, 2, 2]
    assert client.stats.requests == first_request + 1
    assert stack.kms.stats.statuses.get(404, 0) == first_request - 1  # (a 404 route is not counted as re-encrypt)
    assert stack.kms.stats.requests["re-encrypt"] == 2
    assert client.stats.retries == 0
    switched = [r for r in caplog.records if "using that spelling" in r.getMessage()]
    assert len(switched) == (first_request - 1)
    if switched:
        assert f"/{served}, not" in switched[0].getMessage()


def test_the_strict_switch_serves_one_spelling_only(stack: LocalStack) -> None:
    stack.kms.re_encrypt_spelling = "reencrypt"
    client = client_for(stack, "1.0")
    client._segments["re-encrypt"] = "reencrypt"
    token = stack.kms.encrypt(stack.key_tag, b"a")
    http = httpx.Client(trust_env=False)
    path = f"/keys/v2/{stack.key_tag}/re-encrypt"
    headers = client._authenticated("POST", lambda _t: path, stack.key_tag)[1]

    answer = http.post(stack.kms.url + path, json={"ciphertext": token}, headers=headers)

    assert answer.status_code == 404 and answer.json()["error"]["errorCode"] == "300"
    assert client.re_encrypt(stack.key_tag, [token])  # the other spelling answers
    http.close()


# --- 2. v3 reply field names -------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["newCiphertext", "ciphertext"])
def test_v3_re_encrypt_result_under_either_name(stack: LocalStack, field: str) -> None:
    stack.kms.v3_re_encrypt_field = field
    client = client_for(stack, "v3", max_attempts=1)
    tokens = [stack.kms.encrypt(stack.key_tag, b"p%d" % i) for i in range(3)]
    stack.kms.rotate(stack.key_tag)
    recorder: list[httpx.Response] = []
    client.http.event_hooks = {"request": [], "response": [recorder.append]}

    single = client.re_encrypt(stack.key_tag, tokens[:1])
    batch = client.re_encrypt(stack.key_tag, tokens)

    assert [token_version(t) for t in single + batch] == [2, 2, 2, 2]
    assert [stack.kms.decrypt(stack.key_tag, t) for t in batch] == [b"p0", b"p1", b"p2"]
    assert client.stats.requests == 2 and client.stats.retries == 0
    for response in recorder:
        response.read()
    assert field in recorder[0].json() and field in recorder[1].json()["results"]["0"]


# --- 3. 2.0 without arrays ---------------------------------------------------------------------------
def test_2_0_refusing_arrays_turns_on_one_item_requests(stack: LocalStack, make_runtime: RuntimeFactory) -> None:
    # Given a 2.0 endpoint that takes a String only
    stack.kms.arrays_2_0 = False
    runtime, sent = make_runtime("2.0")
    for name in ("a", "b"):
        put(stack, f"{name}.txt", [stack.kms.encrypt(stack.key_tag, f"{name}{i}".encode()) for i in range(3)])
    stack.kms.rotate(stack.key_tag)

    # When two invocations rotate three tokens each
    first = runtime.engine.rotate(refs(stack, ["a.txt"]))
    after_first = len(sent)
    second = runtime.engine.rotate(refs(stack, ["b.txt"]))

    # Then the first refused array (400) was sent again one item per request, and that was remembered
    assert [r.status for r in first + second] == [Status.ROTATED, Status.ROTATED]
    bodies = [json.loads(r.content) for r in sent]
    assert isinstance(bodies[0]["ciphertext"], list)
    assert all(isinstance(b["ciphertext"], str) for b in bodies[1:])
    assert (after_first, len(sent) - after_first) == (4, 3)
    assert list(runtime.kms.batches(["x", "y"])) == [["x"], ["y"]]


def test_2_0_one_item_requests_fail_only_the_refused_item(stack: LocalStack) -> None:
    stack.kms.arrays_2_0 = False
    client = client_for(stack, "2.0")
    other = stack.kms.create_key()
    tokens = [
        stack.kms.encrypt(stack.key_tag, b"a"),
        stack.kms.encrypt(other, b"x"),
        stack.kms.encrypt(stack.key_tag, b"c"),
    ]
    stack.kms.rotate(stack.key_tag)

    outcomes = client._each(RE_ENCRYPT, stack.key_tag, tokens, None, None, checked_re_encrypt)

    assert [type(o) for o in outcomes] == [str, KmsRejectedError, str]


# --- 5. key and version lifecycle ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("api", "state", "words"),
    [
        ("2.0", "DISABLED", "is disabled (key info status DISABLE)"),
        ("v3", "REVOKED", "is revoked (deletion pending"),
        ("1.0", "DISABLED", "is disabled or pending deletion"),
    ],
)
def test_a_key_not_enabled_stops_the_invocation_early(
    stack: LocalStack, make_runtime: RuntimeFactory, api: str, state: str, words: str
) -> None:
    # Given 120 objects (two v3 batches) of a key that is then disabled or revoked
    runtime, sent = make_runtime(api, concurrency=2)
    keys = [f"k{i:03d}.txt" for i in range(120)]
    for key in keys:
        put(stack, key, [stack.kms.encrypt(stack.key_tag, key.encode())])
    stack.kms.rotate(stack.key_tag)
    stack.kms.set_key_state(stack.key_tag, state)
    before = {key: body_of(stack, key) for key in keys[:3]}

    results = runtime.engine.rotate(refs(stack, keys))

    # Then every object failed with one permanent kms-key-disabled naming the state, after few requests
    reasons = {r.error.reason for r in results if r.error is not None}
    assert all(r.status is Status.FAILED and not r.retryable for r in results)
    assert {r.error.code for r in results if r.error is not None} == {"kms-key-disabled"}
    assert len(reasons) == 1 and words in next(iter(reasons))
    assert len(sent) <= 4, [r.url.path for r in sent]
    assert {key: body_of(stack, key) for key in keys[:3]} == before


@pytest.mark.parametrize("api", APIS)
def test_a_disabled_version_fails_its_own_objects_with_a_clear_reason(
    stack: LocalStack, make_runtime: RuntimeFactory, api: str
) -> None:
    runtime, _ = make_runtime(api)
    put(stack, "v1.txt", [stack.kms.encrypt(stack.key_tag, b"one")])
    stack.kms.rotate(stack.key_tag)
    put(stack, "v2.txt", [stack.kms.encrypt(stack.key_tag, b"two")])
    put(stack, "v2-again.txt", [stack.kms.encrypt(stack.key_tag, b"two again")])
    stack.kms.rotate(stack.key_tag)
    stack.kms.disable_version(stack.key_tag, 1)

    v1, v2, again = runtime.engine.rotate(refs(stack, ["v1.txt", "v2.txt", "v2-again.txt"]))

    assert (v2.status, again.status) == (Status.ROTATED, Status.ROTATED)
    assert v1.status is Status.FAILED and v1.error is not None and not v1.retryable
    assert v1.error.reason.startswith("version-disabled: re-enable v1 to rotate it (key "), v1.error.reason


@pytest.mark.parametrize("api", ["1.0", "2.0", "v3"])
def test_the_sweep_stops_before_listing_when_the_key_is_disabled(
    stack: LocalStack, make_runtime: RuntimeFactory, api: str
) -> None:
    runtime, sent = make_runtime(api, sweep_targets=())
    stack.kms.set_key_state(stack.key_tag, "DISABLED")
    event = {"rewrapSweep": {"targets": [stack.bucket]}}

    with pytest.raises(KmsKeyDisabledError, match="disabled"):
        sweep_event(event, LambdaContext(), runtime)
    assert len(sent) == 1


def test_version_states_for_the_census(stack: LocalStack) -> None:
    # Given objects on v1 (then disabled), v2 and v3 (current)
    for version in (1, 2, 3):
        put(stack, f"on-v{version}.txt", [stack.kms.encrypt(stack.key_tag, b"x")])
        if version < 3:
            stack.kms.rotate(stack.key_tag)
    stack.kms.disable_version(stack.key_tag, 1)

    for api in ("1.0", "2.0", "v3"):  # 1.0 keys are managed through v3 with the same access key
        states = version_states(NcpKeyManager(api, stack.kms.url, SIGNING), [stack.key_tag])
        rescue = RescueList(states)
        census = CensusTaker(stack_store(stack), default_key_tag=stack.key_tag).run(
            stack.bucket, "", Census(), on_object=rescue
        )
        summary = with_version_states(census.to_dict(), states)

        assert states == {stack.key_tag: {1: "disabled", 2: "enabled", 3: "enabled"}}
        versions = summary["keys"][stack.key_tag]
        assert [(versions[v]["objects"], versions[v]["state"]) for v in ("v1", "v2", "v3")] == [
            (1, "disabled"),
            (1, "enabled"),
            (1, "enabled"),
        ]
        assert summary["rescueVersions"] == {stack.key_tag: [1]}
        assert [item.ref.key for item in rescue.objects] == ["on-v1.txt"]
    # an ocapi token reaches no management call: no state is known, and the census goes on without it
    token_only = StaticCredentials(Credentials(ocapi_token=stack.kms.issue_token(stack.key_tag)))
    assert version_states(NcpKeyManager("v3", stack.kms.url, token_only), [stack.key_tag]) == {}


def stack_store(stack: LocalStack) -> Any:
    from rewrap.adapters.s3 import S3Store

    return S3Store(aws(stack, "s3"))


# --- 6. per-key tokens with exp ----------------------------------------------------------------------
def test_each_key_uses_its_own_token(stack: LocalStack, make_runtime: RuntimeFactory) -> None:
    other = stack.kms.create_key()
    tokens = {stack.key_tag: stack.kms.issue_token(stack.key_tag), other: stack.kms.issue_token(other)}
    runtime, sent = make_runtime("v3", secret_id=secret_with(stack, {"ocapiTokens": tokens}))
    put(stack, "mine.txt", [stack.kms.encrypt(stack.key_tag, b"m")])
    aws(stack, "s3").put_object(
        Bucket=stack.bucket,
        Key="theirs.txt",
        Body=stack.kms.encrypt(other, b"t").encode(),
        Metadata={"ncpkms-key-tag": other},
    )
    stack.kms.rotate(stack.key_tag)
    stack.kms.rotate(other)

    results = runtime.engine.rotate(refs(stack, ["mine.txt", "theirs.txt"]))

    assert [r.status for r in results] == [Status.ROTATED, Status.ROTATED]
    used = {r.url.path.split("/")[5]: r.headers["x-ncp-ocapi-token"] for r in sent}
    assert used == tokens


def test_a_token_near_its_expiry_makes_the_secret_be_read_again(
    stack: LocalStack, make_runtime: RuntimeFactory
) -> None:
    # Given a secret whose token expires in a minute, replaced by a fresh one in Secrets Manager
    soon = stack.kms.issue_token(stack.key_tag, expires_in=60)
    secret_id = secret_with(stack, {"ocapiTokens": {stack.key_tag: soon}})
    runtime, sent = make_runtime("2.0", secret_id=secret_id)
    fresh = stack.kms.issue_token(stack.key_tag, expires_in=3600)
    aws(stack, "secretsmanager").put_secret_value(
        SecretId=secret_id, SecretString=json.dumps({"ocapiTokens": {stack.key_tag: fresh}})
    )
    put(stack, "a.txt", [stack.kms.encrypt(stack.key_tag, b"a")])
    stack.kms.rotate(stack.key_tag)

    (result,) = runtime.engine.rotate(refs(stack, ["a.txt"]))

    assert result.status is Status.ROTATED
    assert [r.headers["x-ncp-ocapi-token"] for r in sent] == [fresh]
    assert token_expiry(fresh) is not None and token_expiry(fresh) > time.time() + 3000  # type: ignore[operator]


def test_an_expired_token_is_a_permanent_failure_naming_the_expiry(
    stack: LocalStack, make_runtime: RuntimeFactory
) -> None:
    expired = stack.kms.issue_token(stack.key_tag, expires_in=-5)
    runtime, sent = make_runtime("v3", secret_id=secret_with(stack, {"ocapiToken": expired}))
    put(stack, "a.txt", [stack.kms.encrypt(stack.key_tag, b"a")])
    stack.kms.rotate(stack.key_tag)

    (result,) = runtime.engine.rotate(refs(stack, ["a.txt"]))

    assert result.status is Status.FAILED and result.error is not None and not result.retryable
    assert result.error.code == "kms-token-expired"
    assert "expired at 20" in result.error.reason and expired not in result.error.reason
    assert sent == []  # never sent: the token's own claim says it is expired


# --- 7. errors an operator can act on ------------------------------------------------------------------
def test_a_refusal_names_ncp_request_id_and_code(stack: LocalStack) -> None:
    client = client_for(stack, "2.0")
    other = stack.kms.create_key()
    recorder: list[httpx.Response] = []
    client.http.event_hooks = {"request": [], "response": [recorder.append]}

    with pytest.raises(KmsRejectedError) as caught:
        client.re_encrypt(stack.key_tag, [stack.kms.encrypt(other, b"x")])

    request_id = recorder[0].headers["x-ncp-request-id"]
    assert f"request id {request_id}" in caught.value.reason
    assert "HTTP 400, code INVALID_REQUEST" in caught.value.reason
    assert (caught.value.http_status, caught.value.error_code) == (400, "INVALID_REQUEST")


def test_an_authentication_failure_says_clock_skew_when_the_clocks_differ(stack: LocalStack) -> None:
    stack.kms.clock_offset = 600
    client = client_for(stack, "1.0")

    with pytest.raises(rewrap.errors.KmsAuthError) as caught:
        client.encrypt(stack.key_tag, [b"x"])

    assert "clock skew" in caught.value.reason and "s ahead of this one" in caught.value.reason
    assert "request id" in caught.value.reason
    stack.kms.clock_offset = 0
    with pytest.raises(rewrap.errors.KmsAuthError) as plain:
        client_for(stack, "1.0", StaticCredentials(Credentials("unknown", "key"))).encrypt(stack.key_tag, [b"x"])
    assert "clock skew" not in plain.value.reason


def test_v1_without_api_key_is_a_configuration_error_found_when_the_runtime_is_built(
    stack: LocalStack, make_runtime: RuntimeFactory
) -> None:
    secret_id = secret_with(stack, {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY})
    before = kms_requests(stack)

    with pytest.raises(ConfigError, match="apiKey") as caught:
        make_runtime("1.0", secret_id=secret_id, signature_version="v1")

    assert not caught.value.retryable and caught.value.code == "config"
    assert kms_requests(stack) == before


# --- 8. assumptions in one place ----------------------------------------------------------------------
def test_every_assumption_is_in_the_ncp_page_with_its_source() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "ncp.md").read_text()
    for number, (assumption, source) in enumerate(ASSUMPTIONS, 1):
        assert f"| {number} | {assumption} | {source} |" in page, assumption
    assert len(ASSUMPTIONS) >= 10
