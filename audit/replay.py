"""Rebuild a projection from the topics with kafka-python, by the very folds the worker runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import tee
from typing import Any

from audit.checkpoint import end_offsets
from events.reading import Halt, LogReader, TimeAxis, Where, merged
from events.registry import Recorded
from events.topics import event_topic
from infra.kafka_io import load_quarantine, read_log
from infra.keys import load_keyring
from infra.processes import cyclic_gc_paused
from infra.settings import Settings
from projections.base import Projection, fold_trials, of_trial, trial_states
from projections.catalog import NAMES, build, chosen_trial
from trial.config import TrialConfig, load_trials


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


def read_topics(
    settings: Settings, contexts: tuple[str, ...], stats: ReplayStats
) -> dict[str, list[Recorded]]:
    """Every event of ``contexts`` the reading rule applies (events/reading.py), read once and
    decoded once, per topic in offset order. A partition stops at an unreadable record that is
    not quarantined (``stats.halts``)."""
    reader = _reader(settings)
    per_topic = _read_into_lists(
        settings, [event_topic(c, settings.namespace) for c in contexts], reader, stats
    )
    _note_reading(stats, reader)
    return per_topic


def _reader(settings: Settings) -> LogReader:
    keyring = load_keyring(settings.keyring)
    return LogReader(
        keyring, load_quarantine(settings.bootstrap_servers, settings.namespace, keyring)
    )


def _read_into_lists(
    settings: Settings, topics: list[str], reader: LogReader, stats: ReplayStats
) -> dict[str, list[Recorded]]:
    per_topic: dict[str, list[Recorded]] = {topic: [] for topic in topics}
    if not topics:
        return per_topic
    with cyclic_gc_paused():
        for where, recorded in read_log(
            settings.bootstrap_servers, topics, reader, on_record=stats.count
        ):
            per_topic[where.topic].append(recorded)
    return per_topic


def _note_reading(stats: ReplayStats, reader: LogReader) -> None:
    stats.halts = sorted(reader.halts.values(), key=lambda h: h.where)
    stats.quarantined = list(reader.skipped)


def _largest(settings: Settings, topics: list[str]) -> str:
    """The topic with the most records (the one a replay reads last and does not hold)."""
    if len(topics) == 1:
        return topics[0]
    ends = end_offsets(settings.bootstrap_servers, topics)
    sizes = {topic: 0 for topic in topics}
    for (topic, _partition), end in ends.items():
        sizes[topic] += end
    return max(topics, key=lambda topic: sizes[topic])


def recorded_events(
    settings: Settings,
    contexts: tuple[str, ...],
    stats: ReplayStats,
    as_of: datetime | None = None,
    axis: TimeAxis = "recorded",
) -> Iterator[Recorded]:
    """Every event of ``contexts`` that the reading rule applies (events/reading.py), once,
    each topic in offset order, topics merged by recorded time (the order a live worker roughly
    sees them in). A partition stops at an unreadable record that is not quarantined.

    The largest topic is read last and merged as it is read, the others are held: a
    one-topic projection holds nothing. (The order topics are read in does not change what the
    rule applies: a key rotation retires a key of its own topic's writer only.)"""
    topics = [event_topic(c, settings.namespace) for c in contexts]
    streamed = _largest(settings, topics)
    reader = _reader(settings)
    sources: dict[str, Iterable[Recorded]] = dict(
        _read_into_lists(settings, [t for t in topics if t != streamed], reader, stats)
    )
    live = read_log(settings.bootstrap_servers, [streamed], reader, on_record=stats.count)
    sources[streamed] = (recorded for _where, recorded in live)
    try:
        for recorded in merged(sources, topics, as_of, axis):
            stats.applied += 1
            yield recorded
    finally:
        _note_reading(stats, reader)


def replay(
    settings: Settings,
    name: str,
    *,
    as_of: datetime | None = None,
    axis: TimeAxis = "recorded",
    stats: ReplayStats | None = None,
    now: datetime | None = None,
    trial_id: str | None = None,
    trials: Mapping[str, TrialConfig] | None = None,
):
    """The projection's JSON document of one trial as of ``as_of`` (everything, when None). A
    document that depends on the time it is read at (what is overdue) is read at ``as_of``, or
    ``now``. ``trial_id``: which of the deployment's ``trials`` (default ``load_trials()``);
    None for its only one (``catalog.TrialNotNamed`` when it runs several). Events of the
    deployment's other trials are not this trial's; those of a trial it does not run are
    reported in ``stats.fold_errors`` (decision 61)."""
    trials = trials if trials is not None else load_trials()
    chosen = chosen_trial(trials, trial_id)
    if name not in NAMES:
        raise KeyError(f"unknown projection {name!r}; known: {', '.join(sorted(NAMES))}")
    projection = build(trials[chosen])[name]
    stats = stats if stats is not None else ReplayStats()
    with cyclic_gc_paused():
        states = fold_trials(
            {chosen: projection},
            of_the_trial(recorded_events(settings, projection.contexts, stats, as_of, axis),
                         chosen, trials, stats.fold_errors),
            errors=stats.fold_errors,
        )
        return projection.document(trial_states(states, chosen),
                                   as_of or now or datetime.now(UTC))


def of_the_trial(
    events: Iterable[Recorded], trial_id: str, trials: Iterable[str], errors: list[str]
) -> Iterator[Recorded]:
    """The events of ``trial_id``; another trial's of the deployment (``trials``) are passed
    over, and one of a trial it does not run is reported in ``errors``, like a fold error."""
    known = dict.fromkeys(trials, True)
    for recorded in events:
        if recorded.envelope.trial_id == trial_id:
            yield recorded
        else:
            of_trial(known, recorded, errors)


def trial_events(
    settings: Settings,
    contexts: tuple[str, ...],
    stats: ReplayStats,
    trial_id: str,
    trials: Iterable[str],
    as_of: datetime | None = None,
    axis: TimeAxis = "recorded",
) -> Iterator[Recorded]:
    """:func:`recorded_events` of one trial of the deployment's ``trials``: what the inbox, the
    audit trail, the exports and the packets read, never two trials' events in one document;
    an event of a trial the deployment does not run is reported in ``stats.fold_errors``
    (decisions 61, 62)."""
    return of_the_trial(recorded_events(settings, contexts, stats, as_of, axis), trial_id,
                        trials, stats.fold_errors)


def replay_all(
    settings: Settings,
    names: tuple[str, ...] = NAMES,
    *,
    as_of: datetime | None = None,
    axis: TimeAxis = "recorded",
    stats: ReplayStats | None = None,
    now: datetime | None = None,
    trial_id: str | None = None,
    trials: Mapping[str, TrialConfig] | None = None,
) -> dict[str, Any]:
    """Every projection of ``names`` of one trial (``trial_id``, as in :func:`replay`), from
    one read of the topics they fold: each record is read and decoded once, and each
    projection folds its own topics in its own merge order, so each document is the one
    :func:`replay` gives for that projection alone.
    ``stats.applied`` counts the events folded over all the projections.

    The largest topic is read last and not held: the projections that fold it take its events
    in turns of :data:`STRIDE` as it is read (each through its own branch of one read), so
    only the other topics and about a stride of it are in memory at once."""
    stats = stats if stats is not None else ReplayStats()
    trials = trials if trials is not None else load_trials()
    chosen = chosen_trial(trials, trial_id)
    built = build(trials[chosen])
    unknown = [name for name in names if name not in built]
    if unknown:
        raise KeyError(f"unknown projection {unknown[0]!r}; known: {', '.join(sorted(NAMES))}")
    projections: list[Projection] = [built[name] for name in names]
    topics_of = [[event_topic(c, settings.namespace) for c in p.contexts] for p in projections]
    topics = list(dict.fromkeys(t for each in topics_of for t in each))
    streamed = _largest(settings, topics)
    reader = _reader(settings)
    taken = [0] * len(projections)
    errors: list[list[str]] = [[] for _ in projections]
    states: list[dict] = [{} for _ in projections]

    def counted(index: int, branch: Iterator[Recorded]) -> Iterator[Recorded]:
        for recorded in branch:
            taken[index] += 1
            yield recorded

    with cyclic_gc_paused():
        held = _read_into_lists(settings, [t for t in topics if t != streamed], reader, stats)
        live = (recorded for _where, recorded in read_log(
            settings.bootstrap_servers, [streamed], reader, on_record=stats.count
        ))
        folding_live = [i for i, each in enumerate(topics_of) if streamed in each]
        branches = dict(zip(folding_live, tee(live, len(folding_live)) if folding_live else (),
                            strict=True))
        merges: list[Iterator[Recorded]] = []
        for index, each in enumerate(topics_of):
            sources: dict[str, Iterable[Recorded]] = {t: held[t] for t in each if t != streamed}
            if index in branches:
                sources[streamed] = counted(index, branches[index])
            merges.append(merged(sources, each, as_of, axis))
        active = set(range(len(projections)))
        target = 0
        while active:
            target += STRIDE
            for index in sorted(active):
                turn = _turn(merges[index], index, taken, target, active, stats)
                fold_trials({chosen: projections[index]},
                            of_the_trial(turn, chosen, trials, errors[index]),
                            states[index], errors=errors[index])
        _note_reading(stats, reader)
        documents: dict[str, Any] = {}
        for index, name in enumerate(names):
            stats.fold_errors.extend(errors[index])
            documents[name] = projections[index].document(
                trial_states(states[index], chosen), as_of or now or datetime.now(UTC)
            )
    return documents


def _turn(
    events: Iterator[Recorded], index: int, taken: list[int], target: int, active: set[int],
    stats: ReplayStats,
) -> Iterator[Recorded]:
    """A projection's events until its branch of the streamed topic has given ``target`` (all
    of them for a projection that does not fold that topic); at the end it leaves ``active``."""
    while taken[index] < target:
        recorded = next(events, None)
        if recorded is None:
            active.discard(index)
            return
        stats.applied += 1
        yield recorded


STRIDE = 2_000
"""How many events of the streamed topic each projection folds in its turn (replay_all)."""
