"""The live projections apply each event once under Kafka's at-least-once delivery
(projections/applying.py): duplicates in the log, and redelivery after a crash that left some
changelog writes behind and lost others.

The reference is the pure fold (projections.base.fold) of the same events, each once: the
replay computes exactly that, and the worker must converge to it."""

from __future__ import annotations

import random
from collections.abc import Iterator, MutableMapping
from uuid import UUID

import pytest

from events.envelope import GENESIS_HASH
from events.registry import Recorded, read
from events.topics import event_topic
from projections.applying import apply_once, count_dead_letter, dead_letter_counts, states
from projections.base import fold
from projections.catalog import build
from trial.config import load_trial

from .builders import sealed
from .test_simulate_plan import run_in_process

DELETED = object()


class Changelog(MutableMapping):
    """A table that records every write in order, as its changelog partition would."""

    def __init__(self):
        self.data: dict = {}
        self.writes: list[tuple[str, object]] = []

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value):
        self.data[key] = value
        self.writes.append((key, value))

    def __delitem__(self, key):
        del self.data[key]
        self.writes.append((key, DELETED))

    def __iter__(self) -> Iterator:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def recovered(cls, writes) -> Changelog:
        """The table a restarted worker rebuilds from what reached the changelog."""
        table = cls()
        for key, value in writes:
            if value is DELETED:
                table.data.pop(key, None)
            else:
                table.data[key] = value
            table.writes.append((key, value))
        return table


def simulated_log(patients: int, seed: int) -> list[tuple[str, int, Recorded]]:
    """(source partition, offset, event) of a simulated trial, in the order the worker reads
    them: the four contexts' topics interleaved as the services appended."""
    api, _report, _lines = run_in_process(patients, seed)
    heads: dict[tuple[str, str], tuple[int, str]] = {}
    offsets: dict[str, int] = {}
    log = []
    for n, ((context, stream, _type, at, _user), payload) in enumerate(
        zip(api.appended, api.payloads, strict=True), start=1
    ):
        seq, prev = heads.get((context, stream), (0, GENESIS_HASH))
        envelope = sealed(payload, event_id=UUID(int=n), stream_id=stream, stream_seq=seq + 1,
                          occurred_at=at, recorded_at=at, prev_hash=prev,
                          trial_id=api.trial.trial_id)
        heads[(context, stream)] = (seq + 1, envelope.hash)
        source = f"{event_topic(context)}:0"
        offsets[source] = offsets.get(source, -1) + 1
        log.append((source, offsets[source], read(envelope)))
    return log


LOG = simulated_log(6, 7)
PROJECTIONS = build(load_trial())
TRIAL_ID = load_trial().trial_id
"""The tables' keys are scoped by the events' trial (decision 61)."""


def readers(source: str):
    topic = source.rsplit(":", 1)[0]
    return [p for p in PROJECTIONS.values()
            if any(event_topic(c) == topic for c in p.contexts)]


def expected_states() -> dict[str, dict]:
    return {
        name: fold(p, [r for s, _o, r in LOG if p in readers(s)])
        for name, p in PROJECTIONS.items()
    }


def run(log, tables, applied) -> None:
    for source, offset, recorded in log:
        apply_once(readers(source), tables, applied, source, offset, recorded)


def fresh():
    return {name: Changelog() for name in PROJECTIONS}, Changelog()


def test_each_event_once_gives_the_fold():
    tables, applied = fresh()
    run(LOG, tables, applied)
    assert {n: states(t, TRIAL_ID) for n, t in tables.items()} == expected_states()


def test_a_duplicate_appended_to_the_log_is_applied_once():
    # Given every third event appended twice, the copy a little later in its partition
    tables, applied = fresh()
    doubled, shift = [], {}
    for i, (source, offset, recorded) in enumerate(LOG):
        shift[source] = shift.get(source, 0)
        doubled.append((source, offset + shift[source], recorded))
        if i % 3 == 0:
            shift[source] += 1
            doubled.append((source, offset + shift[source], recorded))

    run(doubled, tables, applied)

    assert {n: states(t, TRIAL_ID) for n, t in tables.items()} == expected_states()


@pytest.mark.parametrize("seed", range(40))
def test_a_crash_that_kept_some_writes_and_lost_others_converges_to_the_fold(seed):
    rng = random.Random(seed)
    # Given a worker that committed its offsets after event `committed` and died after event
    # `crashed`: each changelog kept its writes up to the commit and a prefix of the rest
    committed = rng.randrange(len(LOG))
    crashed = rng.randrange(committed, len(LOG))
    tables, applied = fresh()
    run(LOG[:committed], tables, applied)
    flushed = {name: len(t.writes) for name, t in tables.items()}
    flushed_applied = len(applied.writes)
    run(LOG[committed : crashed + 1], tables, applied)

    def survived(table: Changelog, flushed: int):
        return table.writes[: rng.randint(flushed, len(table.writes))]

    recovered = {n: Changelog.recovered(survived(t, flushed[n])) for n, t in tables.items()}
    recovered_applied = Changelog.recovered(survived(applied, flushed_applied))

    # When the restarted worker reads again from the committed offsets
    run(LOG[committed:], recovered, recovered_applied)

    # Then every projection equals the fold of the log, each event once
    assert {n: states(t, TRIAL_ID) for n, t in recovered.items()} == expected_states()


def test_the_dedup_marker_alone_would_lose_an_event_after_such_a_crash():
    # The hazard the per-key markers close: the stream's marker reached its changelog, the
    # projection's write did not. A rule that trusted the marker would skip the event.
    tables, applied = fresh()
    source, offset, recorded = next(x for x in LOG if readers(x[0]))
    apply_once(readers(source), tables, applied, source, offset, recorded)
    assert applied.writes and any(t.writes for t in tables.values())

    lost = {n: Changelog() for n in PROJECTIONS}
    kept = Changelog.recovered(applied.writes)
    assert apply_once(readers(source), lost, kept, source, offset, recorded)

    assert {n: states(t, TRIAL_ID) for n, t in lost.items()} == {
        n: fold(p, [recorded] if p in readers(source) else []) for n, p in PROJECTIONS.items()
    }


def test_a_poison_event_redelivered_after_a_crash_is_counted_once():
    counted: dict = {}
    firsts = [count_dead_letter(counted, "t.enrollment:0", offset) for offset in (3, 9)]
    # the worker restarts from offset 2 of the partition: both poison events come again
    again = [count_dead_letter(counted, "t.enrollment:0", offset) for offset in (3, 9)]
    later = count_dead_letter(counted, "t.enrollment:0", 12)
    other = count_dead_letter(counted, "t.safety:0", 3)

    assert firsts == [True, True] and again == [False, False] and later and other
    assert dead_letter_counts(counted) == {"t.enrollment": 3, "t.safety": 1}
