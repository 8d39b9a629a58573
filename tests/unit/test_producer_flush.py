"""The worker's producer flush drains its buffer before Faust commits the consumer's offsets.

Faust's own ``ProducerBuffer.flush`` returns once 0.1 s pass without a message handed on, or
at once when the queue is empty while a message is still being handed on. Faust commits the
offsets right after that flush, so on a slow broker an offset covered events whose changelog
writes were still queued, and a worker killed then lost them (the fault suite, decision 63).
The messages here are handed to a destination that takes 0.25 s per message, as a loaded
broker connection does; no broker is needed to see what the buffer waits for.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import pytest
from faust.transport.producer import ProducerBuffer

from projections.faust_kafka import DrainingBuffer, FlushStalled

HAND_ON_SECONDS = 0.25


class SlowDestination:
    """Where the buffer hands its messages on: one at a time, each taking a while."""

    def __init__(self) -> None:
        self.handed_on: list[int] = []

    async def publish_message(self, fut, wait: bool = False) -> None:
        await asyncio.sleep(HAND_ON_SECONDS)
        self.handed_on.append(fut.number)


def message(number: int, destination: SlowDestination) -> SimpleNamespace:
    return SimpleNamespace(number=number, message=SimpleNamespace(channel=destination))


async def flushed(buffer: ProducerBuffer, count: int, settle: float = 0.0) -> list[int]:
    """Put ``count`` messages in ``buffer``, wait ``settle`` seconds, flush: what was handed on
    when the flush returned."""
    buffer.app = faust.App("flush-test", broker="memory://")
    destination = SlowDestination()
    await buffer.start()
    try:
        for number in range(count):
            buffer.put(message(number, destination))  # type: ignore[arg-type]
        await asyncio.sleep(settle)
        await buffer.flush()
        return list(destination.handed_on)
    finally:
        if buffer.size:  # Faust's own buffer refuses to stop with messages queued
            buffer.pending = asyncio.Queue()
        await buffer.stop()


@pytest.mark.parametrize("count", [1, 3, 5])
def test_a_flush_returns_once_every_queued_message_is_handed_on(count):
    assert asyncio.run(flushed(DrainingBuffer(), count)) == list(range(count))


def test_a_flush_waits_for_the_message_being_handed_on_when_the_queue_is_empty():
    # The buffer's task has taken the only message off the queue and is handing it on.
    assert asyncio.run(flushed(DrainingBuffer(), 1, settle=HAND_ON_SECONDS / 2)) == [0]


def test_fausts_own_buffer_returns_with_messages_still_queued():
    """Why the worker's producer has a buffer of its own: the flush Faust commits after."""
    assert asyncio.run(flushed(ProducerBuffer(), 3)) != [0, 1, 2]


def test_the_worker_transport_gives_its_producer_the_draining_buffer():
    from projections.faust_kafka import ReadCommittedTransport

    app = faust.App("flush-test", broker="kafka://127.0.0.1:9", producer_threaded=False)
    producer = ReadCommittedTransport(["kafka://127.0.0.1:9"], app).create_producer()
    assert isinstance(producer.buffer, DrainingBuffer)
    assert producer.buffer.app is app


class NoBroker(SlowDestination):
    """A destination that never takes the message: a broker away."""

    async def publish_message(self, fut, wait: bool = False) -> None:
        await asyncio.sleep(3600)


def test_a_flush_that_hands_nothing_on_gives_up_rather_than_hold_commits_and_rebalances():
    async def go() -> None:
        buffer = DrainingBuffer()
        buffer.stall_seconds = 0.5
        buffer.app = faust.App("flush-test", broker="memory://")
        await buffer.start()
        try:
            buffer.put(message(0, NoBroker()))  # type: ignore[arg-type]
            await buffer.flush()
        finally:
            buffer.pending = asyncio.Queue()
            buffer.sending = 0  # the message never handed on: stopping would flush it again
            await buffer.stop()

    with pytest.raises(FlushStalled, match="no changelog write handed on"):
        asyncio.run(asyncio.wait_for(go(), timeout=10))


def test_a_slow_flush_that_keeps_handing_messages_on_does_not_give_up():
    # Each message takes 0.25 s; five take 1.25 s, longer than the 0.5 s allowed without any
    buffer = DrainingBuffer()
    buffer.stall_seconds = 2 * HAND_ON_SECONDS
    assert asyncio.run(flushed(buffer, 5)) == list(range(5))
