"""The local NCP KMS emulator, driven over real HTTP with hand-signed requests."""

from __future__ import annotations

import base64
import email.utils
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rewrap.core.tokens import TOKEN_RE, token_version
from rewrap.ncp.signing import Credentials, signed_headers
from rewrap_local.emulator import BAD_PATTERN_ITEM, EmulatorError, KmsEmulator, main
from tests.bodies import is_token

CREDS = Credentials("AKtest0001", "SKtest-very-secret-0001", "APItest0001")
AUTH_FAILED = {"error": {"errorCode": "200", "message": "Authentication Failed"}}
NOT_FOUND = {"error": {"errorCode": "300", "message": "Not Found Exception"}}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def emu() -> Iterator[KmsEmulator]:
    with KmsEmulator(seed=7) as emulator:
        emulator.add_credentials(CREDS.access_key, CREDS.secret_key, CREDS.api_key)
        yield emulator


@pytest.fixture
def client(emu: KmsEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=5.0) as http:
        yield http


@pytest.fixture
def tag(emu: KmsEmulator) -> str:
    return emu.create_key()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def call(
    client: httpx.Client,
    path: str,
    body: Any = None,
    *,
    version: str = "v2",
    method: str = "POST",
    creds: Credentials = CREDS,
    ts: int | None = None,
    sign_path: str | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    ts = int(time.time() * 1000) if ts is None else ts
    headers = signed_headers(method, sign_path or path, ts, creds, version)  # type: ignore[arg-type]
    content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    return client.request(method, path, content=content, headers={**headers, "Content-Type": "application/json"})


def kms(client: httpx.Client, tag: str, action: str, body: Any, version: str = "v2") -> httpx.Response:
    return call(client, f"/keys/{version}/{tag}/{action}", body, version=version)


def ok_data(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["code"] == "SUCCESS"
    return payload["data"]


def rejected(response: httpx.Response, code: str = "INVALID_REQUEST") -> str:
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["code"] == code
    assert payload["data"] is None
    return payload["msg"]


# --- authentication ---------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_signature_versions_accepted(client: httpx.Client, tag: str, version: str) -> None:
    data = ok_data(kms(client, tag, "encrypt", {"plaintext": b64(b"hello")}, version=version))
    assert is_token(data["ciphertext"])


def test_wrong_signature_is_401_without_echo(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    wrong = Credentials(CREDS.access_key, "not-the-secret", CREDS.api_key)
    response = call(client, f"/keys/v2/{tag}/encrypt", {"plaintext": b64(b"x")}, creds=wrong)
    assert response.status_code == 401
    assert response.json() == AUTH_FAILED
    assert CREDS.secret_key not in response.text and CREDS.access_key not in response.text
    assert emu.stats.auth_failures == 1


@pytest.mark.parametrize("skew_ms", [-5 * 60 * 1000, 5 * 60 * 1000 + 500])
def test_stale_or_future_timestamp_is_401(client: httpx.Client, tag: str, skew_ms: int) -> None:
    ts = int(time.time() * 1000) + skew_ms
    response = call(client, f"/keys/v2/{tag}/encrypt", {"plaintext": b64(b"x")}, ts=ts)
    assert response.status_code == 401
    assert response.json() == AUTH_FAILED


def test_slightly_skewed_timestamp_is_fine(client: httpx.Client, tag: str) -> None:
    ts = int(time.time() * 1000) - 4 * 60 * 1000
    ok_data(call(client, f"/keys/v2/{tag}/encrypt", {"plaintext": b64(b"x")}, ts=ts))


def test_unknown_and_removed_access_keys_are_401(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    stranger = Credentials("AKunknown", CREDS.secret_key)
    assert call(client, f"/keys/v2/{tag}/encrypt", {"plaintext": b64(b"x")}, creds=stranger).status_code == 401
    emu.add_credentials("AKsecond", "SKsecond")
    second = Credentials("AKsecond", "SKsecond")
    ok_data(call(client, f"/keys/v2/{tag}/encrypt", {"plaintext": b64(b"x")}, creds=second))
    emu.remove_credentials("AKsecond")
    response = call(client, f"/keys/v2/{tag}/encrypt", {"plaintext": b64(b"x")}, creds=second)
    assert response.status_code == 401
    assert response.json() == AUTH_FAILED
    assert emu.stats.auth_failures == 2


def test_missing_headers_and_v1_api_key_rules(client: httpx.Client, tag: str) -> None:
    body = json.dumps({"plaintext": b64(b"x")}).encode()
    assert client.post(f"/keys/v2/{tag}/encrypt", content=body).status_code == 401
    # v2 headers on the v1 path (no API key, no v1 signature) fail
    headers = signed_headers("POST", f"/keys/v1/{tag}/encrypt", int(time.time() * 1000), CREDS, "v2")
    assert client.post(f"/keys/v1/{tag}/encrypt", content=body, headers=headers).status_code == 401
    # a wrong API key fails even when the signature matches it
    other_api = Credentials(CREDS.access_key, CREDS.secret_key, "APIother")
    response = call(client, f"/keys/v1/{tag}/encrypt", {"plaintext": b64(b"x")}, version="v1", creds=other_api)
    assert response.status_code == 401


def test_signature_covers_the_query_string(client: httpx.Client, tag: str) -> None:
    path = f"/keys/v2/{tag}/encrypt?trace=1"
    ok_data(call(client, path, {"plaintext": b64(b"x")}))
    signed_without_query = call(client, path, {"plaintext": b64(b"x")}, sign_path=f"/keys/v2/{tag}/encrypt")
    assert signed_without_query.status_code == 401


def test_unknown_key_tag_and_route_are_404(client: httpx.Client) -> None:
    response = kms(client, "f" * 64, "encrypt", {"plaintext": b64(b"x")})
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert call(client, "/keys/v2/abc/frobnicate", {}).status_code == 404
    assert call(client, "/nothing/here", {}).status_code == 404


# --- crypto round trips -----------------------------------------------------------------------------
def test_roundtrip_string_form(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    old = ok_data(kms(client, tag, "encrypt", {"plaintext": b64(b"secret data")}))["ciphertext"]
    assert token_version(old) == 1
    rotated = ok_data(call(client, f"/kms/v1/keys/{tag}/rotate"))
    assert rotated["keyTag"] == tag and rotated["version"] == 2 and isinstance(rotated["rotatedDate"], int)
    new = ok_data(kms(client, tag, "re-encrypt", {"ciphertext": old}))["newCiphertext"]
    assert isinstance(new, str) and token_version(new) == 2
    for token in (old, new):
        assert ok_data(kms(client, tag, "decrypt", {"ciphertext": token}))["plaintext"] == b64(b"secret data")
    assert emu.decrypt(tag, new) == b"secret data"


def test_roundtrip_array_form_and_alias(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    plain = [b"one", b"two", b"three"]
    old = ok_data(kms(client, tag, "encrypt", {"plaintext": [b64(p) for p in plain]}, version="v1"))["ciphertext"]
    assert isinstance(old, list) and len(old) == 3
    emu.rotate(tag)
    emu.rotate(tag)
    new = ok_data(kms(client, tag, "reencrypt", {"ciphertext": old}, version="v1"))["newCiphertext"]
    assert [token_version(t) for t in new] == [3, 3, 3]
    decrypted = ok_data(kms(client, tag, "decrypt", {"ciphertext": new}))["plaintext"]
    assert decrypted == [b64(p) for p in plain]


def test_reencrypt_of_a_current_token_still_rewraps(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"payload")
    new = ok_data(kms(client, tag, "re-encrypt", {"ciphertext": token}))["newCiphertext"]
    assert new != token and token_version(new) == 1
    assert emu.decrypt(tag, new) == b"payload"


def test_token_only_opens_under_its_own_key(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    other = emu.create_key()
    token = emu.encrypt(tag, b"payload")
    assert rejected(kms(client, other, "decrypt", {"ciphertext": token}))
    with pytest.raises(EmulatorError):
        emu.decrypt(other, token)


def test_key_info_and_versions(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    emu.rotate(tag)
    info = ok_data(call(client, f"/kms/v1/keys/{tag}", method="GET"))
    assert info["keyTag"] == tag and info["currentVersion"] == 2 == emu.current_version(tag)
    assert info["isConvergent"] is False and info["status"] == "ENABLE"
    versions = ok_data(call(client, f"/kms/v1/keys/{tag}/versions", method="GET"))["versionList"]
    assert [v["version"] for v in versions] == [1, 2]
    # admin API is signature v2 only
    assert call(client, f"/kms/v1/keys/{tag}", method="GET", version="v1").status_code == 401


def test_create_custom_key(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    data = ok_data(kms(client, tag, "createCustomKey", {"requestPlainKey": True, "bits": 512}))
    assert data["key_version"] == 1
    assert len(base64.b64decode(data["plaintext"])) == 64
    assert emu.decrypt(tag, data["ciphertext"]) == base64.b64decode(data["plaintext"])
    quiet = ok_data(kms(client, tag, "createCustomKey", {}))
    assert "plaintext" not in quiet and len(emu.decrypt(tag, quiet["ciphertext"])) == 32
    rejected(kms(client, tag, "createCustomKey", {"bits": 100}))
    rejected(kms(client, tag, "createCustomKey", {"bits": "128"}))


def test_seed_makes_keys_reproducible() -> None:
    first, second = KmsEmulator(seed=42), KmsEmulator(seed=42)
    tags = [first.create_key(convergent=True), second.create_key(convergent=True)]
    assert tags[0] == tags[1] and len(tags[0]) == 64
    assert first.encrypt(tags[0], b"p", b"c") == second.encrypt(tags[1], b"p", b"c")
    assert KmsEmulator(seed=43).create_key() != tags[0]


# --- convergent keys ---------------------------------------------------------------------------------
def test_convergent_key(client: httpx.Client, emu: KmsEmulator) -> None:
    tag = emu.create_key("conv-key", convergent=True)
    ctx = b64(b"tenant-1")
    body = {"plaintext": b64(b"same"), "context": ctx}
    first = ok_data(kms(client, tag, "encrypt", body))["ciphertext"]
    assert ok_data(kms(client, tag, "encrypt", body))["ciphertext"] == first
    other_ctx = ok_data(kms(client, tag, "encrypt", {**body, "context": b64(b"tenant-2")}))["ciphertext"]
    assert other_ctx != first
    assert "context" in rejected(kms(client, tag, "encrypt", {"plaintext": b64(b"same")}))
    assert "context" in rejected(kms(client, tag, "decrypt", {"ciphertext": first}))
    rejected(kms(client, tag, "decrypt", {"ciphertext": first, "context": b64(b"tenant-2")}))
    assert ok_data(kms(client, tag, "decrypt", {"ciphertext": first, "context": ctx}))["plaintext"] == b64(b"same")
    rejected(kms(client, tag, "encrypt", {**body, "context": b64(b"x" * 51)}))
    emu.rotate(tag)
    rewrapped = ok_data(kms(client, tag, "re-encrypt", {"ciphertext": first, "context": ctx}))["newCiphertext"]
    assert token_version(rewrapped) == 2
    assert ok_data(kms(client, tag, "encrypt", body))["ciphertext"] == rewrapped
    with pytest.raises(EmulatorError):
        emu.encrypt(tag, b"same")
    assert ok_data(call(client, f"/kms/v1/keys/{tag}", method="GET"))["isConvergent"] is True


def test_non_convergent_key_ignores_context(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = ok_data(kms(client, tag, "encrypt", {"plaintext": b64(b"p"), "context": "not base64 at all"}))
    assert emu.decrypt(tag, token["ciphertext"], b"anything") == b"p"
    rejected(kms(client, tag, "encrypt", {"plaintext": b64(b"p"), "context": 5}))


# --- limits and malformed requests -------------------------------------------------------------------
def test_list_limit_32_kb(client: httpx.Client, tag: str) -> None:
    item = b64(b"a" * 6141)  # 8,188 characters
    assert ok_data(kms(client, tag, "encrypt", {"plaintext": [item] * 4}))  # 32,752 characters
    assert "32 KB" in rejected(kms(client, tag, "encrypt", {"plaintext": [item] * 4 + ["QUFBQUFB" * 3]}))


def test_list_limit_applies_to_reencrypt(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"x" * 1000)
    count = 32_768 // len(token)
    ok_data(kms(client, tag, "re-encrypt", {"ciphertext": [token] * count}))
    rejected(kms(client, tag, "re-encrypt", {"ciphertext": [token] * (count + 1)}))


def test_single_plaintext_limit(client: httpx.Client, tag: str) -> None:
    ok_data(kms(client, tag, "encrypt", {"plaintext": b64(b"z" * 32_768)}))
    rejected(kms(client, tag, "encrypt", {"plaintext": b64(b"z" * 32_769)}))


@pytest.mark.parametrize(
    "body",
    [
        {"ciphertext": []},
        {"ciphertext": "ncpkms:v1:abc"},
        {"ciphertext": "ncpkms:v0:QUJDRA=="},
        {"ciphertext": "ncpkms:v1:" + "A" * 43_740},
        {"ciphertext": "ncpkms:v9:" + "A" * 40},
        {"ciphertext": [1, 2]},
        {},
    ],
    ids=["empty-array", "bad-base64", "version-0", "too-long", "unknown-version", "not-strings", "missing"],
)
def test_bad_ciphertext_is_400(client: httpx.Client, tag: str, body: dict[str, Any]) -> None:
    rejected(kms(client, tag, "re-encrypt", body))


def test_malformed_json_is_400(client: httpx.Client, tag: str) -> None:
    assert "JSON" in rejected(call(client, f"/keys/v2/{tag}/re-encrypt", raw=b"{not json"))
    rejected(call(client, f"/keys/v2/{tag}/re-encrypt", raw=b"[1]"))


def test_tampered_token_is_400(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"payload")
    raw = bytearray(base64.b64decode(token.split(":", 2)[2]))
    raw[-1] ^= 1
    msg = rejected(kms(client, tag, "decrypt", {"ciphertext": "ncpkms:v1:" + b64(bytes(raw))}))
    assert "payload" not in msg


def test_disabled_version(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"payload")
    emu.rotate(tag)
    emu.disable_version(tag, 1)
    assert rejected(kms(client, tag, "re-encrypt", {"ciphertext": token}), "UNPROCESSABLE_ENTITY") == "Invalid status"
    assert rejected(kms(client, tag, "decrypt", {"ciphertext": [token]}), "UNPROCESSABLE_ENTITY") == "Invalid status"
    with pytest.raises(EmulatorError):
        emu.decrypt(tag, token)
    with pytest.raises(EmulatorError):
        emu.disable_version(tag, 2)  # the current version cannot be disabled
    emu.enable_version(tag, 1)
    assert token_version(ok_data(kms(client, tag, "re-encrypt", {"ciphertext": token}))["newCiphertext"]) == 2


# --- faults -------------------------------------------------------------------------------------------
def test_fault_throttle(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"p")
    emu.inject("throttle", retry_after=1.5)
    emu.inject("throttle")
    first = kms(client, tag, "re-encrypt", {"ciphertext": token})
    assert first.status_code == 429 and first.headers["Retry-After"] == "1.5"
    assert first.json() == {"error": {"errorCode": "420", "message": "Rate Limited"}}
    second = kms(client, tag, "re-encrypt", {"ciphertext": token})
    assert second.status_code == 429 and "Retry-After" not in second.headers
    ok_data(kms(client, tag, "re-encrypt", {"ciphertext": token}))
    assert emu.stats.faults_injected["throttle"] == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_fault_server_error(client: httpx.Client, emu: KmsEmulator, tag: str, status: int) -> None:
    emu.inject("server-error", status=status)
    response = kms(client, tag, "re-encrypt", {"ciphertext": emu.encrypt(tag, b"p")})
    assert response.status_code == status
    assert response.json() == {"error": {"errorCode": "900", "message": "Unexpected Error"}}


def test_fault_times_and_action_filter(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"p")
    emu.inject("server-error", times=2, status=503)
    ok_data(kms(client, tag, "encrypt", {"plaintext": b64(b"p")}))  # other action: untouched
    assert kms(client, tag, "reencrypt", {"ciphertext": token}).status_code == 503  # alias matches
    assert kms(client, tag, "re-encrypt", {"ciphertext": token}).status_code == 503
    ok_data(kms(client, tag, "re-encrypt", {"ciphertext": token}))
    emu.inject("server-error", action=None)
    assert call(client, f"/kms/v1/keys/{tag}", method="GET").status_code == 500
    emu.inject("throttle", times=5, action="decrypt")
    assert emu.pending_faults() == [("throttle", 5, "decrypt")]
    emu.clear_faults()
    ok_data(kms(client, tag, "decrypt", {"ciphertext": token}))
    assert emu.stats.faults_injected["server-error"] == 3


def test_fault_needs_authentication(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    emu.inject("server-error")
    bad = Credentials(CREDS.access_key, "wrong")
    assert call(client, f"/keys/v2/{tag}/re-encrypt", {"ciphertext": "x"}, creds=bad).status_code == 401
    assert emu.pending_faults() == [("server-error", 1, "re-encrypt")]


def test_fault_timeout(emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"p")
    emu.inject("timeout", seconds=1.0)
    with httpx.Client(base_url=emu.url, timeout=httpx.Timeout(5.0, read=0.2)) as fast:
        with pytest.raises(httpx.ReadTimeout):
            kms(fast, tag, "re-encrypt", {"ciphertext": token})
        ok_data(kms(fast, tag, "re-encrypt", {"ciphertext": token}))
    assert emu.stats.faults_injected["timeout"] == 1


def test_fault_timeout_answers_after_the_delay(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    """A patient client gets the answer; one that waits less than the delay does not (no clock read here)."""
    token = emu.encrypt(tag, b"p")
    emu.inject("timeout", seconds=0.3)
    ok_data(kms(client, tag, "re-encrypt", {"ciphertext": token}))
    emu.inject("timeout", seconds=0.3)
    with (
        httpx.Client(base_url=emu.url, timeout=httpx.Timeout(5.0, read=0.05)) as hasty,
        pytest.raises(httpx.ReadTimeout),
    ):
        kms(hasty, tag, "re-encrypt", {"ciphertext": token})


def test_fault_reset(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"p")
    ok_data(kms(client, tag, "re-encrypt", {"ciphertext": token}))  # a pooled keep-alive connection
    emu.inject("reset")
    with pytest.raises(httpx.TransportError):
        kms(client, tag, "re-encrypt", {"ciphertext": token})
    ok_data(kms(client, tag, "re-encrypt", {"ciphertext": token}))
    assert emu.stats.faults_injected["reset"] == 1


def test_fault_non_json(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    emu.inject("non-json")
    response = kms(client, tag, "re-encrypt", {"ciphertext": emu.encrypt(tag, b"p")})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()


def test_fault_short_reply_and_extra_item(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    tokens = [emu.encrypt(tag, p) for p in (b"a", b"b", b"c")]
    emu.inject("short-reply")
    assert len(ok_data(kms(client, tag, "re-encrypt", {"ciphertext": tokens}))["newCiphertext"]) == 2
    emu.inject("extra-item")
    extra = ok_data(kms(client, tag, "re-encrypt", {"ciphertext": tokens}))["newCiphertext"]
    assert len(extra) == 4 and extra[3] == extra[2]
    emu.inject("short-reply")
    assert "newCiphertext" not in ok_data(kms(client, tag, "re-encrypt", {"ciphertext": tokens[0]}))
    emu.inject("extra-item")
    single = ok_data(kms(client, tag, "re-encrypt", {"ciphertext": tokens[0]}))["newCiphertext"]
    assert isinstance(single, list) and len(single) == 2


def test_fault_bad_pattern(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    tokens = [emu.encrypt(tag, b"a"), emu.encrypt(tag, b"b")]
    emu.inject("bad-pattern")
    new = ok_data(kms(client, tag, "re-encrypt", {"ciphertext": tokens}))["newCiphertext"]
    assert new[0] == BAD_PATTERN_ITEM and TOKEN_RE.fullmatch(new[0]) is None
    assert is_token(new[1])


def test_fault_lower_version(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    v1 = emu.encrypt(tag, b"x")
    emu.rotate(tag)
    emu.rotate(tag)
    v3 = emu.encrypt(tag, b"y")
    emu.inject("lower-version")
    new = ok_data(kms(client, tag, "re-encrypt", {"ciphertext": v3}))["newCiphertext"]
    assert token_version(new) == 2  # one lower than the input's v3
    emu.inject("lower-version")
    both = ok_data(kms(client, tag, "re-encrypt", {"ciphertext": [v1, v3]}))["newCiphertext"]
    assert [token_version(t) for t in both] == [1, 3]  # v1 cannot go lower
    assert emu.stats.faults_injected["lower-version"] == 2


def test_fault_corrupt(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    old = [emu.encrypt(tag, b"original-1"), emu.encrypt(tag, b"original-2")]
    emu.rotate(tag)
    emu.inject("corrupt")
    new = ok_data(kms(client, tag, "re-encrypt", {"ciphertext": old}))["newCiphertext"]
    assert all(is_token(t) and token_version(t) == 2 for t in new)
    assert emu.decrypt(tag, new[0]) != b"original-1"
    assert emu.decrypt(tag, new[1]) == b"original-2"


def test_response_faults_wait_for_a_successful_request(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    emu.inject("short-reply")
    rejected(kms(client, tag, "re-encrypt", {"ciphertext": "ncpkms:v1:bad"}))
    assert emu.pending_faults() == [("short-reply", 1, "re-encrypt")]
    tokens = [emu.encrypt(tag, b"a"), emu.encrypt(tag, b"b")]
    assert len(ok_data(kms(client, tag, "re-encrypt", {"ciphertext": tokens}))["newCiphertext"]) == 1
    assert emu.pending_faults() == []


def test_inject_validates_its_arguments(emu: KmsEmulator) -> None:
    with pytest.raises(ValueError):
        emu.inject("meteor")
    with pytest.raises(ValueError):
        emu.inject("server-error", status=418)
    with pytest.raises(ValueError):
        emu.inject("throttle", seconds=1)
    with pytest.raises(ValueError):
        emu.inject("reset", times=0)


# --- stats, latency, connections ----------------------------------------------------------------------
def test_stats_counters(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    tokens = ok_data(kms(client, tag, "encrypt", {"plaintext": [b64(b"a"), b64(b"b")]}))["ciphertext"]
    ok_data(call(client, f"/kms/v1/keys/{tag}/rotate"))
    ok_data(kms(client, tag, "re-encrypt", {"ciphertext": tokens}))
    ok_data(kms(client, tag, "reencrypt", {"ciphertext": tokens[0]}))
    ok_data(kms(client, tag, "decrypt", {"ciphertext": tokens[0]}))
    ok_data(kms(client, tag, "createCustomKey", {}))
    ok_data(call(client, f"/kms/v1/keys/{tag}", method="GET"))
    emu.inject("throttle")
    kms(client, tag, "re-encrypt", {"ciphertext": tokens})
    stats = emu.stats
    assert stats.requests == {
        "encrypt": 1,
        "rotate": 1,
        "re-encrypt": 3,
        "decrypt": 1,
        "createCustomKey": 1,
        "key-info": 1,
    }
    assert stats.items["re-encrypt"] == 3 and stats.items["encrypt"] == 2
    assert stats.faults_injected == {"throttle": 1}
    assert stats.statuses[200] == 7 and stats.statuses[429] == 1
    assert stats.connections == 1  # keep-alive: one connection for everything
    snapshot = stats.snapshot()
    assert snapshot["requests"]["re-encrypt"] == 3 and snapshot["auth_failures"] == 0
    stats.reset()
    assert emu.stats.requests == {} and emu.stats.snapshot()["connections"] == 0


def test_latency(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    emu.set_latency(0.2, 0.3)
    ok_data(kms(client, tag, "encrypt", {"plaintext": b64(b"p")}))
    with (
        httpx.Client(base_url=emu.url, timeout=httpx.Timeout(5.0, read=0.05)) as hasty,
        pytest.raises(httpx.ReadTimeout),
    ):
        kms(hasty, tag, "encrypt", {"plaintext": b64(b"p")})
    emu.set_latency(0)
    with pytest.raises(ValueError):
        emu.set_latency(0.2, 0.1)


def test_replies_are_not_held_back_by_nagle(emu: KmsEmulator, tag: str) -> None:
    """Headers and body leave in separate writes: with Nagle's algorithm on, the body waits for the client's
    delayed ACK (about 40 ms a request). The emulator's sockets must have TCP_NODELAY set."""
    from rewrap_local.emulator.server import Handler

    assert Handler.disable_nagle_algorithm is True


def test_stop_closes_keep_alive_connections(tag: str, emu: KmsEmulator) -> None:
    with httpx.Client(base_url=emu.url, timeout=2.0) as http:
        ok_data(kms(http, tag, "encrypt", {"plaintext": b64(b"p")}))
        emu.stop()
        with pytest.raises(httpx.TransportError):
            kms(http, tag, "encrypt", {"plaintext": b64(b"p")})
    assert not emu.running
    with pytest.raises(RuntimeError):
        _ = emu.url


def test_nothing_is_logged(capfd: pytest.CaptureFixture[str], client: httpx.Client, tag: str) -> None:
    ok_data(kms(client, tag, "encrypt", {"plaintext": b64(b"p")}))
    call(client, f"/keys/v2/{tag}/encrypt", {}, creds=Credentials(CREDS.access_key, "bad"))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_chunked_request_body(client: httpx.Client, tag: str) -> None:
    path = f"/keys/v2/{tag}/encrypt"
    headers = signed_headers("POST", path, int(time.time() * 1000), CREDS)
    body = json.dumps({"plaintext": b64(b"chunky")}).encode()
    response = client.post(path, content=iter([body[:5], body[5:]]), headers=headers)
    assert is_token(ok_data(response)["ciphertext"])


# --- command line -------------------------------------------------------------------------------------
def test_command_line_runs_and_stops_on_ctrl_c() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "layers/rewrap"), str(REPO / "local")])}
    args = ["--port", "0", "--access-key", "AKcli", "--secret-key", "SKcli", "--create-key", "cli-key"]
    proc = subprocess.Popen(  # noqa: S603 (fixed argv: this interpreter and our module)
        [sys.executable, "-m", "rewrap_local.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        assert line.rstrip().endswith("key tag cli-key")
        with httpx.Client(base_url=url, timeout=5.0) as http:
            response = call(
                http, "/keys/v2/cli-key/encrypt", {"plaintext": b64(b"p")}, creds=Credentials("AKcli", "SKcli")
            )
            assert is_token(ok_data(response)["ciphertext"])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "SKcli" not in out + err + line


def test_main_rejects_missing_credentials() -> None:
    with pytest.raises(SystemExit):
        main(["--port", "0"])


# --- API 2.0 and v3 -----------------------------------------------------------------------------------
def v3(client: httpx.Client, tag: str, action: str, body: Any, *, token: str | None = None) -> httpx.Response:
    if token is None:
        return call(client, f"/kms/v3/keys/{tag}/{action}", body)
    return client.post(f"/kms/v3/token/keys/{tag}/{action}", json=body, headers={"x-ncp-ocapi-token": token})


def v3_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["errorCode"] == code
    return error


def test_v2_crypto_paths_share_the_keys(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"payload")
    emu.rotate(tag)

    response = call(client, f"/kms/v1/keys/{tag}/re-encrypt", {"ciphertext": [token, token]})

    assert response.status_code == 200
    assert set(response.json()) == {"code", "data"}  # 2.0: no msg
    new = response.json()["data"]["newCiphertext"]
    assert [token_version(t) for t in new] == [2, 2] and emu.decrypt(tag, new[0]) == b"payload"
    custom = ok_data(call(client, f"/kms/v1/keys/{tag}/create-custom-key", {"requestPlainKey": True}))
    assert emu.decrypt(tag, custom["ciphertext"]) == base64.b64decode(custom["plaintext"])
    assert emu.stats.requests == {"re-encrypt": 1, "createCustomKey": 1}


def test_v3_single_item_endpoints(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    made = v3(client, tag, "encrypt", {"plaintext": b64(b"v3 data")})
    assert made.status_code == 200 and set(made.json()) == {"ciphertext"}  # bare body
    emu.rotate(tag)

    new = v3(client, tag, "re-encrypt", {"ciphertext": made.json()["ciphertext"]}).json()["newCiphertext"]
    plain = v3(client, tag, "decrypt", {"ciphertext": new}).json()["plaintext"]
    custom = v3(client, tag, "issue-custom-key", None).json()

    assert token_version(new) == 2 and base64.b64decode(plain) == b"v3 data"
    assert custom["keyVersion"] == 2 and "plaintext" not in custom
    error = v3_error(v3(client, tag, "re-encrypt", {"ciphertext": [new]}), 400, "InvalidParameter")
    assert error["fieldErrors"][0]["field"] == "ciphertext"
    v3_error(v3(client, "no-such-key", "encrypt", {"plaintext": b64(b"x")}), 404, "NotFound")


def test_v3_batch_success_is_keyed_by_request_index(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    tokens = [emu.encrypt(tag, p) for p in (b"a", b"b", b"c")]
    emu.rotate(tag)

    response = v3(client, tag, "batch-re-encrypt", {"requests": [{"ciphertext": t} for t in tokens]})

    results = response.json()["results"]
    assert response.status_code == 200 and sorted(results) == ["0", "1", "2"]
    assert [emu.decrypt(tag, results[str(i)]["newCiphertext"]) for i in range(3)] == [b"a", b"b", b"c"]
    assert emu.stats.requests == {"re-encrypt": 1} and emu.stats.items == {"re-encrypt": 3}
    encrypted = v3(client, tag, "batch-encrypt", {"requests": [{"plaintext": b64(b"x")}, {"plaintext": b64(b"y")}]})
    opened = v3(client, tag, "batch-decrypt", {"requests": list(encrypted.json()["results"].values())})
    assert [base64.b64decode(opened.json()["results"][i]["plaintext"]) for i in ("0", "1")] == [b"x", b"y"]


def test_v3_batch_checks_in_two_phases_and_names_only_failed_items(
    client: httpx.Client, emu: KmsEmulator, tag: str
) -> None:
    old = emu.encrypt(tag, b"old")
    emu.rotate(tag)
    good = emu.encrypt(tag, b"good")
    emu.rotate(tag)
    emu.disable_version(tag, 1)
    batch = [{"ciphertext": good}, {"ciphertext": old}, {"ciphertext": "not-a-token"}]

    # phase one (format) reports only the malformed item; phase two then finds the disabled version
    first = v3(client, tag, "batch-re-encrypt", {"requests": batch})
    assert first.status_code == 400 and list(first.json()["failures"]) == ["2"]
    second = v3(client, tag, "batch-re-encrypt", {"requests": batch[:2]})
    assert second.status_code == 409  # a single cause answers with its own status
    assert second.json() == {"failures": {"1": {"errorCode": "KeyVersionDisabled", "message": "Invalid status"}}}
    assert emu.stats.items == {}  # atomic: nothing was processed


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requests": []}, "requests"),
        ({"requests": [{"ciphertext": "ncpkms:v1:AAAA"}] * 101}, "requests"),
        ({"requests": [{"ciphertext": 5}]}, "requests[0].ciphertext"),
        ({"requests": [{"ciphertext": "ncpkms:v1:AAAA", "context": 1}]}, "requests[0].context"),
    ],
    ids=["empty", "101-items", "number", "context-type"],
)
def test_v3_batch_shape_errors_refuse_the_whole_request(
    client: httpx.Client, tag: str, body: dict[str, Any], field: str
) -> None:
    error = v3_error(v3(client, tag, "batch-re-encrypt", body), 400, "InvalidParameter")
    assert error["fieldErrors"][0]["field"] == field


def test_v3_key_info_rotation_and_version_state(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    created = call(client, f"/kms/v3/keys/{tag}/versions", None)
    assert created.status_code == 201 and created.json() == {"version": 2, "status": "ENABLED"}
    info = call(client, f"/kms/v3/keys/{tag}", method="GET").json()
    assert (info["keyTag"], info["currentVersion"], info["status"]) == (tag, 2, "ENABLED")

    patched = call(client, f"/kms/v3/keys/{tag}/versions/1", {"status": "DISABLED"}, method="PATCH")
    assert {k: patched.json()[k] for k in ("version", "status", "current")} == {
        "version": 1,
        "status": "DISABLED",
        "current": False,
    }
    assert call(client, f"/kms/v3/keys/{tag}/versions/1", method="GET").json()["status"] == "DISABLED"
    v3_error(
        call(client, f"/kms/v3/keys/{tag}/versions/2", {"status": "DISABLED"}, method="PATCH"), 400, "InvalidParameter"
    )
    v3_error(call(client, f"/kms/v3/keys/{tag}/versions/0x1", method="GET"), 400, "InvalidParameter")
    v3_error(call(client, f"/kms/v3/keys/{tag}/versions/9", method="GET"), 404, "NotFound")


def test_token_auth(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.issue_token(tag)
    other = emu.issue_token(emu.create_key())
    plaintext = {"plaintext": b64(b"t")}

    assert v3(client, tag, "encrypt", plaintext, token=token).status_code == 200
    v2 = client.post(f"/kms/v1/keys/{tag}/encrypt", json=plaintext, headers={"x-ncp-ocapi-token": token})
    assert v2.status_code == 200 and is_token(v2.json()["data"]["ciphertext"])
    assert v3(client, tag, "encrypt", plaintext, token=other).status_code == 401  # another key's token
    for path in (f"/kms/v3/keys/{tag}/encrypt", f"/keys/v2/{tag}/encrypt", f"/kms/v1/keys/{tag}/rotate"):
        assert client.post(path, json=plaintext, headers={"x-ncp-ocapi-token": token}).status_code == 401
    assert client.post(f"/kms/v3/token/keys/{tag}/encrypt", json=plaintext).status_code == 401
    emu.revoke_token(token)
    assert v3(client, tag, "encrypt", plaintext, token=token).status_code == 401


def test_region_isolated_keys_answer_only_on_their_region(client: httpx.Client, emu: KmsEmulator) -> None:
    tag = emu.create_key(region="jpn")
    body = {"plaintext": b64(b"tokyo")}
    assert tag.startswith("jpn-") and len(tag) == 68

    assert rejected(kms(client, tag, "encrypt", body), "REGION_MISMATCH")
    assert rejected(call(client, f"/kms/v1/keys/{tag}/encrypt", body), "REGION_MISMATCH")
    v3_error(v3(client, tag, "encrypt", body), 400, "RegionMismatch")
    emu.region = "kr"
    v3_error(v3(client, tag, "encrypt", body), 400, "RegionMismatch")
    emu.region = "jpn"
    assert v3(client, tag, "encrypt", body).status_code == 200
    upper = emu.create_key("JPN-" + "ab" * 32)  # the prefix is case-insensitive
    assert v3(client, upper, "encrypt", body).status_code == 200
    assert v3(client, emu.create_key(), "encrypt", body).status_code == 200  # global keys work everywhere
    with pytest.raises(ValueError, match="region"):
        emu.region = "eu"


# --- strict switches, key states, tokens with exp, request ids (where the docs disagree) ---------------
@pytest.mark.parametrize("spelling", ["reencrypt", "re-encrypt"])
def test_strict_spelling_serves_one_re_encrypt_path(
    client: httpx.Client, emu: KmsEmulator, tag: str, spelling: str
) -> None:
    token = emu.encrypt(tag, b"p")
    emu.re_encrypt_spelling = spelling
    other = "re-encrypt" if spelling == "reencrypt" else "reencrypt"

    for base in (f"/keys/v2/{tag}", f"/kms/v1/keys/{tag}"):
        assert call(client, f"{base}/{spelling}", {"ciphertext": token}).status_code == 200
        missing = call(client, f"{base}/{other}", {"ciphertext": token})
        assert (missing.status_code, missing.json()) == (404, NOT_FOUND)
    emu.reset_switches()
    assert call(client, f"/keys/v2/{tag}/{other}", {"ciphertext": token}).status_code == 200


@pytest.mark.parametrize("field", ["newCiphertext", "ciphertext"])
def test_v3_re_encrypt_result_field_switch(client: httpx.Client, emu: KmsEmulator, tag: str, field: str) -> None:
    token = emu.encrypt(tag, b"p")
    emu.v3_re_encrypt_field = field

    single = v3(client, tag, "re-encrypt", {"ciphertext": token}).json()
    batch = v3(client, tag, "batch-re-encrypt", {"requests": [{"ciphertext": token}]}).json()

    assert list(single) == [field] and is_token(single[field])
    assert list(batch["results"]["0"]) == [field]


def test_2_0_without_arrays_refuses_an_array_body(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"p")
    emu.arrays_2_0 = False

    refused = call(client, f"/kms/v1/keys/{tag}/re-encrypt", {"ciphertext": [token, token]})
    single = call(client, f"/kms/v1/keys/{tag}/re-encrypt", {"ciphertext": token})

    assert refused.status_code == 400 and "Invalid type" in refused.json()["msg"]
    assert single.status_code == 200
    assert ok_data(kms(client, tag, "re-encrypt", {"ciphertext": [token, token]}))  # 1.0 keeps arrays


@pytest.mark.parametrize(("state", "v2_state"), [("DISABLED", "DISABLE"), ("REVOKED", "REVOKE")])
def test_a_key_not_enabled_refuses_crypto_and_shows_its_state(
    client: httpx.Client, emu: KmsEmulator, tag: str, state: str, v2_state: str
) -> None:
    token = emu.encrypt(tag, b"p")
    emu.set_key_state(tag, state)

    assert rejected(kms(client, tag, "reencrypt", {"ciphertext": token}), "UNPROCESSABLE_ENTITY") == "Invalid status"
    v3_error(v3(client, tag, "re-encrypt", {"ciphertext": token}), 409, "KeyNotEnabled")
    assert call(client, f"/kms/v1/keys/{tag}", method="GET").json()["data"]["status"] == v2_state
    assert call(client, f"/kms/v3/keys/{tag}", method="GET").json()["status"] == state
    emu.set_key_state(tag, "ENABLED")
    assert ok_data(kms(client, tag, "reencrypt", {"ciphertext": token}))


def test_tokens_are_jwts_and_refused_after_their_exp(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    plaintext = {"plaintext": b64(b"p")}
    lasting, expired = emu.issue_token(tag, expires_in=600), emu.issue_token(tag, expires_in=-1)
    claims = json.loads(base64.urlsafe_b64decode(lasting.split(".")[1] + "=="))

    assert claims["sub"] == tag and claims["exp"] > time.time() + 500
    assert v3(client, tag, "encrypt", plaintext, token=lasting).status_code == 200
    assert v3(client, tag, "encrypt", plaintext, token=expired).status_code == 401


def test_replies_carry_a_request_id_and_the_emulator_clock(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    first = kms(client, tag, "encrypt", {"plaintext": b64(b"p")})
    emu.clock_offset = 3600
    skewed = kms(client, tag, "encrypt", {"plaintext": b64(b"p")})

    assert first.headers["x-ncp-request-id"] != skewed.headers["x-ncp-request-id"]
    assert skewed.status_code == 401  # our timestamp is an hour behind the emulator's clock
    date = email.utils.parsedate_to_datetime(skewed.headers["Date"]).timestamp()
    assert abs(date - (time.time() + 3600)) < 5
