"""The worker waits for full batches only while it is far behind its partition (decision 56):
a lone command's event keeps the short wait of decision 46 (``BATCH_SECONDS``), while a worker
catching up on a long log takes batches of up to ``BATCH_EVENTS`` events, each touched key then
written once for more events.

The rule is the worker's own (projections/worker.py): behind means at least ``CATCH_UP_LAG``
records after the last one applied, counted from the consumer's high watermark."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from projections.worker import BATCH_EVENTS, CATCH_UP_LAG, _behind

TOPIC = "trialops.enrollment.events"


def worker_seeing(highwater):
    """An app whose consumer reports ``highwater`` (or raises it, when it is an exception)."""

    def read(tp):
        if isinstance(highwater, Exception):
            raise highwater
        return highwater

    return SimpleNamespace(consumer=SimpleNamespace(highwater=read))


def last_applied(offset: int):
    return SimpleNamespace(tp=TP(TOPIC, 0), offset=offset)


def test_a_worker_at_the_end_of_its_partition_keeps_the_short_wait():
    # A transactional append leaves its commit marker after the event: one record behind.
    assert not _behind(worker_seeing(42), last_applied(40))


def test_a_worker_just_short_of_a_full_batch_behind_keeps_the_short_wait():
    assert not _behind(worker_seeing(100 + CATCH_UP_LAG), last_applied(100))


def test_a_worker_a_full_batch_behind_waits_for_full_batches():
    assert CATCH_UP_LAG == BATCH_EVENTS
    assert _behind(worker_seeing(101 + CATCH_UP_LAG), last_applied(100))
    assert _behind(worker_seeing(1_000_000), last_applied(100))


def test_a_worker_that_knows_no_end_yet_keeps_the_short_wait():
    assert not _behind(worker_seeing(None), last_applied(100))
    assert not _behind(worker_seeing(KeyError("no highwater yet")), last_applied(100))
