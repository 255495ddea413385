"""Retire old key versions: disable them in NCP only on a fresh SAFE verdict, leave evidence, undo in one
command. Disabling is reversible and rewrap never destroys anything.

``retire`` refuses, with the reason, when a version named is the current one or does not exist, when the
key is disabled or pending deletion, and, after the census, when a verdict is not SAFE for the versions,
is older than the bound, or was taken at another newest version than the key has now. It asks before it
changes anything, and changes all the versions or none: a version refused midway makes it enable again
those it had disabled. Every decision after a census, and every change, writes its evidence
(:mod:`rewrap.core.retire_evidence`); a dry run writes nothing and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from rewrap.core.ports import KeyManager, KeyState, ObjectStore
from rewrap.core.retire_evidence import Evidence, write_evidence
from rewrap.core.retire_verdict import Verdict
from rewrap.errors import KeyManagementUnavailableError, RewrapError

DONE, REFUSED, FAILED = 0, 1, 2


@dataclass(frozen=True)
class RetireRequest:
    key_tag: str
    versions: tuple[int, ...] = ()  # --version N (repeatable)
    below: int | None = None  # --below N: every version older than vN
    max_age: timedelta = timedelta(hours=24)  # a verdict older than this is stale
    dry_run: bool = False
    undo: bool = False

    def asked(self) -> dict[str, object]:
        return {
            "versions": list(self.versions),
            "below": self.below,
            "maxAgeSeconds": int(self.max_age.total_seconds()),
            "dryRun": self.dry_run,
        }


class RetireServices(Protocol):
    @property
    def store(self) -> ObjectStore: ...
    @property
    def keys(self) -> KeyManager: ...
    @property
    def report_prefix(self) -> str: ...
    @property
    def who(self) -> dict[str, str | None]: ...


@dataclass
class Outcome:
    exit_code: int
    lines: list[str]
    evidence: Evidence | None = None
    locations: dict[str, str] = field(default_factory=dict)


Verdicts = Callable[[KeyState, set[int]], list[Verdict]]
Confirm = Callable[[str], bool]


def console_steps(key_tag: str, versions: list[int], enable: bool) -> list[str]:
    """What the operator does in the console where rewrap cannot (token-only secret, no permission)."""
    word = "Enable (사용)" if enable else "Disable (사용 중지)"
    return [
        "Sign in to the NCP console with an account whose policy may manage Key Management Service keys.",
        f"Open Services → Security → Key Management Service, then the key whose tag is {key_tag}.",
        "Open its version list (Key version / 키 버전).",
        *[f"Select v{v} and choose {word}; confirm." for v in versions],
        "Run `rewrap retire status` to record the states that result and to watch for anything that needed them.",
    ]


def resolve_versions(request: RetireRequest) -> list[int]:
    if request.below is not None:
        return list(range(1, request.below))
    return sorted(set(request.versions))


def retire(request: RetireRequest, services: RetireServices, verdicts: Verdicts, confirm: Confirm) -> Outcome:
    keys, tag = services.keys, request.key_tag
    try:
        before = keys.state(tag)
    except KeyManagementUnavailableError as error:
        return _console(request, services, None, resolve_versions(request), error)
    versions = resolve_versions(request)
    refusals = _refusals_before_census(before, versions)
    if refusals:
        return Outcome(REFUSED, [f"refused: {reason}" for reason in refusals])
    to_change = [v for v in versions if before.versions[v].enabled]
    if not to_change:
        return Outcome(DONE, [f"nothing to do: {_listed(versions)} already disabled"])
    found = verdicts(before, set(to_change))
    now_state = keys.state(tag)
    evidence = _evidence("retire", "refused", request, services, now_state, to_change)
    evidence.verdicts = found
    evidence.ident = f"{evidence.time:%Y%m%dT%H%M%SZ}-retire-{uuid.uuid4().hex[:6]}"
    evidence.reasons = _refusals_after_census(request, now_state, to_change, found, evidence.time)
    if evidence.reasons:
        return _finish(services, evidence, REFUSED, [f"refused: {r}" for r in evidence.reasons], request.dry_run)
    plan = [f"disable v{v}" for v in to_change]
    if request.dry_run:
        lines = [f"dry run: would {', '.join(plan)} of key {tag} ({keys.describe(tag)}); nothing was changed"]
        evidence.outcome = "would retire"
        return Outcome(DONE, lines, evidence)
    if not confirm(f"{', '.join(plan)} of key {tag}?"):
        evidence.outcome, evidence.reasons = "declined", ["the operator did not confirm"]
        return _finish(services, evidence, REFUSED, ["not confirmed: nothing was changed"], False)
    return _change(request, services, evidence, enable=False)


def undo(request: RetireRequest, services: RetireServices, confirm: Confirm, last_retired: list[int]) -> Outcome:
    """Enable again the versions named (or those the key's last retirement disabled), and record it."""
    keys, tag = services.keys, request.key_tag
    try:
        before = keys.state(tag)
    except KeyManagementUnavailableError as error:
        versions = resolve_versions(request) or last_retired
        return _console(request, services, None, versions, error)
    versions = resolve_versions(request) or last_retired
    if not versions:
        return Outcome(REFUSED, ["refused: name the versions (--version N or --below N): no retirement is on record"])
    missing = [v for v in versions if v not in before.versions]
    refusals = [f"v{v} does not exist (the current version is v{before.current_version})" for v in missing]
    if not before.enabled:
        refusals.append(_key_not_enabled(before))
    if refusals:
        return Outcome(REFUSED, [f"refused: {reason}" for reason in refusals])
    to_change = [v for v in versions if not before.versions[v].enabled]
    if not to_change:
        return Outcome(DONE, [f"nothing to do: {_listed(versions)} already enabled"])
    evidence = _evidence("undo", "re-enabled", request, services, before, to_change)
    evidence.ident = f"{evidence.time:%Y%m%dT%H%M%SZ}-undo-{uuid.uuid4().hex[:6]}"
    if request.dry_run:
        return Outcome(DONE, [f"dry run: would enable {_listed(to_change)} of key {tag}; nothing was changed"])
    if not confirm(f"enable {_listed(to_change)} of key {tag} again?"):
        return Outcome(REFUSED, ["not confirmed: nothing was changed"])
    return _change(request, services, evidence, enable=True)


# --- checks ----------------------------------------------------------------------------------------------
def _refusals_before_census(state: KeyState, versions: list[int]) -> list[str]:
    reasons = []
    if not versions:
        reasons.append("no version named: pass --version N (repeatable) or --below N")
    if not state.enabled:
        reasons.append(_key_not_enabled(state))
    for version in versions:
        if version == state.current_version:
            reasons.append(f"v{version} is the key's current version: the current version cannot be disabled")
        elif version not in state.versions:
            reasons.append(f"v{version} does not exist (the current version is v{state.current_version})")
    return reasons


def _refusals_after_census(
    request: RetireRequest, state: KeyState, versions: list[int], verdicts: list[Verdict], now: datetime
) -> list[str]:
    reasons = _refusals_before_census(state, versions)
    if not verdicts:
        reasons.append("no verdict: name the targets (s3://bucket/prefix) or --from-reports census runs")
    for verdict in verdicts:
        where = verdict.source
        if verdict.verdict != "SAFE":
            said = verdict.lines[0]
            reasons.append(f"{where}: {said if said.startswith(verdict.verdict) else f'{verdict.verdict} ({said})'}")
        age = now - verdict.taken_at
        if age > request.max_age:
            reasons.append(
                f"the verdict for {where} is stale: its data was read {_duration(age)} ago, more than "
                f"--max-age {_duration(request.max_age)}"
            )
        if verdict.newest_version is None:
            reasons.append(f"the verdict for {where} does not tell the key's newest version when it was taken")
        elif verdict.newest_version != state.current_version:
            reasons.append(
                f"the key's newest version changed since the verdict for {where}: v{verdict.newest_version} then, "
                f"v{state.current_version} now; take the census again"
            )
    return reasons


def _key_not_enabled(state: KeyState) -> str:
    word = "pending deletion" if state.status.startswith("REVOKE") else "disabled"
    return f"the key is {word} (state {state.status}): enable it (or cancel its deletion) first"


# --- acting --------------------------------------------------------------------------------------------
def _change(request: RetireRequest, services: RetireServices, evidence: Evidence, *, enable: bool) -> Outcome:
    """Change every version or none: a failure midway puts back the versions already changed."""
    keys, tag = services.keys, request.key_tag
    changed: list[int] = []
    try:
        for version in evidence.versions:
            keys.set_version(tag, version, enable=enable)
            changed.append(version)
    except RewrapError as error:
        put_back = _put_back(keys, tag, changed, enable)
        if isinstance(error, KeyManagementUnavailableError) and not changed:
            return _console(request, services, evidence, evidence.versions, error)
        evidence.outcome = "failed"
        evidence.reasons = [f"v{evidence.versions[len(changed)]} could not be changed: {error.reason}", *put_back]
        evidence.after = _state_or_none(keys, tag)
        return _finish(services, evidence, FAILED, [f"failed: {r}" for r in evidence.reasons], False)
    evidence.after = keys.state(tag)
    evidence.outcome = "re-enabled" if enable else "retired"
    evidence.time = datetime.now(UTC)  # when the change was made
    done = "enabled" if enable else "disabled"
    return _finish(services, evidence, DONE, [f"{done} {_listed(changed)} of key {tag}"], False)


def _put_back(keys: KeyManager, tag: str, changed: list[int], enable: bool) -> list[str]:
    notes = []
    for version in reversed(changed):
        try:
            keys.set_version(tag, version, enable=not enable)
            notes.append(f"v{version} was put back as it was")
        except RewrapError as error:
            notes.append(f"v{version} could NOT be put back ({error.reason}): change it in the console")
    return notes


def _console(
    request: RetireRequest,
    services: RetireServices,
    evidence: Evidence | None,
    versions: list[int],
    error: KeyManagementUnavailableError,
) -> Outcome:
    enable = request.undo
    steps = console_steps(request.key_tag, versions, enable)
    lines = [f"rewrap cannot manage this key's versions: {error}", "do it in the NCP console:"]
    lines += [f"  {n}. {step}" for n, step in enumerate(steps, 1)]
    if evidence is None:
        return Outcome(REFUSED, lines)
    evidence.outcome, evidence.reasons, evidence.console_steps = "console", [str(error)], steps
    return _finish(services, evidence, REFUSED, lines, request.dry_run)


def _finish(services: RetireServices, evidence: Evidence, code: int, lines: list[str], dry_run: bool) -> Outcome:
    if dry_run:
        return Outcome(code, [*lines, "dry run: no evidence written"], evidence)
    locations = write_evidence(services.store, services.report_prefix, evidence)
    lines = [*lines, f"evidence: {locations['page']}", f"          {locations['json']}"]
    return Outcome(code, lines, evidence, locations)


# --- helpers -------------------------------------------------------------------------------------------
def _evidence(
    action: str, outcome: str, request: RetireRequest, services: RetireServices, before: KeyState, versions: list[int]
) -> Evidence:
    tag = request.key_tag
    when = datetime.now(UTC)
    return Evidence(
        action=action,
        outcome=outcome,
        key_tag=tag,
        management=services.keys.describe(tag),
        time=when,
        who=services.who,
        asked=request.asked(),
        before=before,
        versions=versions,
    )


def _state_or_none(keys: KeyManager, tag: str) -> KeyState | None:
    try:
        return keys.state(tag)
    except RewrapError:
        return None


def _listed(versions: list[int]) -> str:
    return ", ".join(f"v{v}" for v in versions)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds} s"
