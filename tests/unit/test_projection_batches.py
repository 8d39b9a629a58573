"""The live projections apply events in batches (projections/applying.py, decision 46): each
touched key is written once per batch, and the crash-and-redelivery guarantees of decision 5
still hold.

The reference, as in test_projection_redelivery.py, is the pure fold (projections.base.fold) of
the same events, each once: what the replay computes and the worker must converge to. A
crash is modelled as that file models it: every changelog keeps its writes up to the last
consumer commit (Faust flushes its producer before committing) and a prefix of the rest (one
changelog partition keeps its order)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from faust.serializers.codecs import dumps, loads

from events.reading import Unreadable
from events.registry import Recorded
from events.topics import event_topic
from projections.applying import Batch, Overlay, TrialTable, states
from projections.base import to_json

from .test_projection_redelivery import (
    DELETED,
    LOG,
    PROJECTIONS,
    TRIAL_ID,
    Changelog,
    expected_states,
    readers,
)

Entry = tuple[str, int, Recorded]


def fresh() -> tuple[dict[str, Changelog], Changelog, Changelog]:
    return {name: Changelog() for name in PROJECTIONS}, Changelog(), Changelog()


def run_in_batches(
    log: Sequence[Entry], tables, applied, positions, rng: random.Random, largest: int = 40
) -> list[int]:
    """Apply ``log`` as the worker does, in batches of 1 to ``largest`` events; the indexes of
    ``log`` at which each batch was flushed (where the consumer may commit)."""
    boundaries = []
    start = 0
    while start < len(log):
        end = min(len(log), start + rng.randint(1, largest))
        batch = Batch(tables, applied, positions)
        for source, offset, recorded in log[start:end]:
            batch.apply(readers(source), source, offset, recorded)
            batch.pass_over(source, offset)
        batch.flush()
        batch.advance()
        boundaries.append(end)
        start = end
    return boundaries


def end_positions(log: Sequence[Entry]) -> dict[str, int]:
    ends: dict[str, int] = {}
    for source, offset, _recorded in log:
        ends[source] = offset + 1
    return ends


# -- the overlay


def test_an_overlay_reads_through_and_writes_each_key_once_at_flush():
    table = Changelog()
    table["C001"] = 1
    table["C002"] = 2
    table.writes.clear()
    overlay: Overlay[int] = Overlay(table)

    overlay["C001"] = 10
    overlay["C001"] = 11  # the same key twice in one batch
    overlay["C003"] = 3
    del overlay["C002"]
    overlay["C004"] = 4
    del overlay["C004"]  # a key whose state began and ended in the batch

    # The batch sees its own writes; the table does not, yet
    assert dict(overlay) == {"C001": 11, "C003": 3}
    assert overlay.get("C002") is None and "C002" not in overlay and "C004" not in overlay
    assert len(overlay) == 2 and table.data == {"C001": 1, "C002": 2} and not table.writes
    with pytest.raises(KeyError):
        overlay["C002"]
    with pytest.raises(KeyError):
        del overlay["C005"]

    writes = overlay.flush()

    assert table.data == {"C001": 11, "C003": 3}
    assert sorted(table.writes, key=lambda w: w[0]) == [
        ("C001", 11), ("C002", DELETED), ("C003", 3)
    ]
    assert writes == 3 and not overlay.written and dict(overlay) == table.data


# -- batches


def test_events_applied_in_batches_give_the_fold():
    tables, applied, positions = fresh()
    run_in_batches(LOG, tables, applied, positions, random.Random(1))

    assert {n: states(t, TRIAL_ID) for n, t in tables.items()} == expected_states()
    assert positions.data == end_positions(LOG)


def test_a_batch_writes_each_touched_key_once():
    # Given the whole simulated trial in one batch
    tables, applied, positions = fresh()
    batch = Batch(tables, applied, positions)
    for source, offset, recorded in LOG:
        batch.apply(readers(source), source, offset, recorded)
        batch.pass_over(source, offset)

    batch.flush()
    batch.advance()

    for table in [*tables.values(), applied, positions]:
        keys = [key for key, _value in table.writes]
        assert len(keys) == len(set(keys))
    # and the same trial event by event writes some key many times
    one_by_one, applied_1, positions_1 = fresh()
    run_in_batches(LOG, one_by_one, applied_1, positions_1, random.Random(2), largest=1)
    assert sum(len(t.writes) for t in tables.values()) < sum(
        len(t.writes) for t in one_by_one.values()
    )
    assert {n: states(t, TRIAL_ID) for n, t in tables.items()} == {
        n: states(t, TRIAL_ID) for n, t in one_by_one.items()
    }


@pytest.mark.parametrize("seed", range(40))
def test_a_crash_during_a_flush_and_the_redelivery_give_the_fold(seed):
    rng = random.Random(seed)
    tables, applied, positions = fresh()
    # Given a worker that committed its consumer offsets after one batch ...
    boundaries = run_in_batches(LOG, tables, applied, positions, rng)
    committed = rng.choice([0, *boundaries[:-1]])
    tables, applied, positions = fresh()
    run_in_batches(LOG[:committed], tables, applied, positions, rng)
    flushed = {name: len(t.writes) for name, t in tables.items()}
    flushed_applied, flushed_positions = len(applied.writes), len(positions.writes)
    # ... and died during a later flush: each changelog kept a prefix of what followed
    crashed = rng.randrange(committed, len(LOG)) + 1
    run_in_batches(LOG[committed:crashed], tables, applied, positions, rng)

    def survived(table: Changelog, flushed: int) -> Changelog:
        return Changelog.recovered(table.writes[: rng.randint(flushed, len(table.writes))])

    recovered = {n: survived(t, flushed[n]) for n, t in tables.items()}
    recovered_applied = survived(applied, flushed_applied)
    recovered_positions = survived(positions, flushed_positions)

    # When the restarted worker reads again from the committed offsets, in other batches
    run_in_batches(LOG[committed:], recovered, recovered_applied, recovered_positions, rng)

    # Then every projection equals the fold of the log, each event once, as an
    # uninterrupted run gives it
    assert {n: states(t, TRIAL_ID) for n, t in recovered.items()} == expected_states()
    assert recovered_positions.data == end_positions(LOG)


def crash_and_resume_from_positions(seed: int, durable_first: bool) -> tuple[dict, dict]:
    """A worker applies the log in batches and is killed during one; each changelog keeps what
    the broker acknowledged and, independently of the others (they are different partitions,
    with different leaders), a prefix of the rest. The restarted worker reads each partition
    from its recovered position, as the worker does when its consumer passes over records
    (decision 69). ``durable_first``: positions are written once the broker acknowledged the
    batch's other writes (decision 76); otherwise in the same flush, as before it.
    Returns the recovered projections' states and positions."""
    rng = random.Random(seed)
    tables, applied, positions = fresh()
    changelogs = [*tables.values(), applied, positions]
    acked = {id(changelog): 0 for changelog in changelogs}

    def acknowledge() -> None:
        acked.update({id(changelog): len(changelog.writes) for changelog in changelogs})

    killed = rng.randrange(len(LOG)) + 1
    start = 0
    while start < killed:
        end = min(killed, start + rng.randint(1, 40))
        batch = Batch(tables, applied, positions)
        for source, offset, recorded in LOG[start:end]:
            batch.apply(readers(source), source, offset, recorded)
            batch.pass_over(source, offset)
        batch.flush()
        if durable_first:
            if end == killed and rng.random() < 0.5:
                break  # killed while waiting for the broker's answer
            acknowledge()
            batch.advance()
        else:
            batch.advance()
            if rng.random() < 0.3:
                acknowledge()  # a commit of the consumer's offsets flushes the producer
        start = end

    def survived(changelog: Changelog) -> Changelog:
        kept = rng.randint(acked[id(changelog)], len(changelog.writes))
        return Changelog.recovered(changelog.writes[:kept])

    recovered = {name: survived(table) for name, table in tables.items()}
    recovered_applied, recovered_positions = survived(applied), survived(positions)
    resumed = [(source, offset, recorded) for source, offset, recorded in LOG
               if offset >= recovered_positions.get(source, 0)]
    run_in_batches(resumed, recovered, recovered_applied, recovered_positions, rng)
    return {n: states(t, TRIAL_ID) for n, t in recovered.items()}, recovered_positions.data


@pytest.mark.parametrize("seed", range(40))
def test_a_worker_resumed_from_its_positions_after_a_crash_gives_the_fold(seed):
    # Given positions written only once the changelogs hold what they cover
    resumed, positions = crash_and_resume_from_positions(seed, durable_first=True)

    # Then wherever the crash came, what lies below a surviving position is in the tables
    assert resumed == expected_states()
    assert positions == end_positions(LOG)


def test_positions_written_with_the_keys_can_outlive_them():
    # The hazard decision 76 closes: with positions in the same flush as the keys and heads,
    # some crashes keep a position whose batch's keys or heads were lost, and a worker that
    # resumes from it never applies the events below it: a stream's next event then breaks
    # its chain ("seq 2 follows seq 0", as the scale-out test's surviving worker halted), or,
    # where the stream had no next event, a projection silently lacks them
    broken, wrong = 0, 0
    for seed in range(40):
        try:
            outcome, _positions = crash_and_resume_from_positions(seed, durable_first=False)
        except Unreadable as exc:
            assert exc.kind == "broken-chain"
            broken += 1
        else:
            wrong += outcome != expected_states()
    assert broken and wrong


def test_a_batch_stops_at_an_unreadable_record_with_what_came_before_it_written():
    # Given an enrollment log from which the second event of a stream is missing, so that
    # stream's third event, some records later, does not follow its head
    enrollment = [entry for entry in LOG if entry[0] == f"{event_topic('enrollment')}:0"]
    counts = Counter(r.envelope.stream_id for _s, _o, r in enrollment)
    stream = next(s for s, n in counts.items() if n >= 3)
    second, third = [i for i, (_s, _o, r) in enumerate(enrollment)
                     if r.envelope.stream_id == stream][1:3]
    log = [*enrollment[:second], *enrollment[second + 1 : third + 1]]
    assert len(log) >= 3
    tables, applied, positions = fresh()
    batch = Batch(tables, applied, positions)

    # When the worker applies it as one batch, flushing at the record that raises
    halted_at = None
    for source, offset, recorded in log:
        try:
            batch.apply(readers(source), source, offset, recorded)
        except Unreadable as exc:
            assert exc.kind == "broken-chain"
            halted_at = offset
            break
        batch.pass_over(source, offset)
    batch.flush()
    batch.advance()

    # Then the tables hold exactly the events before it, and the position stands at it
    tables_before, applied_before, positions_before = fresh()
    run_in_batches(log[:-1], tables_before, applied_before, positions_before, random.Random(3))
    assert halted_at == log[-1][1]
    assert {n: states(t, TRIAL_ID) for n, t in tables.items()} == {
        n: states(t, TRIAL_ID) for n, t in tables_before.items()
    }
    assert positions.data == {log[-1][0]: log[-1][1]}


class SerializedTable(Changelog):
    """A table that keeps its values as bytes in Faust's JSON codec, as the RocksDB store does
    (and as every table is after recovery from its changelog): each read decodes anew."""

    def __getitem__(self, key):
        return loads("json", self.data[key])

    def __setitem__(self, key, value):
        super().__setitem__(key, dumps("json", value))


def test_tables_that_store_their_values_as_json_serve_the_replay_s_documents():
    # The reference is the replay: the pure fold, rendered by the same serialisation
    tables = {name: SerializedTable() for name in PROJECTIONS}
    run_in_batches(LOG, tables, SerializedTable(), SerializedTable(), random.Random(4))

    as_of = LOG[-1][2].envelope.recorded_at
    expected = expected_states()
    for name, projection in PROJECTIONS.items():
        table = TrialTable(tables[name], TRIAL_ID)  # the trial's keys, as a view reads them
        live = {key: table[key]["state"] for key in table}
        assert to_json(projection.document(live, as_of)) == to_json(
            projection.document(expected[name], as_of)
        ), name


def test_a_copy_delivered_again_leaves_the_position_where_it_was():
    # The worker applied a partition's events up to the end; Kafka delivers the first half
    # again (a rebalance sought back to an older committed offset, decision 69)
    tables, applied, positions = fresh()
    run_in_batches(LOG, tables, applied, positions, random.Random(3))
    ends = dict(positions.data)
    run_in_batches(LOG[: len(LOG) // 2], tables, applied, positions, random.Random(4))
    # Then every position still covers everything applied: none went back to the copies'
    assert positions.data == ends == end_positions(LOG)
    assert {n: states(t, TRIAL_ID) for n, t in tables.items()} == expected_states()
