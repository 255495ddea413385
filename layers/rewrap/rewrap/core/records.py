"""A record's fields, defined once: what an item's ``to_dict`` holds (the functions' answers, logs,
JSON reports) and, in the same order, the columns of its CSV report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Field(Generic[T]):
    name: str
    value: Callable[[T], Any]
    optional: bool = False  # left out of the record when its value is None


def record(item: T, fields: Sequence[Field[T]]) -> dict[str, Any]:
    """``item`` as a record: every field in order, optional ones only when they have a value."""
    out: dict[str, Any] = {}
    for field in fields:
        value = field.value(item)
        if value is not None or not field.optional:
            out[field.name] = value
    return out


def columns(fields: Sequence[Field[Any]]) -> tuple[str, ...]:
    return tuple(field.name for field in fields)
