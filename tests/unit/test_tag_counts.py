"""When a GET's tag count may stand for the object's tags (``TagCounts``), both sides."""

from __future__ import annotations

from rewrap.adapters.s3_attributes import TagCounts


def test_a_missing_count_means_no_tags_only_once_a_count_was_seen_and_confirmed() -> None:
    counts = TagCounts()
    assert counts.must_read("b", 0)  # nothing shown yet: S3 may have left the count out
    counts.saw("b", 2, 2)  # the GET said 2, GetObjectTagging read 2: counts are reported, tags readable
    assert not counts.must_read("b", 0)
    assert counts.must_read("b", 1)  # tags to restate are always read
    assert counts.must_read("b", None)  # no GET's word at all
    assert counts.must_read("other", 0)  # per bucket


def test_a_backend_that_leaves_counts_out_is_never_trusted_again() -> None:
    counts = TagCounts()
    counts.saw("b", 0, 1)  # the GET said nothing of a tagged object (LocalStack; or tags not ours to read)
    counts.saw("b", 1, 1)
    assert counts.must_read("b", 0)
