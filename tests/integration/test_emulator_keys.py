"""Key management in the emulator, over real HTTP with hand-signed requests: version lists, enabling and
disabling versions under NCP's rules, what a disabled version or key refuses, sub-account permissions,
and the activity history (2.0 and v3; 1.0 has none)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rewrap.ncp.management import MANAGEMENT, activity_from, iso
from rewrap.ncp.signing import Credentials, signed_headers
from rewrap_local.emulator import KmsEmulator

CREDS = Credentials("AKkeys0001", "SKkeys-very-secret-0001")
VIEWER = Credentials("AKview0001", "SKview-very-secret-0001")
PERMISSION_DENIED = {"error": {"errorCode": "210", "message": "Permission Denied"}}


@pytest.fixture
def emu() -> Iterator[KmsEmulator]:
    with KmsEmulator(seed=11) as emulator:
        emulator.add_credentials(CREDS.access_key, CREDS.secret_key)
        emulator.add_credentials(VIEWER.access_key, VIEWER.secret_key)
        emulator.allow_management(VIEWER.access_key, False)
        yield emulator


@pytest.fixture
def client(emu: KmsEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=5.0) as http:
        yield http


@pytest.fixture
def tag(emu: KmsEmulator) -> str:
    """A key at v3 (v1 and v2 older)."""
    tag = emu.create_key()
    emu.rotate(tag)
    emu.rotate(tag)
    return tag


def call(client: httpx.Client, method: str, path: str, body: Any = None, creds: Credentials = CREDS) -> httpx.Response:
    headers = signed_headers(method, path, int(time.time() * 1000), creds, "v2")
    content = json.dumps(body).encode() if body is not None else None
    return client.request(method, path, content=content, headers={**headers, "Content-Type": "application/json"})


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# --- 2.0 -----------------------------------------------------------------------------------------------
def test_2_0_disable_and_enable_a_version(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    old = emu.encrypt(tag, b"kept at v3")
    emu.rotate(tag)  # v4 current; the token is on v3
    listed = data(call(client, "GET", f"/kms/v1/keys/{tag}/versions"))
    assert listed["currentVersion"] == 4
    assert [(v["version"], v["status"]) for v in listed["versionList"]] == [(n, "ENABLE") for n in (1, 2, 3, 4)]
    assert all(isinstance(v["statusDate"], int) and isinstance(v["rotatedDate"], int) for v in listed["versionList"])

    disabled = data(call(client, "POST", f"/kms/v1/keys/{tag}/versions/3/disable"))
    assert (disabled["version"], disabled["status"]) == (3, "DISABLE") and isinstance(disabled["statusDate"], int)
    assert emu.version_states(tag)[3] == "DISABLED"
    for action in ("decrypt", "re-encrypt"):
        refused = call(client, "POST", f"/kms/v1/keys/{tag}/{action}", {"ciphertext": old})
        assert refused.status_code == 400
        assert refused.json()["code"] == "UNPROCESSABLE_ENTITY", refused.text

    enabled = data(call(client, "POST", f"/kms/v1/keys/{tag}/versions/3/enable"))
    assert enabled["status"] == "ENABLE"
    assert base64.b64decode(data(call(client, "POST", f"/kms/v1/keys/{tag}/decrypt", {"ciphertext": old}))["plaintext"])


def test_2_0_rules_current_version_and_disabled_key(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    current = call(client, "POST", f"/kms/v1/keys/{tag}/versions/3/disable")
    assert current.status_code == 400 and "current version" in current.json()["msg"]
    missing = call(client, "POST", f"/kms/v1/keys/{tag}/versions/9/disable")
    assert missing.status_code == 404
    for state in ("DISABLED", "REVOKED"):
        emu.set_key_state(tag, state)
        refused = call(client, "POST", f"/kms/v1/keys/{tag}/versions/1/disable")
        assert (refused.status_code, refused.json()["code"]) == (400, "UNPROCESSABLE_ENTITY")
        assert emu.version_states(tag)[1] == "ENABLED"
        listed = data(call(client, "GET", f"/kms/v1/keys/{tag}/versions"))  # reading still answers
        assert listed["currentVersion"] == 3
    emu.set_key_state(tag, "ENABLED")


@pytest.mark.parametrize("strict", [False, True])
def test_2_0_changing_a_version_to_its_own_state(
    client: httpx.Client, emu: KmsEmulator, tag: str, strict: bool
) -> None:
    emu.refuse_unchanged_version_2_0 = strict
    assert call(client, "POST", f"/kms/v1/keys/{tag}/versions/1/disable").status_code == 200
    again = call(client, "POST", f"/kms/v1/keys/{tag}/versions/1/disable")
    assert again.status_code == (400 if strict else 200), again.text
    assert emu.version_states(tag)[1] == "DISABLED"


# --- v3 ------------------------------------------------------------------------------------------------
def test_v3_lists_pages_and_patches_versions(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    first = call(client, "GET", f"/kms/v3/keys/{tag}/versions?pageNo=0&pageSize=2").json()
    second = call(client, "GET", f"/kms/v3/keys/{tag}/versions?pageNo=1&pageSize=2").json()
    assert [v["version"] for v in first["versions"] + second["versions"]] == [1, 2, 3]
    assert first["totalCount"] == 3 and [v["current"] for v in second["versions"]] == [True]
    assert call(client, "GET", f"/kms/v3/keys/{tag}/versions?pageSize=201").status_code == 400

    unchanged = call(client, "PATCH", f"/kms/v3/keys/{tag}/versions/2", {})
    assert (unchanged.status_code, unchanged.json()["status"]) == (200, "ENABLED")
    assert (
        call(client, "PATCH", f"/kms/v3/keys/{tag}/versions/2", {"status": "DISABLED"}).json()["status"] == "DISABLED"
    )
    assert call(client, "PATCH", f"/kms/v3/keys/{tag}/versions/2", {"status": "DISABLED"}).status_code == 200
    current = call(client, "PATCH", f"/kms/v3/keys/{tag}/versions/3", {"status": "DISABLED"})
    assert (current.status_code, current.json()["error"]["errorCode"]) == (400, "InvalidParameter")
    assert call(client, "PATCH", f"/kms/v3/keys/{tag}/versions/0x2", {"status": "ENABLED"}).status_code == 400
    assert emu.version_states(tag) == {1: "ENABLED", 2: "DISABLED", 3: "ENABLED"}


def test_v3_disabled_version_and_key_refuse_with_ncp_errors(client: httpx.Client, emu: KmsEmulator, tag: str) -> None:
    token = emu.encrypt(tag, b"at v3")
    emu.rotate(tag)
    call(client, "PATCH", f"/kms/v3/keys/{tag}/versions/3", {"status": "DISABLED"})
    for action in ("decrypt", "re-encrypt"):
        refused = call(client, "POST", f"/kms/v3/keys/{tag}/{action}", {"ciphertext": token})
        assert (refused.status_code, refused.json()["error"]["errorCode"]) == (409, "KeyVersionDisabled")
    emu.set_key_state(tag, "REVOKED")
    for method, path, body in (
        ("POST", f"/kms/v3/keys/{tag}/encrypt", {"plaintext": b64(b"x")}),
        ("PATCH", f"/kms/v3/keys/{tag}/versions/3", {"status": "ENABLED"}),
    ):
        refused = call(client, method, path, body)
        assert (refused.status_code, refused.json()["error"]["errorCode"]) == (409, "KeyNotEnabled"), path
    assert call(client, "GET", f"/kms/v3/keys/{tag}").json()["status"] == "REVOKED"


# --- every generation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/kms/v3/keys/{tag}/versions/1", {"status": "DISABLED"}),
        ("POST", "/kms/v1/keys/{tag}/versions/1/disable", None),
        ("POST", "/kms/v1/keys/{tag}/rotate", None),
    ],
)
def test_a_viewer_policy_reads_but_changes_nothing(
    client: httpx.Client, emu: KmsEmulator, tag: str, method: str, path: str, body: Any
) -> None:
    refused = call(client, method, path.format(tag=tag), body, creds=VIEWER)
    assert (refused.status_code, refused.json()) == (401, PERMISSION_DENIED)
    assert emu.version_states(tag) == {1: "ENABLED", 2: "ENABLED", 3: "ENABLED"}
    assert call(client, "GET", f"/kms/v3/keys/{tag}/versions/1", creds=VIEWER).status_code == 200
    assert call(client, "GET", f"/kms/v1/keys/{tag}/versions", creds=VIEWER).status_code == 200


def test_1_0_has_no_key_management(client: httpx.Client, tag: str) -> None:
    for method, path in (("GET", f"/keys/v2/{tag}/versions"), ("POST", f"/keys/v2/{tag}/versions/1/disable")):
        refused = call(client, method, path)
        assert (refused.status_code, refused.json()["error"]["errorCode"]) == (404, "300")


@pytest.mark.parametrize("api", ["2.0", "v3"])
def test_activity_history_records_calls_newest_first(
    client: httpx.Client, emu: KmsEmulator, tag: str, api: str
) -> None:
    token = emu.encrypt(tag, b"old")
    emu.rotate(tag)
    emu.disable_version(tag, 3)
    base = "/kms/v1/keys" if api == "2.0" else "/kms/v3/keys"
    call(client, "POST", f"{base}/{tag}/decrypt", {"ciphertext": token})  # refused: v3 is disabled
    call(client, "POST", f"{base}/{tag}/encrypt", {"plaintext": b64(b"new")})
    management = MANAGEMENT[api]
    now = int(time.time() * 1000)
    path = management.activities_path(tag, now - 60_000, now + 60_000, management.first_page)
    reply = call(client, "GET", path).json()
    entries = (reply["data"] if api == "2.0" else reply)[management.activity_list]
    activities = [activity_from(entry) for entry in entries]
    assert [(a.action, a.succeeded) for a in activities if a is not None] == [("encrypt", True), ("decrypt", False)]
    assert activities[1] is not None and activities[1].opens_ciphertext and activities[1].requestor == CREDS.access_key
    assert all(a is not None and not a.opens_ciphertext for a in activities[:1])

    # entries arrive late: with a delay the latest ones are not there yet
    emu.activity_delay = 3600
    late = call(client, "GET", path).json()
    assert (late["data"] if api == "2.0" else late)[management.activity_list] == []
    # a period before the calls holds none of them
    early = management.activities_path(tag, now - 7_200_000, now - 3_600_000, management.first_page)
    emu.activity_delay = 0
    before = call(client, "GET", early).json()
    assert (before["data"] if api == "2.0" else before)[management.activity_list] == []
    assert emu.history(tag)[0].action == "encrypt"  # reading the history is not itself recorded


def test_activity_periods_are_checked(client: httpx.Client, tag: str) -> None:
    bad_v3 = call(client, "GET", f"/kms/v3/keys/{tag}/activities?startDateTime=yesterday")
    assert bad_v3.status_code == 400
    bad_2_0 = call(client, "GET", f"/kms/v1/keys/{tag}/activities?timestampFrom={iso(0)}")
    assert bad_2_0.status_code == 400
