"""The metadata names and the one envelope detector the engine and the census share."""

from __future__ import annotations

import base64

import pytest

from rewrap.core.metadata import (
    CONTEXT_METADATA,
    CONTROL_METADATA,
    KEY_TAG_METADATA,
    STAMP_CHECKSUM_METADATA,
    STAMP_SIZE_METADATA,
    STAMP_VERSION_METADATA,
    context_of,
    scan_metadata,
    stamped_version,
    stamps,
)
from rewrap.errors import ObjectRejectedError

TOKEN = "ncpkms:v3:" + base64.b64encode(b"0123456789abcdef").decode()


def test_a_token_inside_a_value_makes_an_envelope_and_control_values_are_never_scanned() -> None:
    scanned = scan_metadata(
        {
            "dek": f"alg=A256GCM;dek={TOKEN}",
            "owner": "data",
            **dict.fromkeys(CONTROL_METADATA, TOKEN),  # a control value holding a token is still control
        }
    )
    assert scanned.envelope
    assert {name: [t.text for t in tokens] for name, tokens in scanned.tokens.items()} == {"dek": [TOKEN]}
    assert scanned.malformed == []


def test_a_malformed_token_in_metadata_still_makes_an_envelope() -> None:
    scanned = scan_metadata({"dek": "ncpkms:v01:AAAA"})
    assert scanned.envelope and scanned.tokens == {}
    assert [name for name, _ in scanned.malformed] == ["dek"]


def test_metadata_without_tokens_is_no_envelope() -> None:
    assert not scan_metadata({"owner": "data", KEY_TAG_METADATA: "key"}).envelope


def test_the_control_names_are_the_key_tag_the_context_and_the_stamps() -> None:
    stamp_names = {STAMP_VERSION_METADATA, STAMP_CHECKSUM_METADATA, STAMP_SIZE_METADATA}
    assert {KEY_TAG_METADATA, CONTEXT_METADATA, *stamp_names} == CONTROL_METADATA
    assert set(stamps(4, "CRC32:AAAAAA==")) <= CONTROL_METADATA


def test_context_is_base64_of_at_most_50_bytes() -> None:
    assert context_of({}) is None
    fifty = base64.b64encode(b"x" * 50).decode()
    assert context_of({CONTEXT_METADATA: fifty}) == fifty
    for bad in ("not base64!", base64.b64encode(b"x" * 51).decode()):
        with pytest.raises(ObjectRejectedError) as raised:
            context_of({CONTEXT_METADATA: bad})
        assert raised.value.code == "bad-context"


def test_a_stamp_counts_only_while_the_store_reports_the_checksum_rewrap_wrote() -> None:
    assert stamped_version(stamps(4, "CRC32:AAAAAA=="), "CRC32:AAAAAA==") == 4
    assert stamped_version(stamps(4, "CRC32:AAAAAA=="), "CRC32:BBBBBB==") is None  # another body since
    assert stamped_version(stamps(4, "CRC32:AAAAAA=="), None) is None  # a read that reports no checksum
    assert stamped_version({STAMP_VERSION_METADATA: "x4", STAMP_CHECKSUM_METADATA: "CRC32:A"}, "CRC32:A") is None
    # what rewrap stamped before (version and size) never proves anything
    assert stamped_version({STAMP_VERSION_METADATA: "4", STAMP_SIZE_METADATA: "10"}, "CRC32:AAAAAA==") is None
    assert stamped_version({}, "CRC32:AAAAAA==") is None
