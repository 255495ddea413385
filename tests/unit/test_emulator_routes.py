"""The emulator serves exactly the paths the client builds from ``rewrap.ncp.generations``: every crypto
path (each spelling, signature, token and batch form), key info and versions, and nothing beside them."""

from __future__ import annotations

import pytest

from rewrap.ncp.generations import GENERATIONS, Generation
from rewrap.ncp.management import MANAGEMENT
from rewrap_local.emulator.routes import RE_ENCRYPT_SPELLINGS, route

TAG = "kr-" + "ab" * 32
ACTIONS = {"encrypt": "encrypt", "decrypt": "decrypt", "re-encrypt": "re-encrypt", "custom-key": "createCustomKey"}


def client_paths(gen: Generation) -> list[tuple[str, str, bool, str]]:
    """(path, operation, batch, auth) for every crypto request the client can send to ``gen``."""
    paths = []
    for operation in gen.actions:
        for segment in gen.spellings(operation):
            for signature in gen.signatures:
                paths.append(
                    (gen.path(operation, TAG, signature=signature, segment=segment), operation, False, signature)
                )
            if gen.token_auth:
                paths.append(
                    (gen.path(operation, TAG, signature="v2", token=True, segment=segment), operation, False, "token")
                )
    for operation in gen.batch_actions:
        paths.append((gen.path(operation, TAG, signature="v2", batch=True), operation, True, "v2"))
        paths.append((gen.path(operation, TAG, signature="v2", batch=True, token=True), operation, True, "token"))
    return paths


@pytest.mark.parametrize("api", list(GENERATIONS))
def test_every_client_crypto_path_is_served(api: str) -> None:
    gen = GENERATIONS[api]
    paths = client_paths(gen)
    assert len(paths) >= len(gen.actions)
    for path, operation, batch, auth in paths:
        found = route("POST", path)
        assert found is not None, path
        assert (found.api, found.tag, found.action, found.batch) == (api, TAG, ACTIONS[operation], batch), path
        assert auth in found.auth, path
        assert route("GET", path) is None, path  # crypto calls are POSTs
        assert route("POST", path + "/") is None and route("POST", path + "/x") is None, path


@pytest.mark.parametrize("api", list(GENERATIONS))
def test_key_info_and_versions_where_the_client_asks(api: str) -> None:
    gen = GENERATIONS[api]
    info = route("GET", gen.key_path(TAG))
    versions = route("GET", gen.versions_path(TAG, 2)) if gen.version_info else None
    if not gen.key_info:
        assert info is None and versions is None  # 1.0 has no key administration
        return
    assert info is not None and (info.api, info.action, info.auth) == (api, "key-info", {"v2"})
    assert versions is not None and versions.action == ("versions" if gen.version_info == "list" else "version")
    assert route("GET", gen.key_path(TAG, token=True)) in (None, info)  # never through the token prefix alone
    if gen.rotate_segment is not None:
        rotate = route("POST", f"{gen.key_path(TAG)}/{gen.rotate_segment}")
        assert rotate is not None and rotate.action == "rotate"


def test_unknown_prefixes_and_segments_are_not_served() -> None:
    for path in (
        "/kms/v2/keys/T/encrypt",
        "/keys/v3/T/encrypt",
        "/keys/v2/T",
        "/keys/v2//encrypt",
        "/kms/v3/keys/T/sign",
    ):
        assert route("POST", path) is None, path


def test_strict_spelling_applies_where_the_table_lists_two_spellings() -> None:
    for api, gen in GENERATIONS.items():
        expected = set(gen.spellings("re-encrypt")) if len(gen.spellings("re-encrypt")) > 1 else set()
        assert RE_ENCRYPT_SPELLINGS[api] == expected
    assert RE_ENCRYPT_SPELLINGS["1.0"] == {"reencrypt", "re-encrypt"} and not RE_ENCRYPT_SPELLINGS["v3"]


@pytest.mark.parametrize("api", list(MANAGEMENT))
def test_every_management_call_the_client_builds_is_served(api: str) -> None:
    management = MANAGEMENT[api]
    for enable in (True, False):
        method, path, _ = management.state_change(TAG, 2, enable)
        found = route(method, path)
        assert found is not None and found.action in ("set-version", "update-version") and found.version == "2", path
        assert found.auth == {"v2"}, path  # signature only: tokens reach no management call
    listed = route("GET", management.versions_path(TAG).split("?")[0])
    history = route("GET", management.activities_path(TAG, 0, 1, 0).split("?")[0])
    assert listed is not None and listed.action == "versions"
    assert history is not None and history.action == "activities"
    assert route("GET", management.version_path(TAG, 2) + "/disable") is None


def test_1_0_serves_no_management_call() -> None:
    gen = GENERATIONS["1.0"]
    for method, suffix in (("GET", "versions"), ("GET", "activities"), ("POST", "versions/1/disable")):
        assert route(method, f"{gen.key_path(TAG)}/{suffix}") is None
