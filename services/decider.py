"""What a decider is (initial state, decide, evolve) and what it returns: new facts, not yet
sealed into envelopes. Pure: the adapters (services/runtime.py) run deciders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from events.registry import EventPayload


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A fact a decider wants appended to ``stream_id``; the appender seals it."""

    stream_id: str
    payload: EventPayload
    occurred_at: datetime


S = TypeVar("S")


@dataclass(frozen=True)
class Decider(Generic[S]):
    """A context's rules: ``decide(command, state)`` returns new events or raises a
    ``DomainError`` naming the rule; ``evolve(state, event)`` folds one event."""

    initial_state: S
    decide: Callable[[Any, S], list[NewEvent]]
    evolve: Callable[[S, EventPayload], S]
