"""A fold agent never loses the events it has in hand (decision 67).

* A changelog the consumer's metadata does not know yet (created moments before, at a worker's
  first start) is not a partition mismatch: Faust's check waits for a later write. It crashed
  the enrollment fold on the first event of a partition in the many-trials test under load.
* An exception a fold leaves unhandled stops the worker process (its supervisor folds anew)
  instead of Faust restarting the agent alone, which read on past the events the failed agent
  had taken and halted on a broken chain ("seq 3 follows seq 0").

No broker: the consumer's partition counts are given as its metadata would give them."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.exceptions import PartitionsMismatch

from projections.faust_kafka import FOLD_FAILED_EXIT, stops_the_worker
from projections.faust_tables import CountedTable, InMemoryTable

SOURCE = "trialops.enrollment.events"


@pytest.mark.parametrize("kind", [InMemoryTable, CountedTable])
def test_a_changelog_not_yet_in_the_metadata_is_checked_at_a_later_write(kind, monkeypatch):
    app = faust.App("test-fold-failure", broker="kafka://127.0.0.1:9", store="memory://")
    table = kind(app, name="patient-timeline", partitions=4, key_type=str)
    known: dict[str, int] = {SOURCE: 4}  # the changelog: not yet in the metadata
    monkeypatch.setattr(app.consumer, "topic_partitions", known.get, raising=False)

    table._verify_source_topic_partitions(SOURCE)  # no PartitionsMismatch for "0 partitions"
    assert SOURCE not in table._verified_source_topics_for_partitions

    known[table.changelog_topic_name] = 2  # known, and not co-partitioned: Faust's check holds
    with pytest.raises(PartitionsMismatch):
        table._verify_source_topic_partitions(SOURCE)

    known[table.changelog_topic_name] = 4
    table._verify_source_topic_partitions(SOURCE)
    assert SOURCE in table._verified_source_topics_for_partitions


def run(fold) -> list[int]:
    exits: list[int] = []
    guarded = stops_the_worker(fold, "trialops.enrollment.events", exit=exits.append)

    async def go() -> None:
        await guarded(None)

    asyncio.run(go())
    return exits


def test_a_fold_that_fails_stops_the_worker_with_its_exit_code(caplog):
    async def fails(_stream) -> None:
        raise RuntimeError("a table write failed")

    assert run(fails) == [FOLD_FAILED_EXIT]
    assert "the fold of trialops.enrollment.events failed" in caplog.text


def test_a_fold_that_ends_or_is_cancelled_does_not():
    async def ends(_stream) -> None:
        return None

    async def cancelled(_stream) -> None:  # a rebalance or a stop: Faust restarts the agent
        raise asyncio.CancelledError

    assert run(ends) == []
    with pytest.raises(asyncio.CancelledError):
        run(cancelled)


# Decision 68: what a rebalance leaves in hand, and what Faust commits.


def consumer():
    from projections.faust_kafka import ReadCommittedTransport

    app = faust.App("test-gaps", broker="kafka://127.0.0.1:9")

    async def nothing(*_args, **_kwargs) -> None:
        return None

    return ReadCommittedTransport(["kafka://127.0.0.1:9"], app).create_consumer(
        callback=nothing, on_partitions_revoked=nothing, on_partitions_assigned=nothing)


def test_a_message_is_not_committable_until_it_is_acked():
    from faust.types import TP

    tp = TP(SOURCE, 3)
    reading = consumer()

    async def go() -> tuple[list[tuple[int, int]], int | None, int | None]:
        # Offset 10 applied and acked; 11 and 13 are transaction markers; the messages at 12
        # and 14 arrive (Faust asks for the gaps 11..12 and 13..14), and 14 is acked first (an
        # event left in hand by a rebalance, or a second agent)
        reading._committed_offset[tp] = 10
        reading._acked[tp] = [10]
        await reading._add_gap(tp, 11, 12)
        await reading._add_gap(tp, 13, 14)
        gaps = sorted((i.begin, i.end) for i in reading._gap[tp])
        reading._acked[tp].append(14)
        before = reading._new_offset(tp)  # 12 not yet applied: the commit stops before it
        reading._committed_offset[tp] = before  # committed, as Faust's commit records
        reading._acked[tp].append(12)
        return gaps, before, reading._new_offset(tp)

    gaps, before, after = asyncio.run(go())
    assert gaps == [(11, 12), (13, 14)]  # the markers only, not the messages
    assert before == 12  # Faust's own gaps (11..12 and 13..14 inclusive) made it 15
    assert after == 15


def test_events_read_before_a_rebalance_are_neither_applied_nor_acked():
    from types import SimpleNamespace

    from projections.faust_kafka import current

    def event(offset: int, generation: int | None):
        return SimpleNamespace(message=SimpleNamespace(offset=offset, generation_id=generation))

    taken = [event(1, 4), event(2, 5), event(3, 5), event(4, None)]
    assert [e.message.offset for e in current(taken, 5)] == [2, 3, 4]
    assert current(taken, 6) == [taken[3]]


def test_records_the_worker_read_itself_do_not_hold_the_commits():
    from faust.types import TP

    tp = TP(SOURCE, 1)
    reading = consumer()

    async def go(read_by_the_worker: bool) -> int | None:
        # The consumer committed 32 and then passed over 32..42; the worker read and applied
        # them itself (decision 69), then the event at 43, which is acked
        reading._committed_offset[tp] = 32
        reading._acked[tp] = []
        reading._gap[tp].clear()
        if read_by_the_worker:
            await reading.read_by_the_worker(tp, 32, 43)
        reading._acked[tp].append(43)
        return reading._new_offset(tp)

    # Then Faust commits past them; told nothing, it never commits that partition again
    assert asyncio.run(go(True)) == 44
    assert asyncio.run(go(False)) is None


# Decision 78: Faust's recovery seeks back to the committed offsets while its flow runs.


def test_the_consumer_hands_on_nothing_while_it_seeks_back_to_the_committed_offsets():
    from faust.types import TP

    tp = TP(SOURCE, 1)
    reading = consumer()
    seen: dict[str, bool] = {}

    async def seek_to_committed() -> dict[TP, int]:
        # What Faust's loop that hands records on checks, before each record and while one
        # waits to be delivered, as the broker's answer to the seek is awaited
        seen["flowing"] = reading.flow_active
        seen["suspended"] = reading.suspend_flow.is_set()
        return {tp: 11}

    async def go() -> None:
        reading._thread.seek_to_committed = seek_to_committed
        reading.resume_flow()  # as Faust's recovery left it: flowing since the changelogs
        reading._read_offset[tp] = 62  # handed on up to 62 from before the seek
        await reading.perform_seek()

    asyncio.run(go())
    assert seen == {"flowing": False, "suspended": True}
    assert reading._read_offset[tp] == 11  # what comes after the committed offset comes again
    assert not reading.flow_active  # until the recovery resumes the flow
