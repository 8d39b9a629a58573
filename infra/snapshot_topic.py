"""Where a writer keeps its snapshots (services/snapshots.py, decision 42): a compacted topic of
its own, ``<namespace>.<context>.snapshots``, so a service restarted on another machine finds
the latest one.

A snapshot is a few records: its compressed body cut into chunks (``chunk:00000``, ...; a
record stays under the broker's default 1 MB limit) and then its manifest (key ``manifest``),
which also lists the offsets of its chunks. Compaction keeps the last record of each key, so
the topic holds one snapshot and a few chunks of earlier ones; the manifest is written last,
so the topic's last record is the manifest of a complete snapshot (a writer that stopped
half-way leaves chunks after it: then there is no snapshot to read, and the service folds
its topic from the start). Only the context's writer may write or read it (topic_admin's
ACLs). Nothing here decides whether a snapshot is trusted: ``services.snapshots`` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from events.reading import Where
from infra.kafka_io import BOOTSTRAP_TIMEOUT_MS, BrokerTimeout, read_range
from infra.kafka_security import kafka_python_settings
from services.snapshots import Sealed, SnapshotRefused

log = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024
"""A body is cut into records of this size (the broker's default limit is 1 MB a record)."""
MANIFEST = b"manifest"
SNAPSHOT_TOPIC_CONFIG = {
    # the last record of each key is all a reader needs
    "cleanup.policy": "compact",
    # small segments, cleaned soon: a snapshot of a long log is tens of MB
    "segment.bytes": str(64 * 1024 * 1024),
    "segment.ms": str(60 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
}
READ_TIMEOUT_S = 120.0
FETCH_BYTES = 64 * 1024 * 1024
"""How much of the topic one fetch may bring when a snapshot is read."""


def snapshot_topic(event_topic: str, partition: int = 0) -> str:
    """``<namespace>.<context>.snapshots`` for ``<namespace>.<context>.events``, and
    ``<namespace>.<context>.snapshots.p<N>`` for the writer of its partition N past the first
    (decision 60: one writer, one trial, one snapshot topic per partition)."""
    base, _, last = event_topic.rpartition(".")
    name = f"{base}.snapshots" if last == "events" else f"{event_topic}.snapshots"
    return name if partition == 0 else f"{name}.p{partition}"


class SnapshotTopic:
    """The snapshots of one writer's topic, read and written as that writer (``principal``)."""

    def __init__(self, bootstrap_servers: str, event_topic: str, *, principal: str,
                 client_id: str, partition: int = 0):
        self.bootstrap_servers = bootstrap_servers
        self.topic = snapshot_topic(event_topic, partition)
        self.principal = principal
        self.client_id = client_id

    def latest(self) -> Sealed | None:
        """The last snapshot written, or None when there is none (no topic, an empty one, or a
        write that did not finish). Raises ``BrokerTimeout`` when the broker does not answer."""
        consumer = KafkaConsumer(
            **kafka_python_settings(self.principal),
            bootstrap_servers=self.bootstrap_servers,
            client_id=f"{self.client_id}-snapshot",
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=10_000,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
        try:
            if consumer.partitions_for_topic(self.topic) is None:
                return None
            tp = TopicPartition(self.topic, 0)
            end = consumer.end_offsets([tp])[tp]
        except KafkaError as exc:
            raise BrokerTimeout(f"{self.topic}: {exc!r}") from exc
        finally:
            consumer.close()
        if end == 0:
            return None
        last = list(self._read(end - 1, end))
        if not last or last[0][1] != MANIFEST or last[0][2] is None:
            log.warning("%s: its last record is not a snapshot's manifest (a write that did "
                        "not finish?)", self.topic)
            return None
        try:
            record = orjson.loads(last[0][2])
            manifest, offsets = record["manifest"].encode(), [int(o) for o in record["chunks"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise SnapshotRefused("its manifest record is not one") from None
        if not offsets:
            return Sealed(manifest, b"")
        wanted = set(offsets)
        chunks = {
            offset: value for offset, key, value in self._read(min(offsets), max(offsets) + 1)
            if offset in wanted and key is not None and key.startswith(b"chunk:")
        }
        if set(chunks) != wanted or any(v is None for v in chunks.values()):
            raise SnapshotRefused(f"{len(wanted) - len(chunks)} of its chunks are gone")
        return Sealed(manifest, b"".join(chunks[o] or b"" for o in offsets))

    def _read(self, start: int, end: int) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        return _read_keyed(self.bootstrap_servers, self.topic, start, end,
                           client_id=f"{self.client_id}-snapshot", principal=self.principal)

    def write(self, sealed: Sealed) -> int:
        """Write ``sealed``: its chunks, then its manifest. Returns the bytes written."""
        self._ensure()
        producer = KafkaProducer(
            **kafka_python_settings(self.principal),
            bootstrap_servers=self.bootstrap_servers,
            client_id=f"{self.client_id}-snapshot",
            acks="all",
            linger_ms=5,
            max_request_size=2 * CHUNK_BYTES,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
        try:
            body = sealed.body
            futures = [
                producer.send(self.topic, key=f"chunk:{n:05d}".encode(),
                              value=body[start:start + CHUNK_BYTES])
                for n, start in enumerate(range(0, len(body), CHUNK_BYTES))
            ]
            producer.flush(timeout=READ_TIMEOUT_S)
            offsets = [f.get(timeout=0).offset for f in futures]
            record = orjson.dumps({"manifest": sealed.manifest.decode(), "chunks": offsets})
            producer.send(self.topic, key=MANIFEST, value=record).get(timeout=READ_TIMEOUT_S)
        finally:
            producer.close(timeout=5)
        return len(sealed.body) + len(sealed.manifest)

    def _ensure(self) -> None:
        """Create the topic when it is missing (as the writer: topic_admin grants it that)."""
        # topic_admin names this topic in its ACLs: imported here, not at the top
        from infra.topic_admin import configured_replication_factor, wanted_replication

        admin = KafkaAdminClient(
            **kafka_python_settings(self.principal),
            bootstrap_servers=self.bootstrap_servers,
            client_id=f"{self.client_id}-snapshot-admin",
            request_timeout_ms=30_000,
        )
        try:
            if self.topic in admin.list_topics():
                return
            factor = configured_replication_factor()
            if factor is None:
                try:
                    brokers = len(admin.describe_cluster().get("brokers", []))
                except KafkaError:  # not allowed to describe the cluster: one copy will do
                    brokers = 1
                factor = wanted_replication(brokers)
            admin.create_topics([NewTopic(self.topic, 1, factor,
                                          topic_configs=SNAPSHOT_TOPIC_CONFIG)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()


def _read_keyed(
    bootstrap_servers: str, topic: str, start: int, end: int, *, client_id: str, principal: str
) -> Iterator[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of the records of ``topic`` from ``start`` up to ``end``."""
    consumer = KafkaConsumer(
        **kafka_python_settings(principal),
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=30_000,
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        # A snapshot of a long log is tens of chunks: in one fetch rather than one per 1 MB
        # (the client's default), and no 100 ms back-off before the first (decision 57).
        fetch_max_bytes=FETCH_BYTES,
        max_partition_fetch_bytes=FETCH_BYTES,
        retry_backoff_ms=10,
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while consumer.position(tp) < end:
            if time.monotonic() >= deadline:
                raise BrokerTimeout(f"{topic} not read up to {end} in time")
            for record in consumer.poll(timeout_ms=200, max_records=64).get(tp, []):
                if record.offset < end:
                    yield record.offset, record.key, record.value
    except KafkaError as exc:
        raise BrokerTimeout(f"reading {topic}: {exc!r}") from exc
    finally:
        consumer.close()


def read_record(bootstrap_servers: str, topic: str, offset: int, *, client_id: str,
                principal: str, partition: int = 0) -> bytes | None:
    """The value of the record at ``offset`` of ``topic``'s ``partition``; ``LookupError``
    when there is none (an offset past the end, or a commit marker)."""
    for where, value in read_range(bootstrap_servers, Where(topic, partition, offset),
                                   offset + 1, client_id=client_id, principal=principal):
        if where.offset == offset:
            return value
    raise LookupError(f"no record at {topic}:{partition}:{offset}")
