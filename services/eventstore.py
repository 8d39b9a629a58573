"""The single writer of one context's topic: seals new events into hash-chained envelopes and
appends them in one Kafka transaction.

Kafka has no "append if the stream is still at version N", so consistency comes from having
one writer per topic: the transactional id is stable per (namespace, context), and
``init_transactions`` by a new instance fences any older one still alive. The store keeps each
stream's sequence and last hash in memory, caught up from the topic at open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from kafka import KafkaProducer
from kafka.errors import KafkaError

from events.envelope import GENESIS_HASH, Actor, Envelope, from_bytes, seal, to_bytes
from events.registry import Recorded, read
from services.decider import NewEvent
from trialops.kafka_io import Position, read_to_end

log = logging.getLogger(__name__)


class StoreUnavailable(RuntimeError):
    """The append did not happen (or may not have): the caller must not evolve its state."""


class CorruptStream(RuntimeError):
    """The topic holds an event that breaks its stream's sequence or hash chain."""


@dataclass(frozen=True, slots=True)
class Appended:
    envelope: Envelope
    position: Position


@dataclass(slots=True)
class _StreamHead:
    seq: int = 0
    hash: str = GENESIS_HASH


class KafkaEventStore:
    def __init__(self, bootstrap_servers: str, topic: str, trial_id: str, writer_id: str):
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.trial_id = trial_id
        self.writer_id = writer_id
        self._heads: dict[str, _StreamHead] = {}
        self._producer: KafkaProducer | None = None

    # ------------------------------------------------------------------ start-up

    def open(self) -> list[Recorded]:
        """Fence older writers, then read the topic to its end. Returns every event, in order,
        for the caller to fold into its state."""
        self._producer = KafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.writer_id,
            transactional_id=self.writer_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            # A transaction that cannot complete is abandoned well before the HTTP client gives up.
            transaction_timeout_ms=30_000,
            max_block_ms=15_000,
        )
        # Fences a previous instance and aborts its open transaction before we read, so what we
        # read is everything that can ever be committed before our first write.
        self._producer.init_transactions()
        return self.catch_up()

    def catch_up(self) -> list[Recorded]:
        self._heads = {}
        history = []
        for position, _key, value in read_to_end(
            self.bootstrap_servers, [self.topic], client_id=f"{self.writer_id}-catch-up"
        ):
            envelope = from_bytes(value)
            self._check_and_advance(envelope, position)
            history.append(read(envelope))
        return history

    def _check_and_advance(self, envelope: Envelope, position: Position) -> None:
        head = self._heads.setdefault(envelope.stream_id, _StreamHead())
        if envelope.stream_seq != head.seq + 1 or envelope.prev_hash != head.hash:
            raise CorruptStream(
                f"{position.topic}@{position.offset}: stream {envelope.stream_id} expected seq "
                f"{head.seq + 1} after hash {head.hash[:12]}, found seq {envelope.stream_seq}"
            )
        if not envelope.hash_is_valid():
            raise CorruptStream(f"{position.topic}@{position.offset}: hash does not match content")
        head.seq, head.hash = envelope.stream_seq, envelope.hash

    # ------------------------------------------------------------------ append

    def seal_all(
        self,
        new_events: Iterable[NewEvent],
        *,
        actor: Actor,
        recorded_at: datetime,
        correlation_id: UUID,
        causation_id: UUID | None = None,
        reason: str | None = None,
        follow_up: Callable[[Envelope], list[NewEvent]] | None = None,
    ) -> list[Envelope]:
        """Seal envelopes for ``new_events`` against the current stream heads (no I/O).
        ``follow_up`` may add events right after each sealed one (a signature of it)."""
        heads = {k: (v.seq, v.hash) for k, v in self._heads.items()}
        sealed: list[Envelope] = []
        queue = list(new_events)
        while queue:
            new = queue.pop(0)
            seq, prev = heads.get(new.stream_id, (0, GENESIS_HASH))
            envelope = seal(
                event_id=uuid4(),
                event_type=new.payload.event_type,
                schema_version=new.payload.schema_version,
                trial_id=self.trial_id,
                stream_id=new.stream_id,
                stream_seq=seq + 1,
                occurred_at=new.occurred_at,
                recorded_at=recorded_at,
                actor=actor,
                reason=reason,
                correlation_id=correlation_id,
                causation_id=causation_id,
                prev_hash=prev,
                payload=new.payload.model_dump(mode="json"),
            )
            heads[new.stream_id] = (envelope.stream_seq, envelope.hash)
            sealed.append(envelope)
            if follow_up is not None and new.payload.context != "shared":
                queue[:0] = follow_up(envelope)
        return sealed

    def append(self, envelopes: list[Envelope]) -> list[Appended]:
        """Append all or nothing, in one transaction. Blocking: call it from a worker thread."""
        producer = self._producer
        if producer is None:
            raise StoreUnavailable("the event store is not open")
        try:
            producer.begin_transaction()
            futures = [
                producer.send(self.topic, key=e.stream_id.encode(), value=to_bytes(e))
                for e in envelopes
            ]
            producer.commit_transaction()
        except KafkaError as exc:
            log.error("append to %s failed: %r", self.topic, exc)
            self._abandon()
            raise StoreUnavailable(f"append to {self.topic} failed: {exc!r}") from exc
        appended = []
        for envelope, future in zip(envelopes, futures, strict=True):
            meta = future.get(timeout=0)
            appended.append(Appended(envelope, Position(meta.topic, meta.partition, meta.offset)))
            head = self._heads.setdefault(envelope.stream_id, _StreamHead())
            head.seq, head.hash = envelope.stream_seq, envelope.hash
        return appended

    def _abandon(self) -> None:
        # The outcome of a failed commit is unknown; the next writer's init_transactions and
        # catch-up settle it. This instance stops writing.
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=5)
            except Exception:  # closing a broken producer must not hide the original error
                log.exception("closing the producer failed")

    @property
    def is_open(self) -> bool:
        return self._producer is not None

    def close(self) -> None:
        self._abandon()
