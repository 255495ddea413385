"""What lives at a request path, derived from the client's table of generations (``rewrap.ncp.generations``).

Each generation contributes its path prefixes (``base`` per signature version, ``ocapi_auth_base`` for
token auth), its crypto segments (``actions`` and their ``other_spellings``, ``batch_actions``) and its
admin calls (key info, versions, rotation), so client and emulator cannot drift apart on a path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rewrap.ncp.generations import GENERATIONS, RE_ENCRYPT, VERSIONS_SEGMENT, Generation
from rewrap.ncp.management import ACTIVITIES_SEGMENT, MANAGEMENT

TOKEN_AUTH = "token"
# The names stats count and faults match for the generations' operations (the rest keep theirs).
_ACTION_NAMES = {"custom-key": "createCustomKey"}
# Admin actions that change a key's state (a sub account with a viewer policy may not call them).
CHANGING_ACTIONS = frozenset({"rotate", "update-version", "set-version"})


@dataclass(frozen=True)
class Route:
    """A request's target: API generation, key, action (as counted in stats and matched by faults)."""

    api: str  # "1.0", "2.0" or "v3"
    tag: str  # as it appears in the path
    action: str
    auth: frozenset[str]  # what may authenticate it: "v1", "v2" (signatures), "token"
    batch: bool = False
    version: str | None = None  # versions/{version}
    segment: str | None = None  # the crypto path segment as requested (2.0 set-version: enable|disable)
    query: tuple[tuple[str, str], ...] = ()  # the query string's parameters (admin lists)

    @property
    def signature(self) -> str:
        return "v1" if "v1" in self.auth else "v2"

    @property
    def token_only(self) -> bool:
        return self.auth == {TOKEN_AUTH}


def action_name(operation: str) -> str:
    return _ACTION_NAMES.get(operation, operation)


def _crypto_segments(gen: Generation) -> dict[str, tuple[str, bool]]:
    """Path segment → (action, batch) for one generation, every documented spelling included."""
    segments = {spelling: (action_name(op), False) for op in gen.actions for spelling in gen.spellings(op)}
    segments.update({segment: (action_name(op), True) for op, segment in gen.batch_actions.items()})
    return segments


def _prefixes() -> dict[str, tuple[Generation, frozenset[str]]]:
    """Path prefix (up to the key tag) → the generation served there and the auth it accepts."""
    found: dict[str, tuple[Generation, set[str]]] = {}
    for gen in GENERATIONS.values():
        for signature in gen.signatures:
            found.setdefault(gen.base.format(sig=signature), (gen, set()))[1].add(signature)
        if gen.ocapi_auth_base is not None:
            found.setdefault(gen.ocapi_auth_base, (gen, set()))[1].add(TOKEN_AUTH)
    return {prefix: (gen, frozenset(auth)) for prefix, (gen, auth) in found.items()}


CRYPTO_SEGMENTS: Mapping[str, Mapping[str, tuple[str, bool]]] = {
    name: _crypto_segments(gen) for name, gen in GENERATIONS.items()
}
# Any crypto segment of any generation → its action (what inject() takes for ``action``).
ACTION_ALIASES: Mapping[str, str] = {
    segment: action for table in CRYPTO_SEGMENTS.values() for segment, (action, _) in table.items()
}
CRYPTO_ACTIONS = frozenset(ACTION_ALIASES.values())
# Per generation: the spellings of re-encrypt when it has more than one (the strict switch picks one).
RE_ENCRYPT_SPELLINGS: Mapping[str, frozenset[str]] = {
    name: frozenset(gen.spellings(RE_ENCRYPT.name) if gen.other_spellings.get(RE_ENCRYPT.name) else ())
    for name, gen in GENERATIONS.items()
}
_PREFIXES = _prefixes()


def route(method: str, path: str) -> Route | None:
    """What lives at ``path`` for ``method``; None when nothing does."""
    for prefix, (gen, auth) in _PREFIXES.items():
        if path.startswith(f"{prefix}/"):
            return _route_under(gen, auth, method, path[len(prefix) + 1 :].split("/"))
    return None


def _route_under(gen: Generation, auth: frozenset[str], method: str, parts: Sequence[str]) -> Route | None:
    """The route of ``{tag}[/{segment}[/{version}[/{change}]]]`` below one prefix."""
    if len(parts) > 4 or not all(parts):
        return None
    tag, rest = parts[0], tuple(parts[1:])
    signed = auth - {TOKEN_AUTH}  # admin calls take a signature, never a token
    admin = _admin_action(gen, method, rest) if signed else None
    if admin is not None:
        action, version = admin
        segment = rest[2] if action == "set-version" else None
        return Route(gen.name, tag, action, frozenset(signed), version=version, segment=segment)
    if len(rest) != 1 or method != "POST":
        return None
    found = CRYPTO_SEGMENTS[gen.name].get(rest[0])
    if found is None:
        return None
    return Route(gen.name, tag, found[0], auth, batch=found[1], segment=rest[0])


def _admin_action(gen: Generation, method: str, rest: tuple[str, ...]) -> tuple[str, str | None] | None:
    """(action, version) of a key administration call, None when ``rest`` names none."""
    if gen.key_info and not rest and method == "GET":
        return "key-info", None
    if gen.rotate_segment is not None and rest == (gen.rotate_segment,) and method == "POST":
        return "rotate", None
    if gen.version_info == "list" and rest == (VERSIONS_SEGMENT,) and method == "GET":
        return "versions", None
    if gen.version_info == "each" and len(rest) == 2 and rest[0] == VERSIONS_SEGMENT and method in ("GET", "PATCH"):
        return ("version" if method == "GET" else "update-version"), rest[1]
    return _management_action(gen, method, rest)


def _management_action(gen: Generation, method: str, rest: tuple[str, ...]) -> tuple[str, str | None] | None:
    """The key management calls of ``rewrap.ncp.management`` (2.0 and v3)."""
    management = MANAGEMENT.get(gen.name)
    if management is None:
        return None
    if rest == (VERSIONS_SEGMENT,) and method == "GET":
        return "versions", None
    if rest == (ACTIVITIES_SEGMENT,) and method == "GET":
        return "activities", None
    changes = management.set_by == "segment" and method == "POST" and len(rest) == 3
    if changes and rest[0] == VERSIONS_SEGMENT and rest[2] in ("enable", "disable"):
        return "set-version", rest[1]
    return None
