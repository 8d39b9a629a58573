"""A followed topic's tail hands over every committed event exactly once, also one committed
between the moment it takes the topic's end and the moment it polls (DESIGN.md 4a: a reader
never moves its position past a record it has not handled).

The consumer here is a stand-in that keeps the topic in a list: what is tested is the tail's
bookkeeping of positions, not Kafka."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import TopicPartition

import infra.kafka_io
from events.enrollment import SubjectRegistered
from events.envelope import to_bytes
from events.reading import LogReader
from events.signing import Keyring, Signer
from infra.kafka_io import Tail

from .builders import event_id, sealed

TOPIC = "ns.safety.events"
SIGNER = Signer("safety-1", Ed25519PrivateKey.generate())
KEYRING = Keyring(keys=(SIGNER.public("safety"),))


@dataclass
class Record:
    offset: int
    value: bytes


class Topic:
    """One partition: its records, and how many of them are committed (visible) now."""

    def __init__(self, *values: bytes):
        self.records = [Record(n, v) for n, v in enumerate(values)]
        self.committed = 0


class Consumer:
    def __init__(self, topic: Topic, **_settings):
        self.topic = topic
        self.positions: dict[TopicPartition, int] = {}

    def partitions_for_topic(self, _name):
        return {0}

    def assign(self, partitions):
        self.positions = {tp: 0 for tp in partitions}

    def seek_to_beginning(self, *partitions):
        for tp in partitions:
            self.positions[tp] = 0

    def seek(self, tp, offset):
        self.positions[tp] = offset

    def position(self, tp):
        return self.positions[tp]

    def end_offsets(self, partitions):
        return {tp: self.topic.committed for tp in partitions}

    def poll(self, timeout_ms=0, max_records=500):
        batch = {}
        for tp, at in self.positions.items():
            records = self.topic.records[at:self.topic.committed][:max_records]
            if records:
                batch[tp] = records
                self.positions[tp] = records[-1].offset + 1
        return batch

    def close(self):
        pass


def registered(n: int) -> bytes:
    event = SubjectRegistered(subject_id=f"MSK-{n:04d}", site_id="MSK")
    return to_bytes(SIGNER.sign(sealed(event, event_id=event_id(n),
                                       stream_id=f"subject-MSK-{n:04d}")))


def test_an_event_committed_while_the_tail_reads_is_handed_over_by_the_next_read(monkeypatch):
    topic = Topic(registered(1), registered(2))
    topic.committed = 1
    monkeypatch.setattr(infra.kafka_io, "KafkaConsumer",
                        lambda **settings: Consumer(topic, **settings))
    tail = Tail("unused:9", [TOPIC], client_id="t", reader=LogReader(KEYRING), principal="x")
    main = tail._consumer
    ends_taken = main.end_offsets

    def commit_after_the_ends_are_taken(partitions):
        ends = ends_taken(partitions)
        topic.committed = 2  # the second event's transaction commits just after
        return ends

    main.end_offsets = commit_after_the_ends_are_taken
    first = tail.read_new(time.monotonic() + 5)
    main.end_offsets = ends_taken
    second = tail.read_new(time.monotonic() + 5)

    assert [w.offset for w, _r in first] == [0]
    assert [w.offset for w, _r in second] == [1]
    assert tail._consumer.position(TopicPartition(TOPIC, 0)) == 2


def test_a_read_that_times_out_midway_loses_nothing_it_had_read(monkeypatch):
    topic = Topic(*(registered(n) for n in range(1, 7)))
    topic.committed = 6
    monkeypatch.setattr(infra.kafka_io, "KafkaConsumer",
                        lambda **settings: Consumer(topic, **settings))
    tail = Tail("unused:9", [TOPIC], client_id="t", reader=LogReader(KEYRING), principal="x")
    main = tail._consumer
    polled = main.poll
    clock = [0.0]
    monkeypatch.setattr(infra.kafka_io.time, "monotonic", lambda: clock[0])

    def slow_poll(timeout_ms=0, max_records=500):
        clock[0] += 1.0  # each poll takes a second of the deadline
        return polled(timeout_ms, max_records=2)

    main.poll = slow_poll
    # The first read polls twice (offsets 0-3), then its deadline has passed.
    try:
        tail.read_new(2.0)
        raise AssertionError("the read should have timed out")
    except infra.kafka_io.BrokerTimeout:
        pass
    assert main.position(TopicPartition(TOPIC, 0)) == 4
    assert tail.unreturned == 4
    main.poll = polled
    handed = tail.read_new(clock[0] + 5)

    assert [w.offset for w, _r in handed] == [0, 1, 2, 3, 4, 5]
    assert tail.unreturned == 0
