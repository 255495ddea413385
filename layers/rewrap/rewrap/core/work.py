"""An object in flight through the engine (``Work``) and what its tokens amount to (``Tally``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from rewrap.core.forms import Form
from rewrap.core.ports import ObjectBody, ObjectHead, ObjectRef
from rewrap.core.results import ObjectResult, Status, unseen
from rewrap.core.tokens import Found, Malformed, known_version, splice
from rewrap.errors import ObjectRejectedError, RewrapError

Group = tuple[str, str | None]  # (key tag, context): the tokens KMS re-wraps together
# Keep this much time for the writes themselves; no write starts later than that.
WRITE_RESERVE_SECONDS = 2.0


@dataclass
class Work:
    """An object in flight between its HEAD and its write."""

    ref: ObjectRef
    head: ObjectHead
    key_tag: str
    context: str | None
    envelope: dict[str, list[Found]] = field(default_factory=dict)  # metadata name -> its tokens
    body: ObjectBody | None = None
    form: Form = field(default_factory=Form)
    text: bytes = b""  # the decoded body the tokens were found in
    found: list[Found] = field(default_factory=list)
    opaque: str | None = None  # the body could not be read; the metadata tokens still rotate
    restream: bool = False  # decoded body too large for a wave: stream it instead
    clear_body: bool = False  # the body was read and holds no token to rewrite (or is opaque): not kept

    @property
    def body_unread(self) -> bool:
        return self.body is None and self.head.size > 0 and not self.clear_body

    @property
    def wave_bytes(self) -> int:
        """What the body takes in memory during its wave."""
        return 0 if self.clear_body else self.head.size

    @property
    def group(self) -> Group:
        return (self.key_tag, self.context)

    @property
    def meta_tokens(self) -> list[Found]:
        return [t for tokens in self.envelope.values() for t in tokens]

    @property
    def tokens(self) -> list[Found]:
        """Every token of the object, metadata first, each with the version its scan read."""
        return self.meta_tokens + self.found

    @property
    def content_encoding(self) -> str | None:
        return self.head.headers.get("ContentEncoding")

    def metadata_with(self, replacements: Mapping[str, str]) -> dict[str, str]:
        metadata = dict(self.head.metadata)
        for name, tokens in self.envelope.items():
            metadata[name] = splice(metadata[name].encode("utf-8"), tokens, replacements).decode("utf-8")
        return metadata


@dataclass
class Tally:
    """What an object's tokens amount to, accumulated (per segment for streamed bodies)."""

    ref: ObjectRef
    key_tag: str = ""
    tokens: int = 0
    rotated: int = 0
    versions: set[int] = field(default_factory=set)
    new_versions: set[int] = field(default_factory=set)
    opaque: str | None = None  # the body was opaque; only metadata tokens were seen

    def count(self, tokens: Sequence[Found], replacements: Mapping[str, str]) -> Tally:
        self.tokens += len(tokens)
        self.versions.update(t.version for t in tokens)
        self.rotated += sum(1 for t in tokens if t.text in replacements)
        if replacements:  # one re-wrap's replies for a key all reach its newest version (``TokenRewrapper.rewrap``)
            self.new_versions.add(known_version(next(iter(replacements.values()))))
        return self

    def lowest_after(self, tokens: Sequence[Found], replacements: Mapping[str, str]) -> int:
        """The lowest version the object holds once ``replacements`` are written (after ``count``)."""
        return min([*self.new_versions, *(t.version for t in tokens if t.text not in replacements)])

    def result(self, status: Status, new_version_id: str | None = None) -> ObjectResult:
        newest = self.new_versions or self.versions
        reason = None
        if self.opaque and status is not Status.MISSING:  # what was done is done, but not all was seen
            status, reason = Status.OPAQUE, self.opaque
        return ObjectResult(
            self.ref,
            status,
            tokens=self.tokens,
            rotated_tokens=self.rotated,
            old_versions=tuple(sorted(self.versions)),
            new_version=max(newest) if newest and status is not Status.MISSING else None,
            new_version_id=new_version_id,
            reason=reason,
            key_tag=self.key_tag,
        )

    def failed(self, error: RewrapError) -> ObjectResult:
        return replace(self.result(Status.FAILED), status=Status.FAILED, error=error, new_version=None, reason=None)

    def ended(self, error: RewrapError) -> ObjectResult:
        """The result of an object whose processing stopped on ``error``."""
        if error.code == "object-gone":
            return self.result(Status.MISSING)
        return unseen(self.ref, error) or self.failed(error)


def malformed_error(malformed: list[Malformed], offset: int = 0, form: Form | None = None) -> ObjectRejectedError:
    first = malformed[0]
    where = f"byte {offset + first.start}" + (f" of the decoded {form} content" if form and not form.plain else "")
    return ObjectRejectedError(
        f"{len(malformed)} malformed ncpkms token(s); first at {where}: {first.reason}", code="malformed-token"
    )
