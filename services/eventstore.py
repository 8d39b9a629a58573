"""The single writer of one partition of a context's topic (one trial's, decision 60): seals
new events into hash-chained envelopes and appends them in one Kafka transaction.

Kafka has no "append if the stream is still at version N", so consistency comes from having
one writer per partition: the transactional id is stable per (namespace, context, partition),
and ``init_transactions`` by a new instance fences any older one still alive. The store keeps each
stream's sequence and last hash in memory, caught up from the topic at open through the one
reading rule (events/reading.py): at an unreadable record the store halts and writes nothing
until that record is quarantined.

A writer that learns another one wrote its topic (fenced by a newer instance, or a foreign
append) is retired: it never writes again and never re-opens by itself (decision 18).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID, uuid4

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    InvalidProducerEpochError,
    KafkaError,
    ProducerFencedError,
    TransactionalIdAuthorizationFailedError,
)

from events.cloudevents import record_headers
from events.envelope import GENESIS_HASH, Actor, Envelope, Idempotency, seal, to_bytes
from events.keys import WriterKeyRotated
from events.keys import stream_of as key_stream
from events.reading import Halt, Head, LogReader, Quarantine, Where
from events.registry import Recorded
from events.signing import Keyring, Signer
from events.topics import context_of
from infra.kafka_io import BOOTSTRAP_TIMEOUT_MS, BrokerTimeout, Position, read_log, read_range
from infra.kafka_security import kafka_python_settings
from infra.keys import load_next_signer, promote_next_key
from infra.processes import cyclic_gc_paused
from infra.snapshot_topic import SnapshotTopic, read_record
from services.decider import NewEvent
from services.snapshots import (
    Anchor,
    Snapshot,
    SnapshotRefused,
    anchor_problem,
    find_anchor,
    open_snapshot,
    seal_snapshot,
)
from services.stream_heads import ResumedHeads, StreamHead, StreamHeads, bare_stream

log = logging.getLogger(__name__)


class StoreUnavailable(RuntimeError):
    """The append did not happen (or may not have): the caller must not evolve its state."""

    rule = "event-store-unavailable"

    def details(self) -> dict:
        return {}


class ContextHalted(StoreUnavailable):
    """A topic this context reads holds an unreadable record: nothing is decided until it is
    quarantined (events/reading.py)."""

    rule = "context-halted"

    def __init__(self, context: str, halt: Halt):
        super().__init__(
            f"{context} accepts no command: {halt.describe()}. An authorised person may record "
            f"a quarantine of it (POST /quarantines, README: 'An unreadable record')"
        )
        self.halt = halt

    def details(self) -> dict:
        return {"unreadable_record": self.halt.as_dict()}


class WriterRetired(StoreUnavailable):
    """Another writer wrote this context's topic: this instance never writes it again."""

    rule = "writer-retired"


_FENCED = (ProducerFencedError, InvalidProducerEpochError, TransactionalIdAuthorizationFailedError)


@dataclass(frozen=True, slots=True)
class Appended:
    envelope: Envelope
    position: Position


_NO_ANCHOR = Anchor(-1, "", 0, GENESIS_HASH)
"""A draft snapshot's anchor, until ``write_snapshot`` finds it."""


MARKER_SETTLE_SECONDS = 5.0
"""How long a transaction's commit marker may take to appear before the log counts as cut."""
KEY_ROTATION = Actor(user_id="key-rotation", role="writer")
"""Who records a writer's key rotation: the writer itself, when it opens its topic."""
APPEND_TIMEOUT_MS = 10_000
"""How long an append may block in the client before the command is answered 503."""


ANCHOR_SEARCH = 64
"""How many records below a snapshot's end are read back to find the last event it covers."""


class Folding(Protocol):
    """What a writer's catch-up hands the events it reads to, one by one, so that the history
    read is folded as it comes and not held (decision 86: a service started on 1M events held
    every decoded event, 4.7 GB, before folding them)."""

    def begin(self, snapshot: Snapshot | None) -> bool:
        """A fold starts: on ``snapshot`` (the events that follow it come next), or from the
        topic's start when None. False when this fold cannot start from that snapshot (then
        ``begin(None)`` follows). Called again, from the start, when the catch-up has to read
        the topic anew: what was handed before is then forgotten."""
        ...

    def add(self, position: Position, recorded: Recorded) -> None:
        """The next event read."""
        ...


class KafkaEventStore:
    snapshots: SnapshotTopic | None = None
    """Where this writer's snapshots are kept (decision 42); set by the first ``open``."""
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        trial_id: str,
        writer_id: str,
        *,
        keyring: Keyring,
        signer: Signer,
        keys_folder: str | None = None,
        partition: int = 0,
    ):
        self.bootstrap_servers = bootstrap_servers
        self.base_keyring = keyring
        """The deployment's keyring: every catch-up reads the topic from its start with it."""
        self.keyring = keyring
        """The keyring as of the end of the topic: with the keys rotations retired."""
        self.signer = signer
        self.keys_folder = keys_folder
        """Where a next key may wait to be rotated to (``trialops keys rotate``)."""
        self.principal = context_of(topic) or topic
        """Who writes, on a secured broker: the context's writer (infra/kafka_security.py)."""
        self.topic = topic
        self.partition = partition
        """The partition of ``topic`` this store writes: its trial's (decision 60)."""
        self.trial_id = trial_id
        self.writer_id = writer_id
        self._heads = StreamHeads()
        self._producer: KafkaProducer | None = None
        self._watermarks: KafkaConsumer | None = None
        self._expected_end = 0
        self.halt: Halt | None = None
        self.retired: str | None = None

    # ------------------------------------------------------------------ start-up

    def open(self, quarantine: Quarantine, into: Folding) -> int:
        """Fence older writers, then read the topic to its end, or to an unreadable record that
        ``quarantine`` does not cover (``halt`` then says which), handing each event read to
        ``into`` as it is read. Returns how many were read."""
        if self.retired is not None:
            raise WriterRetired(self.retired)
        self._abandon()
        try:
            self._producer = KafkaProducer(
                **kafka_python_settings(self.principal),
                bootstrap_servers=self.bootstrap_servers,
                client_id=self.writer_id,
                transactional_id=self.writer_id,
                enable_idempotence=True,
                acks="all",
                linger_ms=0,
                # A transaction that cannot complete is abandoned well before the HTTP client
                # gives up.
                transaction_timeout_ms=30_000,
                # A transaction begun right after the previous commit is often answered
                # "concurrent transactions" while the broker writes the markers; the client's
                # default 100 ms back-off before retrying capped a writer at about 10
                # transactions/s (issue 12's profile), 10 ms lets it retry in time.
                retry_backoff_ms=10,
                max_block_ms=APPEND_TIMEOUT_MS,
                request_timeout_ms=APPEND_TIMEOUT_MS,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            )
            # Fences a previous instance and aborts its open transaction before we read, so
            # what we read is everything that can ever be committed before our first write.
            self._producer.init_transactions()
            count = self.catch_up(quarantine, into)
            if self.halt is None:
                self._settle_signing_key()
            return count
        except KafkaError as exc:
            self._abandon()
            raise StoreUnavailable(f"opening {self.topic} failed: {exc!r}") from exc

    def catch_up(self, quarantine: Quarantine, into: Folding, resume: bool = True) -> int:
        """Read the topic to its end through the reading rule, from the latest snapshot that
        checks out and that ``into`` takes, or from its start when there is none or ``resume``
        is False. Each event goes to ``into`` as it is read, none is kept
        here (decision 86). Returns how many were read."""
        snapshot = self._resume_point() if resume else None
        if snapshot is not None and not into.begin(snapshot):
            snapshot = None
        if snapshot is None:
            into.begin(None)
        keyring, start = self.base_keyring, None
        heads: dict[tuple[str, str], Head] = {}
        if snapshot is not None:
            keyring = keyring.model_copy(update={"retired": keyring.retired | snapshot.retired})
            heads = ResumedHeads(self.topic, snapshot.heads, self.partition)
            start = {self.topic: snapshot.covers}
        reader = LogReader(keyring, quarantine, heads=heads)
        trials: set[str] = set()
        count = 0
        for position, recorded in read_log(
            self.bootstrap_servers, [self.topic], reader,
            client_id=f"{self.writer_id}-catch-up", principal=self.principal, start=start,
            partition=self.partition,
        ):
            trials.add(recorded.envelope.trial_id)
            into.add(position, recorded)
            count += 1
        strangers = sorted(trials - {self.trial_id})
        if strangers:
            # Every event of a partition is its trial's: another trial's here means the topic's
            # partition count changed under the trials (decision 60), or a foreign writer.
            raise StoreUnavailable(
                f"partition {self.partition} of {self.topic} holds events of trial(s) "
                f"{', '.join(strangers)}, not only of {self.trial_id}: was the topic's "
                "partition count changed? Nothing is written until that is settled"
            )
        if snapshot is not None and snapshot.key_id in reader.keyring.retired:
            log.warning("%s: the key that sealed its snapshot (%s) was retired after it: "
                        "folding the topic from its start", self.topic, snapshot.key_id)
            return self.catch_up(quarantine, into, resume=False)
        with cyclic_gc_paused():
            self._heads = StreamHeads(None if snapshot is None else snapshot.heads)
            # the streams the catch-up moved on (all of them when it read from offset 0)
            self._heads.update(
                (bare_stream(key, self.partition), StreamHead(head.seq, head.hash))
                for key, head in reader.heads.items()
            )
        self.keyring = reader.keyring
        self.halt = next(iter(reader.halts.values()), None)
        if self.halt is not None:
            log.error("%s halted: %s", self.topic, self.halt.describe())
        self._expected_end = self._end_offset()
        return count

    # ------------------------------------------------------------------ snapshots

    def _snapshot_topic(self) -> SnapshotTopic:
        if self.snapshots is None:
            self.snapshots = SnapshotTopic(self.bootstrap_servers, self.topic,
                                           principal=self.principal, client_id=self.writer_id,
                                           partition=self.partition)
        return self.snapshots

    def _resume_point(self) -> Snapshot | None:
        """The latest snapshot of this topic when it checks out (services/snapshots.py: sealed
        by this writer's key, by this code, anchored at its last event); otherwise None, with
        a warning, and the topic is read from its start."""
        try:
            sealed = self._snapshot_topic().latest()
            if sealed is None:
                return None
            snapshot = open_snapshot(sealed, self.base_keyring, self.topic)
            if snapshot.trial_id != self.trial_id:
                raise SnapshotRefused(f"a snapshot of trial {snapshot.trial_id}")
            end = self._end_offset()
            if end < snapshot.covers:
                raise SnapshotRefused(f"it covers offsets up to {snapshot.covers}, the topic "
                                      f"ends at {end}")
            value = read_record(self.bootstrap_servers, self.topic, snapshot.anchor.offset,
                                client_id=f"{self.writer_id}-anchor", principal=self.principal,
                                partition=self.partition)
            problem = anchor_problem(snapshot, value, self.base_keyring)
            if problem is not None:
                raise SnapshotRefused(problem)
        except (SnapshotRefused, LookupError) as exc:
            log.warning("%s: its snapshot is not used (%s): reading the topic from its start",
                        self.topic, exc)
            return None
        except (BrokerTimeout, KafkaError) as exc:
            log.warning("%s: its snapshot could not be read (%s): reading the topic from its "
                        "start", self.topic, exc)
            return None
        log.info("%s: resuming from the snapshot at offset %d (%d events)", self.topic,
                 snapshot.covers, snapshot.events)
        return snapshot

    def draft_snapshot(self) -> Snapshot | None:
        """What this store knows now, for a snapshot (the command handler adds its states):
        the end its appends left, each stream's head, the retired keys. Cheap enough to take
        between two batches (a copy of the heads moved since the open, over the snapshot's);
        None when the store is not in a state to be snapshotted (closed, halted, retired,
        nothing appended)."""
        if self.retired is not None or self.halt is not None or not self.is_open:
            return None
        if self._expected_end == 0:
            return None
        return Snapshot(
            topic=self.topic, trial_id=self.trial_id, covers=self._expected_end,
            anchor=_NO_ANCHOR,
            heads=self._heads.pairs(),
            retired=self.keyring.retired, state=None, upstream_state=None, answered={},
            upstream=None,
        )

    def write_snapshot(self, draft: Snapshot) -> Snapshot | None:
        """Anchor ``draft`` at the last event it covers (read back from the topic), seal it
        with this writer's key and write it to the snapshot topic. Blocking: call it from a
        worker thread. None when no anchor is found (it is then not written)."""
        below = [
            (where.offset, value) for where, value in read_range(
                self.bootstrap_servers,
                Where(self.topic, self.partition, max(0, draft.covers - ANCHOR_SEARCH)),
                draft.covers, client_id=f"{self.writer_id}-anchor", principal=self.principal,
            )
        ]
        anchor = find_anchor(below, draft.heads, self.base_keyring, self.topic)
        if anchor is None:
            log.warning("%s: no event at the head of its stream in the %d records below offset "
                        "%d: no snapshot written", self.topic, len(below), draft.covers)
            return None
        snapshot = replace(draft, anchor=anchor, key_id=self.signer.key_id,
                           events=sum(seq for seq, _h in draft.heads.values()))
        self._snapshot_topic().write(seal_snapshot(snapshot, self.signer))
        return snapshot

    # ------------------------------------------------------------------ key rotation

    def _settle_signing_key(self) -> None:
        """Sign with the key the log says is this writer's now, rotating to a next key that
        waits in ``keys_folder`` (events/keys.py): the rotation is appended signed with the
        key it retires, then the next key signs everything after it. A rotation already on the
        log whose key files were not swapped yet (a crash in between) is finished here."""
        active = {k.key_id for k in self.keyring.active(self.principal)}
        waiting = load_next_signer(self.keys_folder, self.principal, self.base_keyring)
        if self.signer.key_id not in active:
            if waiting is None or waiting.key_id not in active:
                self._retire(f"its key {self.signer.key_id} was retired on the log and no "
                             "next key waits for it")
            assert waiting is not None and self.keys_folder is not None
            promote_next_key(self.keys_folder, self.principal)
            self.signer = waiting
            return
        if waiting is None:
            return
        if waiting.key_id not in active:
            log.error("%s: the next key %s was retired before: not rotating to it",
                      self.topic, waiting.key_id)
            return
        if self._partition_count() > 1:
            # A rotation retires the key for every reader of the topic from the record on, and
            # readers take the partitions one after another: the other trials' records that the
            # old key signed, in other partitions, would be refused. Not done (decision 60).
            log.error("%s: the next key %s waits, but a topic of several partitions (several "
                      "trials) does not rotate its writer's key yet: still signing with %s",
                      self.topic, waiting.key_id, self.signer.key_id)
            return
        now = datetime.now(UTC)
        rotation = WriterKeyRotated(
            writer=self.principal, retired_key_id=self.signer.key_id,
            next_key_id=waiting.key_id,
        )
        envelopes = self.seal_all(
            [NewEvent(key_stream(self.principal), rotation, now)],
            actor=KEY_ROTATION, recorded_at=now, correlation_id=uuid4(),
            reason=f"signing key {self.signer.key_id} retired for {waiting.key_id}",
        )
        self.append(envelopes)
        self.keyring = self.keyring.retiring(self.signer.key_id)
        assert self.keys_folder is not None
        promote_next_key(self.keys_folder, self.principal)
        log.warning("%s: signing key %s retired; %s signs from offset %d on", self.topic,
                    self.signer.key_id, waiting.key_id, self._expected_end)
        self.signer = waiting

    # ------------------------------------------------------------------ the sole writer

    def _end_offset(self) -> int:
        """The topic's high watermark (records of open transactions included)."""
        if self._watermarks is None:
            self._watermarks = KafkaConsumer(
                **kafka_python_settings(self.principal),
                bootstrap_servers=self.bootstrap_servers,
                client_id=f"{self.writer_id}-watermark",
                enable_auto_commit=False,
                isolation_level="read_uncommitted",
                request_timeout_ms=APPEND_TIMEOUT_MS,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            )
        tp = TopicPartition(self.topic, self.partition)
        return self._watermarks.end_offsets([tp])[tp]

    def _partition_count(self) -> int:
        self._end_offset()  # makes the watermark consumer
        assert self._watermarks is not None
        return len(self._watermarks.partitions_for_topic(self.topic) or ())

    def check_sole_writer(self) -> None:
        """Before a decision: the topic must end where this writer's last append left it.

        Records past that point were written by someone else. Unreadable ones halt the context
        like any unreadable record (``ContextHalted``); a valid event means another writer (a
        newer instance that fenced this one, or a foreign producer) moved the streams on, so
        this instance's state is stale and it retires (``WriterRetired``) rather than decide
        on it or fence the other back."""
        if self.retired is not None:
            raise WriterRetired(self.retired)
        try:
            end = self._end_offset()
            # The commit returns before the broker has written the transaction's marker: the
            # end may be one short of where the last append leaves it, for a moment.
            settle = time.monotonic() + MARKER_SETTLE_SECONDS
            while end < self._expected_end and time.monotonic() < settle:
                time.sleep(0.01)
                end = self._end_offset()
        except KafkaError as exc:
            raise StoreUnavailable(f"end offset of {self.topic}: {exc!r}") from exc
        if end == self._expected_end:
            return
        if end < self._expected_end:
            self._retire(
                f"{self.topic} ends at offset {end}, before {self._expected_end} where this "
                "writer's last append left it: the log was truncated or re-created"
            )
        reader = LogReader(self.keyring,
                           heads=ResumedHeads(self.topic, self._heads.pairs(), self.partition))
        try:
            foreign = [
                where
                for where, value in read_range(
                    self.bootstrap_servers, Where(self.topic, self.partition, self._expected_end),
                    end,
                    client_id=f"{self.writer_id}-check", principal=self.principal,
                )
                if reader.admit(where, value) is not None
            ]
        except BrokerTimeout as exc:
            raise StoreUnavailable(str(exc)) from exc
        if foreign:
            self._retire(f"another writer appended {len(foreign)} event(s), from {foreign[0]}")
        self.halt = next(iter(reader.halts.values()), None)
        if self.halt is not None:
            raise ContextHalted(self.topic, self.halt)
        self._expected_end = end  # only copies or aborted records: nothing changed

    def _retire(self, why: str) -> None:
        self.retired = (
            f"this instance no longer writes {self.topic} ({why}); it writes again when the "
            "writers' group gives it the trial anew, or restart it (README: 'Several instances "
            "of the services')"
        )
        log.error("retired: %s", self.retired)
        self._abandon()
        raise WriterRetired(self.retired)

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
        idempotency: Idempotency | None = None,
        pending: dict[str, tuple[int, str]] | None = None,
    ) -> list[Envelope]:
        """Seal envelopes for ``new_events`` against the current stream heads (no I/O); the
        append signs them, once for its whole transaction (decision 70).
        ``follow_up`` may add events right after each sealed one (a signature of it).
        ``pending`` holds the heads that envelopes sealed earlier in the same batch, not yet
        appended, left: it is read and, once every event is sealed, updated.

        Only the heads of the streams these events touch are copied: a command touches a few
        streams, while the store may hold tens of thousands of heads."""
        heads: dict[str, tuple[int, str]] = {}
        earlier = pending if pending is not None else {}
        sealed: list[Envelope] = []
        queue = list(new_events)
        while queue:
            new = queue.pop(0)
            if new.stream_id not in heads:
                head = self._heads.get(new.stream_id)
                heads[new.stream_id] = earlier.get(new.stream_id) or (
                    (0, GENESIS_HASH) if head is None else (head.seq, head.hash)
                )
            seq, prev = heads[new.stream_id]
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
                idempotency=idempotency,
                payload=new.payload.model_dump(mode="json"),
            )
            heads[new.stream_id] = (envelope.stream_seq, envelope.hash)
            sealed.append(envelope)
            if follow_up is not None and new.payload.context != "shared":
                queue[:0] = follow_up(envelope)
        if pending is not None:
            pending.update(heads)
        return sealed

    def append(
        self, envelopes: list[Envelope], traceparents: Mapping[UUID, str] | None = None
    ) -> list[Appended]:
        """Append all or nothing, in one transaction. Blocking: call it from a worker thread.
        ``traceparents`` holds, by event id, the ``traceparent`` of the caller whose command
        appended the event: its record's ``traceparent`` header continues that trace."""
        producer = self._producer
        if self.retired is not None:
            raise WriterRetired(self.retired)
        if producer is None or self.halt is not None:
            raise StoreUnavailable("the event store is not open")
        # One signature for the transaction's records, each carrying its proof (decision 70).
        envelopes = self.signer.sign_batch(envelopes)
        try:
            producer.begin_transaction()
            futures = [
                producer.send(
                    self.topic, partition=self.partition, key=e.stream_id.encode(),
                    value=to_bytes(e),
                    headers=record_headers(
                        e, self.topic, traceparents.get(e.event_id) if traceparents else None
                    ),
                )
                for e in envelopes
            ]
            producer.flush(timeout=APPEND_TIMEOUT_MS / 1000)
            if not all(f.is_done for f in futures):
                raise StoreUnavailable(
                    f"append to {self.topic}: not acknowledged within {APPEND_TIMEOUT_MS} ms"
                )
            producer.commit_transaction()
        except _FENCED as exc:
            self._retire(f"fenced by a newer writer: {type(exc).__name__}")
        except (KafkaError, StoreUnavailable) as exc:
            log.error("append to %s failed: %r", self.topic, exc)
            self._abandon()
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"append to {self.topic} failed: {exc!r}") from exc
        appended = []
        for envelope, future in zip(envelopes, futures, strict=True):
            meta = future.get(timeout=0)
            appended.append(Appended(envelope, Position(meta.topic, meta.partition, meta.offset)))
            head = self._heads.setdefault(envelope.stream_id, StreamHead())
            head.seq, head.hash = envelope.stream_seq, envelope.hash
        # One commit marker follows the transaction's records.
        self._expected_end = appended[-1].position.offset + 2
        return appended

    def _abandon(self) -> None:
        # The outcome of a failed commit is unknown; the next writer's init_transactions and
        # catch-up settle it. This instance stops writing until it is opened again.
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
        if self._watermarks is not None:
            self._watermarks.close()
            self._watermarks = None
