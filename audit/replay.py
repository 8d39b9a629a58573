"""Rebuild a projection from the topics with kafka-python, by the very folds the worker runs."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from events.reading import Halt, LogReader, Where
from events.registry import Recorded
from events.topics import event_topic
from infra.kafka_io import load_quarantine, read_log
from infra.keys import load_keyring
from infra.settings import Settings
from projections.base import fold
from projections.catalog import get

TimeAxis = Literal["recorded", "occurred"]


@dataclass
class ReplayStats:
    events: int = 0
    applied: int = 0
    halts: list[Halt] = field(default_factory=list)
    """Where reading stopped at an unreadable record (nothing after it in its partition is
    applied, as in every reader)."""
    quarantined: list[Where] = field(default_factory=list)
    """Unreadable records passed over because they were quarantined."""
    fold_errors: list[str] = field(default_factory=list)
    progress: Callable[[int, float], None] | None = None
    """Called every 10,000 events read with the count and the seconds since the start."""
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def count(self, _where: Where) -> None:
        self.events += 1
        if self.progress is not None and self.events % 10_000 == 0:
            self.progress(self.events, self.seconds)


def recorded_events(
    settings: Settings,
    contexts: tuple[str, ...],
    stats: ReplayStats,
    as_of: datetime | None = None,
    axis: TimeAxis = "recorded",
) -> Iterator[Recorded]:
    """Every event of ``contexts`` that the reading rule applies (events/reading.py), once,
    each topic in offset order, topics merged by recorded time (the order a live worker roughly
    sees them in). A partition stops at an unreadable record that is not quarantined."""
    keyring = load_keyring(settings.keyring)
    reader = LogReader(
        keyring, load_quarantine(settings.bootstrap_servers, settings.namespace, keyring)
    )
    per_topic: dict[str, list[tuple[Where, Recorded]]] = {}
    for where, recorded in read_log(
        settings.bootstrap_servers,
        [event_topic(c, settings.namespace) for c in contexts],
        reader,
        on_record=stats.count,
    ):
        per_topic.setdefault(where.topic, []).append((where, recorded))
    stats.halts = sorted(reader.halts.values(), key=lambda h: h.where)
    stats.quarantined = list(reader.skipped)
    merged = heapq.merge(*per_topic.values(), key=lambda item: item[1].envelope.recorded_at)
    for _where, recorded in merged:
        envelope = recorded.envelope
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
    states = fold(
        projection,
        recorded_events(settings, projection.contexts, stats, as_of, axis),
        errors=stats.fold_errors,
    )
    return projection.document(states, as_of or now or datetime.now(UTC))
