"""When the S3 adapter reads a head again before a write, and when a read's tag count stands for the tags."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from rewrap.adapters.s3_attributes import body_checksum, head_of
from rewrap.adapters.s3_conditions import RECHECK_AFTER_SECONDS, Recheck, TagCounts
from rewrap.adapters.s3_requests import unchanged_source
from rewrap.core.ports import ObjectHead
from rewrap.errors import ObjectChangedError

WRITTEN = datetime(2026, 12, 5, 12, 0, 7, tzinfo=UTC)


def head(**fields: Any) -> ObjectHead:
    base: dict[str, Any] = {
        "etag": '"e"',
        "size": 3,
        "metadata": {"owner": "app"},
        "last_modified": WRITTEN,
        "read_at": time.monotonic(),
    }
    return ObjectHead(**{**base, **fields})


class Looks:
    """The HEAD the recheck asks for, answering ``now``, and the sleeps it asks for."""

    def __init__(self, now: ObjectHead | None) -> None:
        self.now = now
        self.heads = 0
        self.slept: list[float] = []

    def __call__(self) -> ObjectHead | None:
        self.heads += 1
        return self.now


def test_a_head_read_in_its_own_second_is_read_again_after_that_second_before_a_copy() -> None:
    read = head(fresh=True)
    looks = Looks(read)
    recheck = Recheck(sleep=looks.slept.append)

    recheck.before_copy(read, looks)

    assert looks.heads == 1
    assert len(looks.slept) == 1 and 0.9 < looks.slept[0] <= 1.05  # until S3's clock has left that second


def test_a_change_the_second_look_sees_stops_the_write() -> None:
    read = head(fresh=True)
    for now in (
        head(metadata={"owner": "the application"}),
        head(headers={"ContentType": "application/x-writer"}),
        head(last_modified=datetime(2026, 12, 5, 12, 0, 8, tzinfo=UTC)),
        head(etag='"other"'),
    ):
        with pytest.raises(ObjectChangedError):
            Recheck(sleep=lambda _: None).before_copy(read, Looks(now))
    with pytest.raises(ObjectChangedError) as gone:
        Recheck(sleep=lambda _: None).before_copy(read, Looks(None))
    assert gone.value.code == "object-gone"


def test_an_older_head_is_copied_on_its_condition_alone() -> None:
    looks = Looks(None)
    Recheck(sleep=looks.slept.append).before_copy(head(fresh=False), looks)
    assert (looks.heads, looks.slept) == (0, [])
    assert unchanged_source(head()) == {"CopySourceIfUnmodifiedSince": WRITTEN}  # not CopySourceIfMatch


def test_a_put_reads_the_head_again_only_when_its_read_is_older_than_the_window() -> None:
    recent, older = head(), head(read_at=time.monotonic() - RECHECK_AFTER_SECONDS - 0.5)
    looks = Looks(recent)
    Recheck().before_put(recent, looks)
    assert looks.heads == 0
    Recheck().before_put(older, Looks(older))
    with pytest.raises(ObjectChangedError):
        Recheck().before_put(older, Looks(head(metadata={"owner": "the application"})))


def test_a_missing_tag_count_means_none_once_tags_were_read_in_the_bucket() -> None:
    tags = TagCounts()
    untagged, tagged = head(tag_count=None), head(tag_count=2)
    assert tags.must_read("b", untagged)  # nothing shown yet in "b"
    tags.read("b", untagged, 0)
    assert not tags.must_read("b", untagged)
    assert tags.must_read("b", tagged)  # their values come only from GetObjectTagging
    assert tags.must_read("other", untagged)


def test_a_store_that_leaves_counts_out_has_every_objects_tags_read() -> None:
    tags = TagCounts()
    tags.must_read("b", head(tag_count=None))
    tags.read("b", head(tag_count=None), 3)  # tags the read did not count
    assert tags.must_read("b", head(tag_count=None))
    assert tags.must_read("other", head(tag_count=None))


def test_writes_arriving_during_the_first_tag_read_wait_for_its_answer() -> None:
    tags = TagCounts()
    untagged = head(tag_count=None)
    assert tags.must_read("b", untagged)  # the first write reads them
    answers: list[bool] = []
    waiting = threading.Thread(target=lambda: answers.append(tags.must_read("b", untagged)))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive() and answers == []  # waits for the first read's answer
    tags.read("b", untagged, 0)
    waiting.join(5)
    assert answers == [False]


def test_a_failed_first_tag_read_leaves_the_next_write_to_read_them() -> None:
    tags = TagCounts()
    untagged = head(tag_count=None)
    assert tags.must_read("b", untagged)
    tags.read("b", untagged, None)
    assert tags.must_read("b", untagged)


def test_the_head_of_a_read_says_what_s3_reported() -> None:
    response = {
        "ETag": '"e"',
        "ContentLength": 11,
        "Metadata": {},
        "LastModified": WRITTEN,
        "ChecksumCRC32": "DUoRhQ==",
        "ChecksumType": "FULL_OBJECT",
        "TagCount": 2,
        "ResponseMetadata": {"HTTPHeaders": {"date": "Sat, 05 Dec 2026 12:00:07 GMT"}},
    }
    read = head_of(response)
    assert (read.checksum, read.tag_count, read.fresh) == ("CRC32:DUoRhQ==", 2, True)
    later = head_of({**response, "ResponseMetadata": {"HTTPHeaders": {"date": "Sat, 05 Dec 2026 12:00:08 GMT"}}})
    assert not later.fresh
    composite = head_of({**response, "ChecksumType": "COMPOSITE", "TagCount": None})
    assert (composite.checksum, composite.tag_count) == (None, None)
    assert body_checksum(None, b"hello world") == ("CRC32", "DUoRhQ==")
    assert body_checksum("SHA256", b"") == ("SHA256", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
