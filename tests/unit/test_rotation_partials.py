"""What a rotation run's partial says an object holds after its rotation, from the engine's result alone."""

from __future__ import annotations

import pytest

from rewrap.core.census import CensusKind
from rewrap.core.config import Settings
from rewrap.core.ports import ObjectRef
from rewrap.core.results import ObjectResult, Status
from rewrap.core.rotation_runs import object_census, versions_left

REF = ObjectRef("b", "k")
SETTINGS = Settings(key_tag="default-key")


@pytest.mark.parametrize(
    ("result", "kind", "left"),
    [
        (ObjectResult(REF, Status.ROTATED, 3, 2, (1, 2), 2, key_tag="k"), CensusKind.TEXT, {2: 3}),
        (ObjectResult(REF, Status.CURRENT, 2, 0, (2,), 2, key_tag="k"), CensusKind.TEXT, {2: 2}),
        # answered from its stamp: the version is known, the token count is not
        (ObjectResult(REF, Status.CURRENT, 0, 0, (2,), 2, key_tag="k"), CensusKind.TEXT, {2: 0}),
        (ObjectResult(REF, Status.WOULD_ROTATE, 3, 2, (1, 2), 2, key_tag="k"), CensusKind.TEXT, {1: 3, 2: 0}),
        (ObjectResult(REF, Status.OPAQUE, 1, 1, (1,), 2, reason="opaque: zip", key_tag="k"), CensusKind.OPAQUE, {2: 1}),
        (ObjectResult(REF, Status.OPAQUE, reason="opaque: zip"), CensusKind.OPAQUE, {}),
        (ObjectResult(REF, Status.UNREADABLE, reason="archived"), CensusKind.UNREADABLE, {}),
        (ObjectResult(REF, Status.NO_TOKENS), CensusKind.NO_TOKENS, {}),
        (ObjectResult(REF, Status.MISSING), CensusKind.MISSING, {}),
    ],
    ids=["rotated", "current", "stamped", "dry-run", "opaque-envelope", "opaque", "archived", "no-tokens", "missing"],
)
def test_an_objects_census_after_its_rotation(result: ObjectResult, kind: CensusKind, left: dict[int, int]) -> None:
    item = object_census(result, SETTINGS)
    assert (item.kind, item.versions) == (kind, left)
    assert item.key_tag == (result.key_tag or "default-key")
    assert item.reason == result.reason


def test_a_dry_run_leaves_an_opaque_envelopes_metadata_where_it_was() -> None:
    result = ObjectResult(REF, Status.OPAQUE, 1, 1, (1,), 2, reason="opaque: zip", key_tag="k")
    assert versions_left(result, dry_run=True) == {1: 1}
