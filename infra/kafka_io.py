"""Kafka plumbing shared by services, replay and tools: reading a topic to its end
through the one reading rule (events/reading.py), the quarantine, and following a topic."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from events.quarantine import RecordQuarantined
from events.reading import Head, LogReader, Quarantine, Where
from events.registry import Recorded
from events.signing import Keyring
from events.topics import QUARANTINE, event_topic
from infra.kafka_security import kafka_python_settings

AUDITOR = "auditor"
"""The principal of the audit tools (replay, verify, audit, export, checkpoints): reads only."""

Position = Where
"""A record's topic, partition and offset."""


BOOTSTRAP_TIMEOUT_MS = 10_000
"""How long a new client waits for the broker before giving up (kafka-python's default: 30 s)."""


class BrokerTimeout(RuntimeError):
    """The broker did not answer within the deadline: nothing may be decided on what was read."""


def read_to_end(
    bootstrap_servers: str,
    topics: list[str],
    *,
    client_id: str = "trialops-reader",
    principal: str = AUDITOR,
    start: dict[str, int] | None = None,
    partition: int | None = None,
) -> Iterator[tuple[Position, bytes | None, bytes]]:
    """Every committed record of ``topics`` from the beginning to the end offsets taken at the
    start, partition by partition in offset order: ``(position, key, value)``. ``principal``
    is who reads, on a secured broker (infra/kafka_security.py). ``partition``: only that
    partition of each topic (one trial's, decision 60). ``start``: the offset to begin at in
    a topic's partition read instead of its beginning (a writer's snapshot covers what is
    before it)."""
    consumer = KafkaConsumer(
        **kafka_python_settings(principal),
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
    )
    try:
        partitions = []
        for topic in topics:
            ids = consumer.partitions_for_topic(topic)
            if ids is None:
                raise LookupError(f"topic {topic} does not exist")
            partitions += [TopicPartition(topic, p) for p in sorted(ids)
                           if partition is None or p == partition]
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            first = (start or {}).get(tp.topic)
            if ends[tp] == 0 or (first is not None and first >= ends[tp]):
                continue
            consumer.assign([tp])
            if first is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, first)
            done = False
            while not done:
                batch = consumer.poll(timeout_ms=1000, max_records=2000)
                if not batch and consumer.position(tp) >= ends[tp]:
                    break
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp]:
                        done = True
                        break
                    yield Position(tp.topic, tp.partition, record.offset), record.key, record.value
                if consumer.position(tp) >= ends[tp]:
                    done = True
    finally:
        consumer.close()


def read_log(
    bootstrap_servers: str,
    topics: list[str],
    reader: LogReader,
    *,
    client_id: str = "trialops-reader",
    on_record=None,
    principal: str = AUDITOR,
    start: dict[str, int] | None = None,
    partition: int | None = None,
) -> Iterator[tuple[Where, Recorded]]:
    """The events of ``topics`` that ``reader``'s rule applies, in offset order per partition;
    a partition's halt (an unreadable record) is left in ``reader.halts``. ``on_record`` is
    called with each record's position, applied or not (progress, counts)."""
    for where, _key, value in read_to_end(
        bootstrap_servers, topics, client_id=client_id, principal=principal, start=start,
        partition=partition,
    ):
        if on_record is not None:
            on_record(where)
        recorded = reader.admit(where, value)
        if recorded is not None:
            yield where, recorded


def read_range(
    bootstrap_servers: str,
    where: Where,
    end: int,
    *,
    client_id: str,
    principal: str,
    timeout_s: float = 10.0,
) -> Iterator[tuple[Where, bytes | None]]:
    """The committed records of one partition from ``where.offset`` up to ``end``; raises
    ``BrokerTimeout`` when they cannot be read within ``timeout_s``."""
    consumer = KafkaConsumer(
        **kafka_python_settings(principal),
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
    )
    deadline = time.monotonic() + timeout_s
    try:
        tp = TopicPartition(where.topic, where.partition)
        consumer.assign([tp])
        consumer.seek(tp, where.offset)
        while consumer.position(tp) < end:
            if time.monotonic() >= deadline:
                raise BrokerTimeout(f"{where.topic}:{where.partition} not read up to {end} in time")
            for record in consumer.poll(timeout_ms=200, max_records=500).get(tp, []):
                if record.offset < end:
                    yield Where(tp.topic, tp.partition, record.offset), record.value
    except KafkaError as exc:
        raise BrokerTimeout(f"reading {where.topic}:{where.partition}: {exc!r}") from exc
    finally:
        consumer.close()


def load_quarantine(
    bootstrap_servers: str, namespace: str, keyring: Keyring, principal: str = AUDITOR
) -> Quarantine:
    """Every record set aside on the quarantine topic (none when it does not exist yet)."""
    reader = LogReader(keyring)
    try:
        decided = [
            recorded.payload
            for _where, recorded in read_log(
                bootstrap_servers,
                [event_topic(QUARANTINE, namespace)],
                reader,
                client_id="trialops-quarantine-reader",
                principal=principal,
            )
        ]
    except LookupError:
        return Quarantine()
    return Quarantine.of(
        (p.where, p.record_sha256) for p in decided if isinstance(p, RecordQuarantined)
    )


class Tail:
    """Follows topics from their start through the reading rule: each ``read_new`` returns the
    events committed since the last call, up to the end offsets at the moment of the call.

    At an unreadable record the partition halts: the consumer is put back on that record, so the
    next call reads it again (skipping it only once it is quarantined, see ``resume``), and no
    later record of that partition is returned before then."""

    def __init__(self, bootstrap_servers: str, topics: list[str], *, client_id: str,
                 reader: LogReader, principal: str, partition: int | None = None):
        self.reader = reader
        self._consumer = KafkaConsumer(
            **kafka_python_settings(principal),
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            request_timeout_ms=10_000,
        )
        partitions = []
        for topic in topics:
            ids = self._consumer.partitions_for_topic(topic)
            if ids is None:
                raise LookupError(f"topic {topic} does not exist")
            partitions += [TopicPartition(topic, p) for p in sorted(ids)
                           if partition is None or p == partition]
        self._partitions = partitions
        self._carried: list[tuple[Where, Recorded]] = []
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        # Sees records of transactions still in flight: how far the committed end must reach.
        self._watermarks = KafkaConsumer(
            **kafka_python_settings(principal),
            bootstrap_servers=bootstrap_servers,
            client_id=f"{client_id}-watermarks",
            enable_auto_commit=False,
            isolation_level="read_uncommitted",
            request_timeout_ms=10_000,
        )

    @property
    def halts(self):
        return list(self.reader.halts.values())

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(tp.topic for tp in self._partitions)

    def positions(self) -> tuple[tuple[str, int, int], ...]:
        """(topic, partition, next offset to read) of every followed partition."""
        return tuple((tp.topic, tp.partition, self._consumer.position(tp))
                     for tp in self._partitions)

    def restore(self, positions: Iterable[tuple[str, int, int]],
                heads: dict[tuple[str, str], Head], keyring: Keyring) -> None:
        """Read on from ``positions`` with the reading rule's ``heads`` and ``keyring`` there
        (a writer's snapshot, services/snapshots.py), as if everything before had just been
        read: the next ``read_new`` starts at those offsets."""
        self.reader.heads = dict(heads)
        self.reader.keyring = keyring
        self.reader.halts.clear()
        self._carried = []
        for topic, partition, offset in positions:
            self._consumer.seek(TopicPartition(topic, partition), offset)

    def resume(self, quarantine: Quarantine) -> None:
        """Read on with a newer quarantine: halted partitions are read again from the record
        they halted at (the consumer already stands there)."""
        self.reader.resume(quarantine)

    def _settled_ends(self, deadline: float) -> dict[TopicPartition, int]:
        """End offsets once every transaction already writing when we asked has settled.

        A writer's commit returns before the broker has placed the commit markers, so for a
        moment its records are neither readable nor aborted. Waiting until the committed end
        reaches the high watermark seen at the start gives a command every fact whose append
        had completed before the command arrived; past the deadline it is ``BrokerTimeout``,
        never a stale answer."""
        try:
            wanted = self._watermarks.end_offsets(self._partitions)
            while True:
                ends = self._consumer.end_offsets(self._partitions)
                if all(ends[tp] >= wanted[tp] for tp in self._partitions):
                    return ends
                if time.monotonic() >= deadline:
                    late = [f"{tp.topic}:{tp.partition}" for tp in self._partitions
                            if ends[tp] < wanted[tp]]
                    raise BrokerTimeout(
                        f"transactions on {', '.join(late)} did not settle before the deadline"
                    )
                time.sleep(0.02)
        except KafkaError as exc:
            raise BrokerTimeout(f"end offsets of followed topics: {exc!r}") from exc

    @property
    def unreturned(self) -> int:
        """Events read and admitted by the reading rule but not yet returned: a ``read_new``
        that timed out keeps them for the next one. While any are kept, the consumer's
        positions and the rule's heads are ahead of what the caller has applied."""
        return len(self._carried)

    def read_new(self, deadline: float) -> list[tuple[Where, Recorded]]:
        """New events up to the committed end, by ``deadline`` (``time.monotonic``) or
        ``BrokerTimeout``. A call that times out loses nothing: what it had read (the consumer
        has moved past it and the reading rule has admitted it) is returned first by the next
        call."""
        events, self._carried = self._carried, []
        try:
            return self._read_new(deadline, events)
        except BrokerTimeout:
            self._carried = events
            raise

    def _read_new(
        self, deadline: float, events: list[tuple[Where, Recorded]]
    ) -> list[tuple[Where, Recorded]]:
        consumer = self._consumer
        ends = self._settled_ends(deadline)

        def open_partitions() -> list[TopicPartition]:
            return [
                tp for tp in self._partitions
                if self.reader.halt_of(tp.topic, tp.partition) is None
            ]

        behind = [tp for tp in open_partitions() if consumer.position(tp) < ends[tp]]
        while behind:
            if time.monotonic() >= deadline:
                raise BrokerTimeout(
                    "followed topics were not read to their end before the deadline: "
                    + ", ".join(f"{tp.topic}:{tp.partition}" for tp in behind)
                )
            try:
                batch = consumer.poll(timeout_ms=200, max_records=2000)
            except KafkaError as exc:
                raise BrokerTimeout(f"reading followed topics: {exc!r}") from exc
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        # Committed after the ends were taken: the consumer has moved past it
                        # with this poll; stand on it, or the next read would never see it.
                        consumer.seek(tp, record.offset)
                        break
                    where = Where(tp.topic, tp.partition, record.offset)
                    recorded = self.reader.admit(where, record.value)
                    halt = self.reader.halt_of(tp.topic, tp.partition)
                    if halt is not None:
                        # Stand on the unreadable record: the next read starts there.
                        consumer.seek(tp, halt.where.offset)
                        break
                    if recorded is not None:
                        events.append((where, recorded))
            behind = [tp for tp in open_partitions() if consumer.position(tp) < ends[tp]]
        return events

    def close(self) -> None:
        self._consumer.close()
        self._watermarks.close()
