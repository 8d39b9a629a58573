"""Rebuild a projection from the topics with kafka-python, by the very folds the worker runs."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from events.envelope import from_bytes
from events.registry import Recorded, UnknownEventType, read
from events.topics import event_topic
from projections.base import fold
from projections.catalog import get
from trialops.kafka_io import Position, read_to_end
from trialops.settings import Settings

TimeAxis = Literal["recorded", "occurred"]


@dataclass
class ReplayStats:
    events: int = 0
    applied: int = 0
    unreadable: list[str] = field(default_factory=list)
    progress: Callable[[int, float], None] | None = None
    """Called every 10,000 events read with the count and the seconds since the start."""
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def recorded_events(
    settings: Settings,
    contexts: tuple[str, ...],
    stats: ReplayStats,
    as_of: datetime | None = None,
    axis: TimeAxis = "recorded",
) -> Iterator[Recorded]:
    """Every readable event of ``contexts`` once, each topic in offset order, topics merged by
    recorded time (the order a live worker roughly sees them in)."""
    per_topic: dict[str, list[tuple[Position, Recorded]]] = {}
    for position, _key, value in read_to_end(
        settings.bootstrap_servers, [event_topic(c, settings.namespace) for c in contexts]
    ):
        stats.events += 1
        if stats.progress is not None and stats.events % 10_000 == 0:
            stats.progress(stats.events, stats.seconds)
        try:
            recorded = read(from_bytes(value))
        except (ValueError, ValidationError, UnknownEventType) as exc:
            stats.unreadable.append(f"{position.topic}@{position.offset}: {type(exc).__name__}")
            continue
        per_topic.setdefault(position.topic, []).append((position, recorded))
    merged = heapq.merge(*per_topic.values(), key=lambda item: item[1].envelope.recorded_at)
    seen: dict[tuple[str, str], int] = {}
    for position, recorded in merged:
        envelope = recorded.envelope
        # The same at-most-once rule as the live worker, so a duplicate never counts twice.
        stream = (position.topic, envelope.stream_id)
        if envelope.stream_seq <= seen.get(stream, 0):
            continue
        seen[stream] = envelope.stream_seq
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
    now: datetime | None = None,
):
    """The projection's JSON document as of ``as_of`` (everything, when None). A document that
    depends on the time it is read at (what is overdue) is read at ``as_of``, or ``now``."""
    projection = get(name)
    stats = stats if stats is not None else ReplayStats()
    states = fold(projection, recorded_events(settings, projection.contexts, stats, as_of, axis))
    return projection.document(states, as_of or now or datetime.now(UTC))
