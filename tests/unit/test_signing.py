"""NCP API Gateway signatures: the reference test vectors (§2.3) and the header sets."""

from __future__ import annotations

import pytest

from rewrap.errors import ConfigError
from rewrap.ncp.signing import (
    ACCESS_KEY_HEADER,
    API_KEY_HEADER,
    SIGNATURE_HEADERS,
    TIMESTAMP_HEADER,
    Credentials,
    sign,
    signed_headers,
    string_to_sign,
)

TS = 1_700_000_000_000
CREDS = Credentials("access-key", "secret-key", "api-key")

# (method, uri, apiKey, expected string-to-sign, expected signature) from ncp-kms-api.md §2.3
VECTORS = [
    (
        "POST",
        "/keys/v2/my-key/encrypt",
        None,
        "POST /keys/v2/my-key/encrypt\n1700000000000\naccess-key",
        "nN4Khw0rV/jdEssNpeGwcKkrj5NCYo3YCGYNziynwgI=",
    ),
    (
        "POST",
        "/keys/v1/my-key/encrypt",
        "api-key",
        "POST /keys/v1/my-key/encrypt\n1700000000000\napi-key\naccess-key",
        "85o8+skWEdZauKhdhbrqM6lnIMkL3hcNZDzyuBfJ6i8=",
    ),
    (
        "GET",
        "/kms/v1/keys?pageNo=1&pageSize=20",
        None,
        "GET /kms/v1/keys?pageNo=1&pageSize=20\n1700000000000\naccess-key",
        "yQAChZYk83lhvFAd2GxpekUNIEfdbqgwOhM+j+7bWA4=",
    ),
]


@pytest.mark.parametrize(("method", "uri", "api_key", "message", "signature"), VECTORS, ids=["v2", "v1", "query"])
def test_reference_vectors(method: str, uri: str, api_key: str | None, message: str, signature: str) -> None:
    assert string_to_sign(method, uri, TS, "access-key", api_key) == message
    assert sign("secret-key", message) == signature


def test_method_is_upper_cased() -> None:
    assert string_to_sign("post", "/keys/v2/my-key/encrypt", TS, "access-key") == VECTORS[0][3]


def test_v2_header_set() -> None:
    headers = signed_headers("POST", "/keys/v2/my-key/encrypt", TS, CREDS, "v2")

    assert headers == {
        TIMESTAMP_HEADER: "1700000000000",
        ACCESS_KEY_HEADER: "access-key",
        "x-ncp-apigw-signature-v2": "nN4Khw0rV/jdEssNpeGwcKkrj5NCYo3YCGYNziynwgI=",
    }
    assert API_KEY_HEADER not in headers  # v2 never sends the API key, even when it is known


def test_v1_header_set() -> None:
    headers = signed_headers("POST", "/keys/v1/my-key/encrypt", TS, CREDS, "v1")

    assert headers == {
        TIMESTAMP_HEADER: "1700000000000",
        ACCESS_KEY_HEADER: "access-key",
        API_KEY_HEADER: "api-key",
        "x-ncp-apigw-signature-v1": "85o8+skWEdZauKhdhbrqM6lnIMkL3hcNZDzyuBfJ6i8=",
    }
    assert SIGNATURE_HEADERS["v2"] not in headers


def test_default_version_is_v2() -> None:
    assert SIGNATURE_HEADERS["v2"] in signed_headers("POST", "/keys/v2/k/encrypt", TS, CREDS)


@pytest.mark.parametrize("api_key", [None, ""])
def test_v1_without_api_key_is_refused(api_key: str | None) -> None:
    credentials = Credentials("access-key", "secret-key", api_key)

    with pytest.raises(ConfigError, match="apiKey") as caught:
        signed_headers("POST", "/keys/v1/my-key/encrypt", TS, credentials, "v1")
    assert "secret-key" not in str(caught.value)
    assert not caught.value.retryable and caught.value.code == "config"  # a mistake to fix, not to retry


def test_signature_depends_on_every_input() -> None:
    base = signed_headers("POST", "/keys/v2/k/encrypt", TS, CREDS)[SIGNATURE_HEADERS["v2"]]
    variants = [
        signed_headers("POST", "/keys/v2/k/decrypt", TS, CREDS),
        signed_headers("POST", "/keys/v2/k/encrypt", TS + 1, CREDS),
        signed_headers("POST", "/keys/v2/k/encrypt", TS, Credentials("access-key", "other-secret")),
        signed_headers("POST", "/keys/v2/k/encrypt", TS, Credentials("other-access", "secret-key")),
        signed_headers("GET", "/keys/v2/k/encrypt", TS, CREDS),
    ]

    assert all(v[SIGNATURE_HEADERS["v2"]] != base for v in variants)


def test_repr_hides_secrets() -> None:
    credentials = Credentials("AKIDEXAMPLE12345", "s3cr3t-Secret-Key-Value", "apigw-Key-Value-789")

    shown = repr(credentials)

    assert "s3cr3t-Secret-Key-Value" not in shown
    assert "apigw-Key-Value-789" not in shown
    assert "AKIDEXAMPLE12345" not in shown  # only a prefix of the access key is shown
    assert shown.startswith("Credentials(")
    assert "s3cr3t-Secret-Key-Value" not in str(credentials)
    assert "s3cr3t-Secret-Key-Value" not in f"{[credentials]}"
