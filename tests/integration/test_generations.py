"""Every NCP KMS API generation (NCP_KMS_API = 1.0, 2.0, v3) against the emulator: the engine end to end,
batch limits, v3 partial batch failures, key info, token auth and region-isolated keys."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rewrap.adapters.ncp_kms.client import NcpKmsClient
from rewrap.adapters.secrets_manager import parse_credentials
from rewrap.core.config import Settings
from rewrap.core.engine import Status
from rewrap.core.ports import ObjectRef
from rewrap.core.sweep import probe_newest_versions
from rewrap.core.tokens import scan, token_version
from rewrap.deadline import Deadline
from rewrap.errors import (
    ConfigError,
    CredentialsInvalidError,
    KmsAuthError,
    KmsInvalidReplyError,
    KmsRejectedError,
    KmsThrottledError,
    KmsUnavailableError,
    KmsWrongRegionError,
    PartialBatchError,
)
from rewrap.ncp.generations import GENERATIONS
from rewrap.ncp.regions import key_region, wrong_region
from rewrap.ncp.reply_errors import item_errors
from rewrap.ncp.signing import Credentials
from rewrap_local.emulator import KmsEmulator
from rewrap_local.stack import LocalStack
from tests.fakes import SIGNING, StaticCredentials
from tests.stack_fixtures import RuntimeFactory

APIS = ["1.0", "2.0", "v3"]
RE_ENCRYPT_PATHS = {
    "1.0": "/keys/v2/{tag}/reencrypt",
    "2.0": "/kms/v1/keys/{tag}/re-encrypt",
    "v3": "/kms/v3/keys/{tag}/batch-re-encrypt",
}


@pytest.fixture
def emulator(stack: LocalStack) -> Iterator[KmsEmulator]:
    """The shared emulator, standing for the global host again after the test."""
    yield stack.kms
    stack.kms.region = "global"


def client_for(stack: LocalStack, api: str, credentials: Any = SIGNING, **options: Any) -> NcpKmsClient:
    return NcpKmsClient(stack.kms.url, credentials, api=api, backoff_base=0.01, **options)


def put(stack: LocalStack, key: str, tokens: list[str], **extra: Any) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body="\n".join(tokens).encode(), **extra)


def body_of(stack: LocalStack, key: str) -> bytes:
    return stack.client("s3").get_object(Bucket=stack.bucket, Key=key)["Body"].read()


def refs(stack: LocalStack, *keys: str) -> list[ObjectRef]:
    return [ObjectRef(stack.bucket, key) for key in keys]


def encrypt_all(emulator: KmsEmulator, tag: str, plaintexts: list[bytes]) -> list[str]:
    return [emulator.encrypt(tag, p) for p in plaintexts]


# --- the engine in every generation ----------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_engine_rotates_text_and_envelope_objects(stack: LocalStack, make_runtime: RuntimeFactory, api: str) -> None:
    # Given 250 tokens in a text object and a data key (made over HTTP) in an envelope's metadata
    runtime, sent = make_runtime(api)
    plaintexts = [f"secret-{i:03d}".encode() for i in range(250)]
    put(stack, "many.ndjson", encrypt_all(stack.kms, stack.key_tag, plaintexts))
    data_key = runtime.kms.create_custom_key(stack.key_tag, request_plain_key=True)
    stack.client("s3").put_object(
        Bucket=stack.bucket, Key="envelope.bin", Body=b"sealed", Metadata={"wrapped-key": data_key.ciphertext}
    )
    stack.kms.rotate(stack.key_tag)
    sent.clear()

    # When
    results = runtime.engine.rotate(refs(stack, "many.ndjson", "envelope.bin"))

    # Then both objects moved to v2 through this generation's re-encrypt path, within its batch limit
    assert [(r.status, r.new_version) for r in results] == [(Status.ROTATED, 2), (Status.ROTATED, 2)]
    found = scan(body_of(stack, "many.ndjson"))[0]
    assert [stack.kms.decrypt(stack.key_tag, t.text) for t in found] == plaintexts
    head = stack.client("s3").head_object(Bucket=stack.bucket, Key="envelope.bin")
    assert stack.kms.decrypt(stack.key_tag, head["Metadata"]["wrapped-key"]) == data_key.plaintext
    paths = sorted(r.url.path for r in sent if "encrypt" in r.url.path)
    expected = RE_ENCRYPT_PATHS[api].format(tag=stack.key_tag)
    if api == "v3":  # 251 tokens in batches of at most 100
        assert paths == [expected] * 3
        assert sorted(len(json.loads(r.content)["requests"]) for r in sent) == [51, 100, 100]
    else:  # 251 short tokens fit one 32 KB list
        assert paths == [expected]


@pytest.mark.parametrize("api", ["2.0", "v3"])
def test_custom_key_path_per_generation(stack: LocalStack, api: str) -> None:
    client = client_for(stack, api)
    key = client.create_custom_key(stack.key_tag, bits=128, request_plain_key=True)

    assert key.key_version == token_version(key.ciphertext) == 1
    assert key.plaintext is not None and len(key.plaintext) == 16
    assert client.decrypt(stack.key_tag, [key.ciphertext]) == [key.plaintext]


def test_demo_ends_ok_on_v3(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from rewrap_local import demo

    monkeypatch.setenv("NCP_KMS_API", "v3")

    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "NCP KMS API v3" in out and "newest version learned from key info" in out


# --- batch limits ----------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["1.0", "2.0"])
def test_lists_stay_within_32_kb(stack: LocalStack, api: str) -> None:
    client = client_for(stack, api)
    tokens = encrypt_all(stack.kms, stack.key_tag, [i.to_bytes(2, "big") * 500 for i in range(60)])  # 1,382 chars
    stack.kms.rotate(stack.key_tag)
    stack.kms.stats.reset()

    new = client.re_encrypt(stack.key_tag, tokens)

    assert {token_version(t) for t in new} == {2}
    assert [len(c) for c in client.batches(tokens)] == [23, 23, 14]
    assert stack.kms.stats.requests == {"re-encrypt": 3}


def test_v3_sends_one_item_alone_and_many_in_batches_of_100(stack: LocalStack) -> None:
    sent: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [sent.append]}, trust_env=False)
    client = client_for(stack, "v3", http=http)
    tokens = encrypt_all(stack.kms, stack.key_tag, [f"{i}".encode() for i in range(201)])
    stack.kms.rotate(stack.key_tag)

    [alone] = client.re_encrypt(stack.key_tag, tokens[:1])
    many = client.re_encrypt(stack.key_tag, tokens)

    assert token_version(alone) == 2 and {token_version(t) for t in many} == {2}
    assert [stack.kms.decrypt(stack.key_tag, t) for t in many] == [f"{i}".encode() for i in range(201)]
    single, first, second, last = sent  # 1 | 100 + 100 + 1: a lone item always takes the single endpoint
    for request, token in ((single, tokens[0]), (last, tokens[200])):
        assert request.url.path == f"/kms/v3/keys/{stack.key_tag}/re-encrypt"
        assert json.loads(request.content) == {"ciphertext": token}
    assert [len(json.loads(r.content)["requests"]) for r in (first, second)] == [100, 100]
    assert {r.url.path for r in (first, second)} == {f"/kms/v3/keys/{stack.key_tag}/batch-re-encrypt"}
    http.close()


@pytest.mark.parametrize("kind", ["short-reply", "extra-item", "bad-pattern", "lower-version"])
def test_v3_invalid_batch_replies_are_refused_then_retried(stack: LocalStack, kind: str) -> None:
    tokens = encrypt_all(stack.kms, stack.key_tag, [b"a", b"b", b"c"])
    stack.kms.rotate(stack.key_tag)
    stack.kms.rotate(stack.key_tag)
    tokens = [stack.kms.encrypt(stack.key_tag, b"d"), *tokens[1:]]  # a v3 token, so lower-version can answer v2
    stack.kms.rotate(stack.key_tag)

    stack.kms.inject(kind)
    with pytest.raises(KmsInvalidReplyError):
        client_for(stack, "v3", max_attempts=1).re_encrypt(stack.key_tag, tokens)
    stack.kms.inject(kind)
    new = client_for(stack, "v3", max_attempts=2).re_encrypt(stack.key_tag, tokens)

    assert {token_version(t) for t in new} == {4}
    assert [stack.kms.decrypt(stack.key_tag, t) for t in new] == [b"d", b"b", b"c"]


# --- v3 partial batch failures ---------------------------------------------------------------------
def test_v3_partial_batch_fails_only_the_objects_whose_tokens_failed(
    stack: LocalStack, make_runtime: RuntimeFactory
) -> None:
    # Given objects with v1 tokens, v2 tokens and both, and v1 disabled after the key moved to v3
    runtime, _ = make_runtime("v3")
    tag = stack.key_tag
    at_v1 = encrypt_all(stack.kms, tag, [b"old-1", b"old-2", b"old-mixed"])
    stack.kms.rotate(tag)
    at_v2 = encrypt_all(stack.kms, tag, [b"mid-1", b"mid-2", b"mid-mixed"])
    stack.kms.rotate(tag)
    stack.kms.disable_version(tag, 1)
    put(stack, "v1.txt", at_v1[:2])
    put(stack, "v2.txt", at_v2[:2])
    put(stack, "mixed.txt", [at_v1[2], at_v2[2]])
    before = {key: body_of(stack, key) for key in ("v1.txt", "mixed.txt")}
    stack.kms.stats.reset()

    # When all six tokens go out in one batch
    v1, v2, mixed = runtime.engine.rotate(refs(stack, "v1.txt", "v2.txt", "mixed.txt"))

    # Then the batch named the three v1 items (409, one cause), the other three went again and rotated;
    # key and version info told why the three failed
    assert stack.kms.stats.requests == {"re-encrypt": 2, "key-info": 1, "version": 1}
    assert stack.kms.stats.statuses == {409: 1, 200: 3}
    assert (v2.status, v2.rotated_tokens, v2.new_version) == (Status.ROTATED, 2, 3)
    assert [stack.kms.decrypt(tag, t.text) for t in scan(body_of(stack, "v2.txt"))[0]] == [b"mid-1", b"mid-2"]
    for failed in (v1, mixed):
        assert failed.status is Status.FAILED and failed.error is not None
        assert not failed.retryable and failed.error.code == "version-disabled"
        assert failed.error.reason.startswith(f"version-disabled: re-enable v1 to rotate it (key {tag[:12]}…")
        assert "KeyVersionDisabled" in failed.error.reason
    assert {key: body_of(stack, key) for key in ("v1.txt", "mixed.txt")} == before


def test_v3_partial_batch_error_carries_every_item_outcome(stack: LocalStack) -> None:
    # Given a batch with a disabled-version token and a token of another key between good ones
    client = client_for(stack, "v3")
    tag = stack.key_tag
    other = stack.kms.create_key()
    disabled = stack.kms.encrypt(tag, b"v1")
    stack.kms.rotate(tag)
    good = encrypt_all(stack.kms, tag, [b"g0", b"g1"])
    stack.kms.rotate(other)
    foreign = stack.kms.encrypt(other, b"elsewhere")  # v2: opens under no version of this key
    stack.kms.rotate(tag)
    stack.kms.disable_version(tag, 1)
    stack.kms.stats.reset()

    # When
    with pytest.raises(PartialBatchError) as caught:
        client.re_encrypt(tag, [good[0], disabled, foreign, good[1]])

    # Then two causes made the failure a 400; each failed item has its own permanent error
    partial = caught.value
    assert stack.kms.stats.statuses == {400: 1, 200: 1}
    assert sorted(partial.errors) == [1, 2] and not partial.retryable
    assert all(isinstance(e, KmsRejectedError) for e in partial.errors.values())
    assert "KeyVersionDisabled" in partial.errors[1].reason and "InvalidParameter" in partial.errors[2].reason
    assert [token_version(partial.results[i]) for i in (0, 3)] == [3, 3]  # type: ignore[arg-type]
    assert [stack.kms.decrypt(tag, partial.results[i]) for i in (0, 3)] == [b"g0", b"g1"]  # type: ignore[arg-type]


def test_v3_item_failures_map_onto_the_error_classes() -> None:
    failures = {
        "0": {"errorCode": "TooManyRequests", "message": "slow down"},
        "3": {"errorCode": "KeyVersionDisabled", "message": "disabled"},
        "7": {"errorCode": "InternalServerError"},
        "9": {"errorCode": "RegionMismatch"},
    }

    errors = item_errors(failures, 400)

    assert [type(errors[i]) for i in (0, 3, 7, 9)] == [
        KmsThrottledError,
        KmsRejectedError,
        KmsUnavailableError,
        KmsWrongRegionError,
    ]
    assert [errors[i].retryable for i in (0, 3, 7, 9)] == [True, False, True, False]
    assert isinstance(item_errors({"1": {"errorCode": "Mystery"}}, 503)[1], KmsUnavailableError)  # single cause
    with pytest.raises(KmsInvalidReplyError):
        item_errors({"01": {"errorCode": "InvalidParameter"}}, 400)


# --- key info --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("api", "asked"), [("1.0", "encrypt"), ("2.0", "key-info"), ("v3", "key-info")])
def test_newest_version_from_key_info_where_the_generation_has_it(
    stack: LocalStack, make_runtime: RuntimeFactory, api: str, asked: str
) -> None:
    runtime, _ = make_runtime(api)
    stack.kms.rotate(stack.key_tag)
    stack.kms.stats.reset()

    assert probe_newest_versions(runtime.kms, [stack.key_tag], Deadline(None)) == {stack.key_tag: 2}
    assert stack.kms.stats.requests == {asked: 1}
    info = runtime.kms.key_info(stack.key_tag)
    assert (info is None) == (api == "1.0")
    if info is not None:
        assert (info.key_tag, info.current_version, info.status) == (
            stack.key_tag,
            2,
            "ENABLE" if api == "2.0" else "ENABLED",
        )


# --- token auth ------------------------------------------------------------------------------------
def token_secret(stack: LocalStack, token: str) -> str:
    secret = json.dumps({"ocapiToken": token})
    return stack.client("secretsmanager").create_secret(Name=f"token-{uuid.uuid4().hex}", SecretString=secret)["ARN"]


@pytest.mark.parametrize("api", ["2.0", "v3"])
def test_token_auth_replaces_the_signature(stack: LocalStack, make_runtime: RuntimeFactory, api: str) -> None:
    # Given a secret holding only an ocapi token for the key
    runtime, sent = make_runtime(api, secret_id=token_secret(stack, stack.kms.issue_token(stack.key_tag)))
    put(stack, "token.txt", encrypt_all(stack.kms, stack.key_tag, [b"a", b"b"]))
    stack.kms.rotate(stack.key_tag)

    # When
    (result,) = runtime.engine.rotate(refs(stack, "token.txt"))

    # Then the request carried the token, no signature, on the generation's token path
    assert (result.status, result.new_version) == (Status.ROTATED, 2)
    (request,) = sent
    assert "x-ncp-ocapi-token" in request.headers
    assert not any(h.startswith("x-ncp-apigw-") or h == "x-ncp-iam-access-key" for h in request.headers)
    prefix = "/kms/v3/token/keys/" if api == "v3" else "/kms/v1/keys/"
    assert request.url.path.startswith(prefix + stack.key_tag)
    # key info is an account API: with a token the newest version comes from an encrypt probe
    assert runtime.kms.key_info(stack.key_tag) is None
    assert runtime.kms.newest_version(stack.key_tag) == 2


def test_token_of_another_key_is_refused(stack: LocalStack) -> None:
    other = stack.kms.create_key()
    client = client_for(stack, "v3", StaticCredentials(Credentials(ocapi_token=stack.kms.issue_token(other))))

    with pytest.raises(KmsAuthError):
        client.re_encrypt(stack.key_tag, [stack.kms.encrypt(stack.key_tag, b"x")])


def test_token_only_secret_cannot_speak_1_0(stack: LocalStack, make_runtime: RuntimeFactory) -> None:
    # A configuration mistake is found when the runtime is built, before any object is read
    before = stack.kms.stats.snapshot()["requests"]
    with pytest.raises(ConfigError, match="takes no token auth") as caught:
        make_runtime("1.0", secret_id=token_secret(stack, stack.kms.issue_token(stack.key_tag)))

    assert not caught.value.retryable and caught.value.code == "config"
    assert stack.kms.stats.snapshot()["requests"] == before


def test_secret_with_a_token() -> None:
    only = parse_credentials({"ocapiToken": "jwt.value.sig"})
    both = parse_credentials({"accessKey": "AK", "secretKey": "SK", "ocapiToken": "jwt.value.sig"})

    assert (only.can_sign, only.ocapi_token) == (False, "jwt.value.sig")
    assert (both.can_sign, both.ocapi_token) == (True, "jwt.value.sig")
    assert "jwt" not in repr(only) and "jwt" not in repr(both)
    for bad in ({"ocapiToken": 5}, {"ocapiToken": ""}, {"ocapiToken": "t", "accessKey": "AK"}):
        with pytest.raises(CredentialsInvalidError):
            parse_credentials(bad)


# --- region-isolated keys --------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_region_key_on_the_wrong_host_fails_clearly_and_permanently(
    stack: LocalStack, emulator: KmsEmulator, make_runtime: RuntimeFactory, api: str
) -> None:
    # Given an object under a KR-isolated key while the emulator stands for the global host
    runtime, _ = make_runtime(api)
    tag = emulator.create_key(region="kr")
    put(stack, "seoul.txt", [emulator.encrypt(tag, b"seoul")], Metadata={"ncpkms-key-tag": tag})
    emulator.rotate(tag)
    emulator.stats.reset()

    # When
    (result,) = runtime.engine.rotate(refs(stack, "seoul.txt"))

    # Then the 400 became a permanent, self-explaining failure
    assert result.status is Status.FAILED and result.error is not None
    assert result.error.code == "kms-wrong-region" and not result.retryable
    assert "region" in result.error.reason
    assert emulator.stats.statuses == {400: 1}

    # and on the KR host the same object rotates
    emulator.region = "kr"
    (result,) = runtime.engine.rotate(refs(stack, "seoul.txt"))
    assert (result.status, result.new_version) == (Status.ROTATED, 2)


def test_known_wrong_host_is_refused_before_sending() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    http = httpx.Client(transport=httpx.MockTransport(refuse))
    client = NcpKmsClient("https://ocapi-jp.ncloud.com", SIGNING, api="v3", http=http)
    tag = "KR-" + "ab" * 32

    with pytest.raises(KmsWrongRegionError, match=r"ocapi-kr\.ncloud\.com"):
        client.re_encrypt(tag, ["ncpkms:v1:AAAA"])
    assert (key_region(tag), key_region("jpn-" + "0" * 64), key_region("ab" * 32)) == ("kr", "jpn", None)
    assert wrong_region("jPn-" + "0" * 64, "https://kms.apigw.ntruss.com") is not None
    assert wrong_region("kr-" + "0" * 64, "https://ocapi-kr.ncloud.com") is None
    assert wrong_region("ab" * 32, "https://ocapi-kr.ncloud.com") is None  # global keys: any host
    assert wrong_region("kr-" + "0" * 64, "http://127.0.0.1:8787") is None  # unknown host: the server decides


# --- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("api", "endpoint"),
    [("1.0", "https://kms.apigw.ntruss.com"), ("2.0", "https://ocapi.ncloud.com"), ("v3", "https://ocapi.ncloud.com")],
)
def test_ncp_kms_api_picks_the_generation_and_its_default_host(api: str, endpoint: str) -> None:
    settings = Settings.from_env({"NCP_KMS_API": api.upper()})

    assert (settings.kms_api, settings.endpoint) == (api, endpoint) == (api, GENERATIONS[api].default_endpoint)
    assert Settings.from_env({}).kms_api == "1.0"


def test_ncp_kms_api_refusals() -> None:
    with pytest.raises(ConfigError, match="NCP_KMS_API"):
        Settings.from_env({"NCP_KMS_API": "4.0"})
    with pytest.raises(ConfigError, match="v2 only"):
        Settings.from_env({"NCP_KMS_API": "v3", "NCP_KMS_SIGNATURE_VERSION": "v1"})
    with pytest.raises(ConfigError, match="ocapi"):
        NcpKmsClient("https://kms.apigw.ntruss.com", SIGNING, api="v3")
    with pytest.raises(ConfigError, match=r"kms\.apigw"):
        NcpKmsClient("https://ocapi-kr.ncloud.com", SIGNING, api="1.0")
