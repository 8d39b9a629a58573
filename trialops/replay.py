"""Rebuild a projection from the topics with kafka-python, by the very folds the worker runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from events.envelope import from_bytes
from events.registry import Recorded, UnknownEventType, read
from events.topics import event_topic
from projections.base import fold
from projections.catalog import get
from trialops.kafka_io import read_to_end
from trialops.settings import Settings

TimeAxis = Literal["recorded", "occurred"]


@dataclass
class ReplayStats:
    events: int = 0
    applied: int = 0
    unreadable: list[str] = field(default_factory=list)


def recorded_events(
    settings: Settings,
    contexts: tuple[str, ...],
    stats: ReplayStats,
    as_of: datetime | None = None,
    axis: TimeAxis = "recorded",
) -> Iterator[Recorded]:
    topics = [event_topic(c, settings.namespace) for c in contexts]
    seen: dict[str, int] = {}
    for position, _key, value in read_to_end(settings.bootstrap_servers, topics):
        stats.events += 1
        try:
            recorded = read(from_bytes(value))
        except (ValueError, ValidationError, UnknownEventType) as exc:
            stats.unreadable.append(f"{position.topic}@{position.offset}: {type(exc).__name__}")
            continue
        envelope = recorded.envelope
        # The same at-most-once rule as the live worker, so a duplicate never counts twice.
        if envelope.stream_seq <= seen.get(envelope.stream_id, 0):
            continue
        seen[envelope.stream_id] = envelope.stream_seq
        if as_of is not None:
            moment = envelope.recorded_at if axis == "recorded" else envelope.occurred_at
            if moment > as_of:
                continue
        stats.applied += 1
        yield recorded


def replay(
    settings: Settings,
    name: str,
    *,
    as_of: datetime | None = None,
    axis: TimeAxis = "recorded",
    stats: ReplayStats | None = None,
):
    """The projection's JSON document as of ``as_of`` (everything, when None)."""
    projection = get(name)
    stats = stats if stats is not None else ReplayStats()
    states = fold(projection, recorded_events(settings, projection.contexts, stats, as_of, axis))
    return projection.render(states)
