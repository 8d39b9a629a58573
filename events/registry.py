"""Every event type trialops writes, with its schema version and its upcasters.

A payload model is registered under its event type name and the bounded context (topic)
that owns it. Readers call :func:`read` on an envelope: old schema versions are upcast to
the current one at this edge, so folds and deciders only ever see current payloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from events.envelope import Envelope, Frozen


class EventPayload(Frozen):
    """Base of every payload. Subclasses are registered with :func:`event_type`."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int]
    context: ClassVar[str]


P = TypeVar("P", bound=type[EventPayload])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns a payload of one schema version into the next version's."""

_TYPES: dict[str, type[EventPayload]] = {}
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


class UnknownEventType(ValueError):
    pass


def event_type(name: str, *, version: int, context: str) -> Callable[[P], P]:
    def register(cls: P) -> P:
        if name in _TYPES:
            raise ValueError(f"event type {name!r} registered twice")
        cls.event_type, cls.schema_version, cls.context = name, version, context
        _TYPES[name] = cls
        return cls

    return register


def upcaster(name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function turning a version-``from_version`` payload into the next version."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(name, from_version)] = fn
        return fn

    return register


def payload_type(name: str) -> type[EventPayload]:
    try:
        return _TYPES[name]
    except KeyError:
        raise UnknownEventType(f"unknown event type {name!r}") from None


def all_types() -> dict[str, type[EventPayload]]:
    return dict(sorted(_TYPES.items()))


def readable_versions(name: str) -> list[int]:
    """Every schema version of ``name`` a reader accepts, oldest first: the current one and
    each older one from which upcasters lead, one step at a time, to it."""
    versions = [payload_type(name).schema_version]
    while (name, versions[0] - 1) in _UPCASTERS:
        versions.insert(0, versions[0] - 1)
    return versions


def upcast(name: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
    current = payload_type(name).schema_version
    if version > current:
        raise UnknownEventType(f"{name} v{version} is newer than this reader (v{current})")
    while version < current:
        try:
            payload = _UPCASTERS[(name, version)](payload)
        except KeyError:
            raise UnknownEventType(f"no upcaster for {name} v{version}") from None
        version += 1
    return payload


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as read back: its envelope and its typed, current-version payload."""

    envelope: Envelope
    payload: EventPayload


def read(envelope: Envelope) -> Recorded:
    """Validate an envelope's payload against its (upcast) current model."""
    model = payload_type(envelope.event_type)
    data = upcast(envelope.event_type, envelope.schema_version, envelope.payload)
    return Recorded(envelope, model.model_validate(data))
