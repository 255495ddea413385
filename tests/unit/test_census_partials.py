"""Census partials: a census split into partials and merged back judges exactly like the whole."""

from __future__ import annotations

import pytest

from rewrap.core.census import Census, CensusKind, ObjectCensus
from rewrap.core.events import RequestKind, parse
from rewrap.core.ports import ObjectRef
from rewrap.errors import UnsupportedEventError


def objects() -> list[ObjectCensus]:
    ref = lambda i: ObjectRef("b", f"k{i}")  # noqa: E731
    items = [
        ObjectCensus(ref(i), CensusKind.TEXT, "tag-a", False, {1: 2, 3: 1} if i % 3 == 0 else {3: 2}) for i in range(30)
    ]
    items += [ObjectCensus(ref(100 + i), CensusKind.ENVELOPE, "tag-b", True, {2: 1}) for i in range(4)]
    items.append(ObjectCensus(ref(200), CensusKind.OPAQUE, "tag-a", reason="zip archive"))
    items.append(ObjectCensus(ref(201), CensusKind.TEXT, "tag-a", versions={3: 1}, malformed=2))
    items.append(ObjectCensus(ref(202), CensusKind.NO_TOKENS))
    return items


@pytest.mark.parametrize(("min_version", "key_tag"), [(None, None), (2, None), (3, None), (3, "tag-b"), (1, None)])
def test_merged_partials_judge_like_the_whole_census(min_version: int | None, key_tag: str | None) -> None:
    whole = Census(min_version=min_version, key_tag=key_tag, where="w")
    for item in objects():
        whole.add(item)
    merged = Census(min_version=min_version, key_tag=key_tag, where="w")
    items = objects()
    for start in range(0, len(items), 7):  # partials written without knowing the minimum
        part = Census()
        for item in items[start : start + 7]:
            part.add(item)
        merged.merge_partial(part.to_partial())

    assert merged.judge().lines == whole.judge().lines
    assert merged.to_dict() == whole.to_dict()
    assert [str(i.ref) for i in merged.stale_examples] == [str(i.ref) for i in whole.stale_examples]


def test_census_requests_are_recognised_on_every_route() -> None:
    direct = parse({"bucket": "b", "keys": ["k"], "mode": "census", "runId": "r1"})
    assert (direct.units[0].request, direct.units[0].run_id) == (RequestKind.CENSUS, "r1")
    assert parse({"bucket": "b", "keys": ["k"]}).units[0].request is RequestKind.ROTATE
    job = {
        "invocationSchemaVersion": "2.0",
        "invocationId": "i",
        "job": {"id": "job-1", "userArguments": {"mode": "census"}},
        "tasks": [{"taskId": "t", "s3Bucket": "b", "s3Key": "k"}],
    }
    (task,) = parse(job).units
    assert (task.request, task.run_id) == (RequestKind.CENSUS, "job-1")
    with pytest.raises(UnsupportedEventError, match="mode"):
        parse({"bucket": "b", "keys": ["k"], "mode": "delete"})
    with pytest.raises(UnsupportedEventError, match="runId"):
        parse({"bucket": "b", "keys": ["k"], "mode": "census", "runId": "a/b"})
