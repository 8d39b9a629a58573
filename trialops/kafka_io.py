"""Kafka plumbing shared by services, replay and tools: topics, and reading a topic to its end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from events.topics import TopicSpec, catalogue


@dataclass(frozen=True, slots=True)
class Position:
    topic: str
    partition: int
    offset: int

    def as_dict(self) -> dict[str, str | int]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


def ensure_topics(bootstrap_servers: str, namespace: str, replication_factor: int = 1) -> list[str]:
    """Create the event topics that are missing; return the names created."""
    specs: list[TopicSpec] = catalogue(namespace)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="trialops-admin")
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            spec.partitions,
                            replication_factor,
                            topic_configs=spec.configs,
                        )
                    ]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
        return created
    finally:
        admin.close()


def read_to_end(
    bootstrap_servers: str, topics: list[str], *, client_id: str = "trialops-reader"
) -> Iterator[tuple[Position, bytes | None, bytes]]:
    """Every committed record of ``topics`` from the beginning to the end offsets taken at the
    start, partition by partition in offset order: ``(position, key, value)``."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        partitions = []
        for topic in topics:
            ids = consumer.partitions_for_topic(topic)
            if ids is None:
                raise LookupError(f"topic {topic} does not exist")
            partitions += [TopicPartition(topic, p) for p in sorted(ids)]
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            if ends[tp] == 0:
                continue
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
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


class Tail:
    """Follows topics another context writes: each ``read_new`` returns what was committed since
    the last call, up to the end offsets at the moment of the call (read-only)."""

    def __init__(self, bootstrap_servers: str, topics: list[str], *, client_id: str):
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        partitions = []
        for topic in topics:
            ids = self._consumer.partitions_for_topic(topic)
            if ids is None:
                raise LookupError(f"topic {topic} does not exist")
            partitions += [TopicPartition(topic, p) for p in sorted(ids)]
        self._partitions = partitions
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        # Sees records of transactions still in flight: how far the committed end must reach.
        self._watermarks = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{client_id}-watermarks",
            enable_auto_commit=False,
            isolation_level="read_uncommitted",
        )

    def _settled_ends(self, settle_seconds: float) -> dict[TopicPartition, int]:
        """End offsets once every transaction already writing when we asked has settled.

        A writer's commit returns before the broker has placed the commit markers, so for a
        moment its records are neither readable nor aborted. Waiting (briefly) until the
        committed end reaches the high watermark seen at the start gives a command every fact
        whose append had completed before the command arrived."""
        wanted = self._watermarks.end_offsets(self._partitions)
        deadline = time.monotonic() + settle_seconds
        while True:
            ends = self._consumer.end_offsets(self._partitions)
            if all(ends[tp] >= wanted[tp] for tp in self._partitions):
                return ends
            if time.monotonic() >= deadline:
                return ends
            time.sleep(0.02)

    def read_new(self, settle_seconds: float = 2.0) -> list[tuple[Position, bytes]]:
        consumer = self._consumer
        ends = self._settled_ends(settle_seconds)
        records: list[tuple[Position, bytes]] = []
        behind = [tp for tp in self._partitions if consumer.position(tp) < ends[tp]]
        while behind:
            batch = consumer.poll(timeout_ms=1000, max_records=2000)
            for tp, batch_records in batch.items():
                for record in batch_records:
                    if record.offset < ends[tp]:
                        records.append(
                            (Position(tp.topic, tp.partition, record.offset), record.value)
                        )
            behind = [tp for tp in self._partitions if consumer.position(tp) < ends[tp]]
        return records

    def close(self) -> None:
        self._consumer.close()
        self._watermarks.close()
