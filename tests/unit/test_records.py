"""Result and census records: ``to_dict`` and the CSV report's columns come from one definition,
and the records themselves are what the functions have always answered."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from rewrap.core.census import CensusKind, ObjectCensus
from rewrap.core.ports import ObjectRef
from rewrap.core.reports import CENSUS_COLUMNS, ROTATE_COLUMNS, ReportFile, csv_cell
from rewrap.core.results import ObjectResult, Status
from rewrap.errors import ObjectRejectedError, StorageUnavailableError

REF = ObjectRef("b", "k.json", "v1")

RESULTS = {
    "rotated": ObjectResult(REF, Status.ROTATED, 3, 2, (1, 2), 3, new_version_id="v2"),
    "current": ObjectResult(ObjectRef("b", "k"), Status.CURRENT, 1, 0, (3,), 3),
    "failed": ObjectResult(REF, Status.FAILED, 1, error=StorageUnavailableError("S3 GET failed (SlowDown)")),
    "rejected": ObjectResult(REF, Status.FAILED, error=ObjectRejectedError("bad", code="malformed-token")),
    "opaque": ObjectResult(REF, Status.OPAQUE, reason="opaque: zip archive"),
    "empty reason": ObjectResult(REF, Status.NO_TOKENS, reason="", new_version_id=""),
}
CENSUSES = {
    "text": ObjectCensus(REF, CensusKind.TEXT, "key", versions={2: 1, 1: 4}, malformed=1),
    "opaque": ObjectCensus(REF, CensusKind.OPAQUE, "key", noncurrent=True, reason="opaque: zip archive"),
    "failed": ObjectCensus(REF, CensusKind.FAILED, error=StorageUnavailableError("S3 HEAD failed (503)")),
}


def in_order(keys: list[str], columns: tuple[str, ...]) -> bool:
    """Whether ``keys`` are columns, in the columns' order."""
    return all(k in columns for k in keys) and keys == sorted(keys, key=columns.index)


@pytest.mark.parametrize("name", RESULTS)
def test_every_result_record_key_is_a_rotate_column_in_column_order(name: str) -> None:
    assert in_order(list(RESULTS[name].to_dict()), ROTATE_COLUMNS)


@pytest.mark.parametrize("name", CENSUSES)
def test_every_census_record_key_is_a_census_column_in_column_order(name: str) -> None:
    assert in_order(list(CENSUSES[name].to_dict()), CENSUS_COLUMNS)


def test_the_columns_are_exactly_the_keys_records_can_have() -> None:
    assert set(ROTATE_COLUMNS) == {key for r in RESULTS.values() for key in r.to_dict()}
    assert set(CENSUS_COLUMNS) == {key for c in CENSUSES.values() for key in c.to_dict()}


def test_result_records_hold_what_they_always_did() -> None:
    base = {"bucket": "b", "key": "k.json", "versionId": "v1"}
    assert RESULTS["rotated"].to_dict() == {
        **base,
        "status": "rotated",
        "tokens": 3,
        "rotatedTokens": 2,
        "fromVersions": [1, 2],
        "toVersion": 3,
        "newVersionId": "v2",
    }
    assert RESULTS["current"].to_dict() == {
        "bucket": "b",
        "key": "k",
        "versionId": None,
        "status": "current",
        "tokens": 1,
        "rotatedTokens": 0,
        "fromVersions": [3],
        "toVersion": 3,
    }
    failed = RESULTS["failed"].to_dict()
    assert (failed["errorClass"], failed["reason"]) == ("retryable", "s3-unavailable: S3 GET failed (SlowDown)")
    rejected = RESULTS["rejected"].to_dict()
    assert (rejected["errorClass"], rejected["reason"]) == ("permanent", "malformed-token: bad")
    assert RESULTS["opaque"].to_dict()["reason"] == "opaque: zip archive"
    assert "errorClass" not in RESULTS["opaque"].to_dict()
    assert not {"reason", "newVersionId", "errorClass"} & set(RESULTS["empty reason"].to_dict())


def test_census_records_hold_what_they_always_did() -> None:
    assert CENSUSES["text"].to_dict() == {
        "bucket": "b",
        "key": "k.json",
        "versionId": "v1",
        "noncurrent": False,
        "keyTag": "key",
        "kind": "text",
        "tokens": 5,
        "versions": {"v1": 4, "v2": 1},
        "malformed": 1,
    }
    assert CENSUSES["opaque"].to_dict()["reason"] == "opaque: zip archive"
    assert CENSUSES["failed"].to_dict()["reason"] == "s3-unavailable: S3 HEAD failed (503)"


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_report_file_writes_each_record_under_its_columns(tmp_path: Path, fmt: Any) -> None:
    path = tmp_path / f"report.{fmt}"
    with ReportFile(path, fmt, ROTATE_COLUMNS) as report:
        for result in RESULTS.values():
            report.write(result.to_dict())
    if fmt == "csv":
        header, *rows = list(csv.reader(path.open(encoding="utf-8", newline="")))
        assert tuple(header) == ROTATE_COLUMNS
        expected = [[csv_cell(r.to_dict().get(c)) for c in ROTATE_COLUMNS] for r in RESULTS.values()]
        assert rows == expected
        assert rows[0][ROTATE_COLUMNS.index("fromVersions")] == "1;2"
    else:
        assert [json.loads(line) for line in path.read_text().splitlines()] == [r.to_dict() for r in RESULTS.values()]
