"""Faust's aiokafka transport, reading only committed events, and the worker's batches.

The services append in Kafka transactions. Faust's worker consumer reads uncommitted records
unless the app runs in exactly-once mode, which we do not rely on; a projection that saw an
aborted append would disagree with the replay. This transport keeps everything Faust does and
sets the consumer's isolation level.

It also makes the producer's flush drain its buffer. Faust commits the consumer's offsets after
``producer.flush()``, so that no offset covers an event whose changelog writes are not yet on
the broker. Faust's ``ProducerBuffer.flush`` returns as soon as 0.1 s pass without a message
handed on, with messages still queued (and with one being handed on when the queue is empty):
on a slow or loaded broker the offsets were committed ahead of the tables' writes, and a worker
killed then came back without the events in between (the fault suite, decision 63).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiokafka.consumer import fetcher as aiokafka_fetcher
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from mode.utils.aiter import aiter
from mode.utils.futures import notify

from projections.continuity import Markers

log = logging.getLogger(__name__)


MARKERS = Markers()
"""The transaction markers the worker's consumer passed over, per partition (decision 77)."""


class _NotingBatches:
    """One partition's fetched records, as aiokafka's fetcher reads them batch by batch, with
    each control batch (a transaction's marker) noted in ``MARKERS``."""

    def __init__(self, records: Any, source: str) -> None:
        self._records = records
        self._source = source

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is not None and batch.is_control_batch:
            MARKERS.note(self._source, batch.base_offset, batch.next_offset)
        return batch


class _NotingPartitionRecords(aiokafka_fetcher.PartitionRecords):
    """aiokafka's records of one fetched partition, whose control batches are noted: the
    worker tells a record its consumer passed over from a marker by them (decision 77)."""

    def __init__(self, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tp, _NotingBatches(records, f"{tp.topic}:{tp.partition}"), *args,
                         **kwargs)


class _ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any):
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when it builds its fetcher in start(), which comes later.
        consumer._isolation_level = "read_committed"
        # aiokafka's fetcher builds each fetched partition's records by this module-level name,
        # and has no other place to hook in; only the worker's process runs aiokafka.
        aiokafka_fetcher.PartitionRecords = _NotingPartitionRecords
        return consumer


class _ReadCommittedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """The offsets a message skipped over (transaction markers, aborted records), which
        Faust commits as if acked. Faust's caller passes the message's own offset as the gap's
        last, so a message counted as acked on arrival: once any later offset was acked, the
        commit covered it before it was applied (decision 68). The gap ends before it."""
        await super()._add_gap(tp, offset_from, offset_to - 1)

    async def perform_seek(self) -> None:
        """Faust's seek of every assigned partition back to its committed offset, with the
        flow stopped first (decision 78). Faust's recovery seeks with the flow still running.
        Once the seek took hold, and before Faust set its read offsets back, the consumer
        dropped the records it read again as handed on already, and handed on those beyond;
        then resuming the flow emptied the agents' queues of what it had handed on. Those
        records reached no agent, and the consumer read on past them. Stopped, the consumer
        hands on nothing until whoever called the seek resumes the flow (Faust's recovery
        does at once). Records queued from before the seek are then delivered again from
        the committed offsets; those an agent had taken already come again as copies."""
        self.stop_flow()
        await super().perform_seek()

    async def read_by_the_worker(self, tp: Any, start: int, stop: int) -> None:
        """The offsets ``start`` to ``stop - 1`` of ``tp`` were read and applied by the worker
        itself (decision 69): Faust commits past them once the event after them is acked.
        Without this, a committed offset that stands more than one below the first acked one
        held the partition's commits for good, and its acked offsets piled up (decision 77)."""
        await super()._add_gap(tp, start, stop - 1)


async def read_by_the_worker(app: Any, tp: Any, start: int, stop: int) -> None:
    """:meth:`_ReadCommittedConsumer.read_by_the_worker` on ``app``'s consumer."""
    consumer: _ReadCommittedConsumer = app.consumer
    await consumer.read_by_the_worker(tp, start, stop)


def current(events: list[Any], generation: int | None) -> list[Any]:
    """The events read in the group's ``generation``: the others were read before a rebalance,
    after which the consumer sought back to the committed offsets and reads them again. Applied
    or acked, a stale event could write to a partition another worker now holds, or let the
    commit cover an offset whose new copy is not yet applied (decision 68)."""
    return [e for e in events if e.message.generation_id in (None, generation)]


FLUSH_STALL_SECONDS = 60.0
"""How long the worker's flush waits while no message is handed on (a broker away): Faust
flushes before every commit and when partitions are revoked, so a flush that waits for good
holds the commits and the group's rebalances as long."""


class FlushStalled(RuntimeError):
    """A flush saw no message handed on for ``FLUSH_STALL_SECONDS``."""


class DrainingBuffer(ProducerBuffer):
    """Faust's producer buffer whose ``flush`` returns only once every message put in it has
    been handed to the Kafka client (whose own flush then waits for the broker's answer), and
    raises ``FlushStalled`` once none has been for ``stall_seconds``: the commit or the
    rebalance that flushed fails, Faust stops the worker, and its supervisor folds the log
    anew (decision 69)."""

    sending = 0
    """Messages taken off the queue and not yet handed on."""

    async def _send_pending(self, fut: Any) -> None:
        self.sending += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.sending -= 1

    stall_seconds = FLUSH_STALL_SECONDS
    """How long a flush waits without a message handed on before it gives up."""

    async def flush(self) -> None:
        waited = 0.0
        while self.size or self.sending:
            if self.state != "running":
                raise RuntimeError("cannot flush: the producer is not running")
            if waited >= self.stall_seconds:
                raise FlushStalled(
                    f"no changelog write handed on to Kafka for {waited:.1f} s with "
                    f"{self.size + self.sending} waiting: the worker stops rather than commit "
                    "past them or hold a rebalance"
                )
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
                waited = 0.0
            except TimeoutError:
                waited += 0.1


class _DrainingProducer(faust_aiokafka.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Replaced before the producer starts (which starts its buffer); the worker is not
        # threaded (``producer_threaded`` off), the only mode ``DrainingBuffer`` counts.
        buffer = DrainingBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        self.buffer = buffer


class ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = _ReadCommittedConsumer
    Producer = _DrainingProducer


FOLD_FAILED_EXIT = 70
"""The worker's exit code when a fold agent fails (``EX_SOFTWARE``): its supervisor starts it
again, after folding anew (trialops/supervise.py, trialops/projection_reset.py)."""


def stops_the_worker(
    fold: Callable[[Any], Awaitable[None]], name: str,
    exit: Callable[[int], Any] = os._exit,
) -> Callable[[Any], Awaitable[None]]:
    """The agent ``fold`` such that an exception it leaves unhandled stops the worker process.
    Faust's own answer is to start the agent again, alone: the new agent reads on from the
    events the stream hands it next, and the events the failed one had taken (its batch, its
    buffer) are applied by nobody until the process restarts and reads from its committed
    offsets; meanwhile the worker applied later events over the gap, or halted on a broken
    chain (decision 67). A cancellation (a rebalance, a stop) stays Faust's."""

    async def guarded(stream: Any) -> None:
        try:
            await fold(stream)
        except Exception as exc:
            log.critical("the fold of %s failed (%r): the worker stops, its supervisor folds "
                         "the log anew", name, exc, exc_info=True)
            for stream_ in (sys.stdout, sys.stderr):
                stream_.flush()
            exit(FOLD_FAILED_EXIT)

    return guarded


async def take_batches(
    stream: Any, max_: int, within: Callable[[], float]
) -> AsyncIterator[list[Any]]:
    """Faust's ``Stream.take_events`` with a wait that is asked again before each batch:
    ``within()`` seconds for the buffer to hold ``max_`` events, after which the events it
    holds are yielded. ``take_events`` fixes its wait once; the worker waits longer while it
    is far behind its topic (bigger batches, fewer changelog writes: decision 56) and as
    little as before once caught up (a lone command's latency).

    Everything else is ``take_events``' own logic: the stream is drained in the background
    into the buffer, at most ``max_`` events per batch, and a batch's events are acked only
    once the caller is done with the batch, so a committed offset never covers an event the
    caller has not finished with.

    And one more difference: after a wait that ended with nothing in hand, the next one lasts
    until an event comes, and what came with that event is taken at once. Faust's loop
    woke every ``within()`` seconds for nothing: an idle worker's main thread spent about 5 %
    of a core on those wakes (decision 82), and a lone event waited for the end of a tick."""
    buffer: list[Any] = []
    events: list[Any] = []
    buffer_full = asyncio.Event()
    buffer_started = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future | None = None
    channel_it = aiter(stream.channel)

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming
        try:
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            buffer.append(value)
            buffer_started.set()
            event = stream.current_event
            if event is None:
                raise RuntimeError("Take buffer found current_event is None")
            events.append(event)
            if len(buffer) >= max_:
                buffer_full.set()
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False  # the events are acked here, after their batch
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)
    idle = False
    while not stream.should_stop:
        if idle:
            buffer_started.clear()
            if not buffer:
                await stream.wait_for_stopped(buffer_started)
            # The records fetched with the first event reach the buffer meanwhile.
            await asyncio.sleep(0)
        else:
            await stream.wait_for_stopped(buffer_full, timeout=within())
        idle = not buffer
        if idle:
            continue
        buffer_consuming = stream.loop.create_future()
        try:
            yield list(events)
        finally:
            buffer.clear()
            for event in current(events, stream.app.consumer_generation_id):
                await stream.ack(event)
            events.clear()
            notify(buffer_consuming)
            buffer_full.clear()
            buffer_consumed.set()
