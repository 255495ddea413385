"""The census verdict: SAFE only when proven, NOT SAFE with counts per version, UNKNOWN with
reasons and examples, and the exit codes that go with them."""

from __future__ import annotations

import pytest

from rewrap.core.census import Census, CensusKind, ObjectCensus
from rewrap.core.ports import ObjectRef
from rewrap.errors import StorageUnavailableError


def item(
    key: str, kind: CensusKind = CensusKind.TEXT, versions: dict[int, int] | None = None, **extra: object
) -> ObjectCensus:
    return ObjectCensus(ObjectRef("b", key), kind, "k", versions=versions or {}, **extra)  # type: ignore[arg-type]


def census(*items: ObjectCensus, **settings: object) -> Census:
    taken = Census(min_version=2, where="s3://b/p/", **settings)  # type: ignore[arg-type]
    for one in items:
        taken.add(one)
    return taken


def test_safe_only_when_every_object_was_read_and_nothing_is_old() -> None:
    judged = census(item("a", versions={2: 3}), item("b", CensusKind.NO_TOKENS)).judge()
    assert (judged.verdict, judged.exit_code) == ("SAFE", 0)
    assert judged.lines == ["SAFE: nothing under s3://b/p/ is older than v2 (bucket not versioned)"]


def test_not_safe_counts_per_version_and_names_what_else_was_not_seen() -> None:
    judged = census(
        item("a", versions={1: 2, 2: 1}), item("c", versions={3: 1}), item("d", CensusKind.OPAQUE, reason="opaque: zip")
    ).judge()
    assert (judged.verdict, judged.exit_code) == ("NOT SAFE", 1)
    assert judged.lines[:2] == ["NOT SAFE: 2 tokens in 1 objects are older than v2", "  v1: 2 tokens in 1 objects"]
    assert "  opaque: 1 objects" in judged.lines and "    s3://b/d: opaque: zip" in judged.lines


@pytest.mark.parametrize(
    ("kind", "extra", "reason"),
    [
        (CensusKind.OPAQUE, {"reason": "opaque: zip archive"}, "opaque"),
        (CensusKind.UNREADABLE, {"reason": "unreadable: archived"}, "unreadable"),
        (CensusKind.TEXT, {"malformed": 2}, "malformed"),
        (CensusKind.FAILED, {"error": StorageUnavailableError("S3 GET failed (SlowDown)")}, "failed"),
    ],
)
def test_anything_not_looked_at_makes_it_unknown(kind: CensusKind, extra: dict[str, object], reason: str) -> None:
    judged = census(item("ok", versions={2: 1}), item("x", kind, **extra)).judge()
    assert (judged.verdict, judged.exit_code) == ("UNKNOWN", 1)
    assert judged.lines[0].startswith("UNKNOWN: cannot prove it: nothing older than v2")
    assert f"  {reason}: 1 objects" in judged.lines


def test_examples_stop_at_twenty_per_reason() -> None:
    judged = census(*(item(f"z{i}", CensusKind.OPAQUE, reason="opaque: zip archive") for i in range(25))).judge()
    examples = [line for line in judged.lines if line.startswith("    s3://")]
    assert len(examples) == 20 and "    … and 5 more (see --report)" in judged.lines


@pytest.mark.parametrize(
    ("versioning", "scanned", "verdict"),
    [
        ("", False, "SAFE"),
        ("Enabled", False, "UNKNOWN"),
        ("Suspended", False, "UNKNOWN"),
        (None, False, "UNKNOWN"),
        ("Enabled", True, "SAFE"),
    ],
)
def test_a_versioned_bucket_needs_its_noncurrent_versions_scanned(
    versioning: str | None, scanned: bool, verdict: str
) -> None:
    judged = census(item("a", versions={2: 1}), versioning=versioning, versions_scanned=scanned).judge()
    assert judged.verdict == verdict
    if verdict == "UNKNOWN":
        assert any(line.startswith("  noncurrent not scanned: ") and "--versions" in line for line in judged.lines)


def test_nothing_read_is_exit_2_and_an_empty_listing_too() -> None:
    unreadable = census(item("a", CensusKind.UNREADABLE, reason="unreadable: SSE-C")).judge()
    assert (unreadable.verdict, unreadable.exit_code) == ("UNKNOWN", 2)
    assert unreadable.lines[0] == "UNKNOWN: cannot prove it: nothing under s3://b/p/ could be read"
    empty = census().judge()
    assert (empty.verdict, empty.exit_code) == ("UNKNOWN", 2) and "check the prefix" in empty.lines[0]


def test_exclusions_are_named_in_every_verdict() -> None:
    taken = census(item("a", versions={2: 1}), exclude_prefixes=("logs/",), exclude_suffixes=(".jpg",))
    assert taken.excludes("logs/x.txt") == "prefix 'logs/'" and taken.excludes("a/b.jpg") == "suffix '.jpg'"
    assert taken.excludes("a/b.txt") is None
    taken.excluded["suffix '.jpg'"] += 3
    judged = taken.judge()
    assert judged.verdict == "SAFE"
    assert "  excluded by the operator, not read: prefix 'logs/' (0 objects), suffix '.jpg' (3 objects)" in judged.lines


def test_without_a_minimum_there_is_no_verdict_but_unseen_objects_still_fail_the_exit_code() -> None:
    plain = Census(where="s3://b/")
    plain.add(item("a", versions={1: 1}))
    assert (plain.judge().verdict, plain.judge().exit_code) == (None, 0)
    plain.add(item("z", CensusKind.OPAQUE, reason="opaque: zip archive"))
    assert plain.judge().exit_code == 1
