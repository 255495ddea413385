"""Re-wrapping tokens with KMS: in as few requests as the list limit allows, grouped by (key tag,
context), skipping tokens already at the newest version known to this container.

KMS refuses a whole list for one bad item (a token of another key, an unknown or disabled
version); the refusal must fail only that item's objects, so a refused list is explained by the
key's state first and then searched (:func:`isolate`). With ``REWRAP_VERIFY`` old and new tokens
are decrypted and their digests compared before anything is written.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from rewrap.core.ports import Rewrapper
from rewrap.core.runner import Runner
from rewrap.core.tokens import Found, known_version
from rewrap.core.work import Group, Work
from rewrap.deadline import Deadline
from rewrap.errors import (
    KmsInvalidReplyError,
    KmsKeyDisabledError,
    KmsRejectedError,
    KmsWrongRegionError,
    PartialBatchError,
    RetryableError,
    RewrapError,
    VerificationError,
)

R = TypeVar("R")

# Requests a search for refused items may spend beyond the first: about one per item, never more than
# sending each item alone would cost.
ISOLATION_EXTRA_REQUESTS = 8


class VersionCache:
    """The newest version seen per key tag, forgotten after ``ttl`` seconds (a rotation may happen)."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._newest: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def newest(self, key_tag: str) -> int | None:
        entry = self._newest.get(key_tag)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def observe(self, key_tag: str, version: int) -> None:
        with self._lock:
            known = self.newest(key_tag)
            if known is None or version > known:
                self._newest[key_tag] = (version, time.monotonic() + self.ttl)

    def is_current(self, key_tag: str, version: int) -> bool:
        newest = self.newest(key_tag)
        return newest is not None and version >= newest


@dataclass
class Rewrapped:
    """The outcome of a re-wrap, per (key tag, context, token): the new token and its version, or the error."""

    new: dict[tuple[str, str | None, str], tuple[str, int]] = field(default_factory=dict)
    errors: dict[tuple[str, str | None, str], RewrapError] = field(default_factory=dict)

    def replacements(self, group: Group, tokens: Iterable[Found]) -> dict[str, str]:
        """Old → new for the tokens whose version went up; raises the first token's error, if any."""
        out: dict[str, str] = {}
        errors, new = self.errors, self.new
        for token in tokens:
            where = (*group, token.text)
            reply = new.get(where)
            if reply is None:
                if where in errors:
                    raise errors[where]
                continue
            if reply[1] > token.version:
                out[token.text] = reply[0]
        return out


# Each group's tokens with the version their scan read: a token's version is parsed once, where it is found.
TokenGroups = Mapping[Group, Mapping[str, int]]


def token_groups(works: Iterable[Work]) -> dict[Group, dict[str, int]]:
    """The tokens of ``works`` by the (key tag, context) KMS re-wraps them under."""
    groups: dict[Group, dict[str, int]] = defaultdict(dict)
    for work in works:
        groups[work.group].update((t.text, t.version) for t in work.tokens)
    return groups


class TokenRewrapper:
    """Re-wraps groups of tokens for one invocation, on its runner."""

    def __init__(self, kms: Rewrapper, versions: VersionCache, run: Runner, *, verify: bool) -> None:
        self.kms = kms
        self.versions = versions
        self.run = run
        self.verify = verify

    def rewrap(self, groups: TokenGroups, deadline: Deadline) -> Rewrapped:
        """Re-wrap every token not known to be current, in as few requests as the list limit allows."""
        batches = []
        for (key_tag, context), tokens in groups.items():
            known = self.versions.newest(key_tag)  # once per key; each token brings the version its scan read
            stale = sorted(tokens if known is None else (t for t, version in tokens.items() if version < known))
            batches += [(key_tag, context, chunk) for chunk in self.kms.batches(stale)]
        outcome = Rewrapped()
        newest: dict[str, int] = {}
        for (key_tag, context, chunk), replies in self.run.each(self._call_kms, batches, deadline, first=True):
            items = replies if isinstance(replies, list) else [replies] * len(chunk)
            for token, reply in zip(chunk, items, strict=True):
                if isinstance(reply, RewrapError):
                    outcome.errors[(key_tag, context, token)] = reply
                else:
                    version = known_version(reply)
                    outcome.new[(key_tag, context, token)] = (reply, version)
                    newest[key_tag] = max(newest.get(key_tag, 0), version)
        for key_tag, version in newest.items():
            self.versions.observe(key_tag, version)
        # Every reply for a key must reach the newest version seen for it: one left behind (say, the
        # old version relabelled) would otherwise be reported "current". Retry it instead.
        for where, (_, version) in list(outcome.new.items()):
            if version < newest[where[0]]:
                del outcome.new[where]
                outcome.errors[where] = KmsInvalidReplyError("reply is below the key's newest version")
        return outcome

    def replacements(self, group: Group, tokens: list[Found], deadline: Deadline) -> dict[str, str]:
        """Re-wrap the tokens of one object (or one segment of it): old → new where the version went up."""
        return self.rewrap({group: {t.text: t.version for t in tokens}}, deadline).replacements(group, tokens)

    def _call_kms(self, batch: tuple[str, str | None, list[str]], deadline: Deadline) -> list[str | RewrapError]:
        key_tag, context, chunk = batch
        replies: list[str | RewrapError] = self._isolated(self.kms.re_encrypt, key_tag, context, chunk, deadline)
        if self.verify:
            replies = self._verify(key_tag, context, chunk, replies, deadline)
        return replies

    def _isolated(
        self,
        call: Callable[[str, list[str], str | None, Deadline], Sequence[R]],
        key_tag: str,
        context: str | None,
        items: list[str],
        deadline: Deadline,
    ) -> list[R | RewrapError]:
        """``call`` on ``items``, one outcome per item. KMS refuses a whole list for one bad item (a
        token of another key, an unknown or disabled version); the refusal must fail only that item's
        objects. A refused list is first explained by the key's state (a disabled key fails them all,
        a disabled version its own items), then searched (:func:`isolate`)."""

        def attempt(part: list[str]) -> list[R | RewrapError] | KmsRejectedError:
            try:
                return list(call(key_tag, part, context, deadline))
            except PartialBatchError as partial:  # some items failed: only their objects fail
                return partial.results  # type: ignore[return-value]  # all items answered
            except (KmsKeyDisabledError, KmsWrongRegionError):
                raise  # the key's state, not an item's: every item fails with it
            except KmsRejectedError as refusal:
                return refusal

        first = attempt(items)
        explain = getattr(self.kms, "explain_refusal", None)
        if not isinstance(first, KmsRejectedError):
            out: list[R | RewrapError | None] = list(first)
        else:
            disabled = explain(key_tag, [known_version(t) for t in items], first, deadline) if explain else {}
            out = [disabled.get(known_version(t)) for t in items]
            rest = [i for i, outcome in enumerate(out) if outcome is None]
            if rest:
                searched = isolate(attempt, [items[i] for i in rest], None if disabled else first)
                for i, outcome in zip(rest, searched, strict=True):
                    out[i] = outcome
        # Items refused one by one (found by the search, or named by a v3 batch): a disabled version?
        refused = {known_version(t): o for t, o in zip(items, out, strict=True) if type(o) is KmsRejectedError}
        if explain and refused:
            for version, refusal in refused.items():
                disabled = explain(key_tag, [version], refusal, deadline)
                if disabled:
                    out = [disabled.get(version, o) if type(o) is KmsRejectedError else o for o in out]
        return out  # type: ignore[return-value]  # every index was filled

    def _verify(
        self, key_tag: str, context: str | None, sent: list[str], replies: list[str | RewrapError], deadline: Deadline
    ) -> list[str | RewrapError]:
        """Decrypt old and new tokens and compare digests in memory; plaintext is never kept. A new
        token that KMS refuses to decrypt (a well-formed but wrong reply) fails verification too."""
        pairs = [(old, new) for old, new in zip(sent, replies, strict=True) if isinstance(new, str)]
        old_digests = _digests(self.kms.decrypt(key_tag, [old for old, _ in pairs], context, deadline))
        new_digests = _digests(self._isolated(self.kms.decrypt, key_tag, context, [n for _, n in pairs], deadline))
        mismatched = {old for (old, _), a, b in zip(pairs, old_digests, new_digests, strict=True) if a != b}
        return [
            VerificationError("the re-wrapped token does not decrypt to the original data")
            if old in mismatched
            else new
            for old, new in zip(sent, replies, strict=True)
        ]


def _digests(values: Sequence[bytes | RewrapError]) -> list[bytes | None]:
    return [hashlib.sha256(v).digest() if isinstance(v, bytes) else None for v in values]


def isolate(
    attempt: Callable[[list[str]], list[R | RewrapError] | KmsRejectedError],
    items: list[str],
    refusal: KmsRejectedError | None = None,
) -> list[R | RewrapError]:
    """Per item of ``items``: its outcome. ``attempt(part)`` sends ``part`` in one request and answers
    one outcome per item, or the refusal when KMS refused the list as a whole; ``refusal`` is the
    answer already received for all of ``items``.

    A refused list holds at least one refused item; a list that passes holds none (and is re-wrapped
    already, so every request does useful work). The search is generalized binary splitting (Hwang):
    send the next group of 2^a unresolved items, sized for the refusal rate seen so far; halve a
    refused group until its refused item is found. An item fails only when it was refused alone or
    as the last unresolved item of a refused list. A refusal that names no item gives one bit per
    request, so 72 items holding 12 refused ones take about 51 requests (the information bound is 44).
    When the budget is spent the unresolved items fail retryably: a later attempt, with fewer
    neighbours, resolves them."""
    first = refusal or attempt(items)
    if not isinstance(first, KmsRejectedError):
        return first
    out: dict[int, R | RewrapError] = {}
    budget = len(items) + ISOLATION_EXTRA_REQUESTS
    pool = list(range(len(items)))
    refused = passed = 0
    last_refusal = first
    pool_refused = True  # the pool as a whole holds a refused item (it was refused as a whole)

    def send(part: list[int]) -> bool:
        nonlocal budget, last_refusal
        budget -= 1
        answer = attempt([items[i] for i in part])
        if isinstance(answer, KmsRejectedError):
            last_refusal = answer
            return False
        out.update(zip(part, answer, strict=True))
        return True

    if len(items) == 1:
        return [first]
    try:
        while pool and budget > 0:
            rate = (refused + 0.4) / (refused + passed + 4)  # a prior of 1 in 10 before anything is seen
            expected = max(1.0, rate * len(pool))
            size = min(len(pool), 2 ** max(0, int(math.log2(max(1.0, (len(pool) - expected + 1) / expected)))))
            group = pool[:size]
            if not (pool_refused and size == len(pool)) and send(group):
                passed += size
                pool = pool[size:]
                continue
            while len(group) > 1 and budget > 0:  # ``group`` holds a refused item: halve until found
                left = group[: len(group) // 2]
                if send(left):
                    passed += len(left)
                    pool = [i for i in pool if i not in left]
                    group = group[len(group) // 2 :]
                else:
                    group = left
            if len(group) == 1:
                out[group[0]] = last_refusal
                refused += 1
                pool.remove(group[0])
                pool_refused = False
    except RewrapError as error:  # a request-level failure (throttled, out of time, auth): not a refusal
        for i in pool:
            out.setdefault(i, error)
    for i in range(len(items)):
        out.setdefault(i, _unresolved(len(items)))
    return [out[i] for i in range(len(items))]


def _unresolved(count: int) -> RewrapError:
    return RetryableError(
        f"KMS refused a request of {count} items holding this token and the search for the refused ones "
        "ran out of requests; not refused itself, it is retried",
        code="kms-isolation-pending",
    )
