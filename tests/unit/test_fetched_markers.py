"""The worker's consumer notes the transaction markers its fetcher passes over, so that the
worker tells a record it never got from a marker (projections/faust_kafka.py, decision 77).

The records are built as Kafka lays them out (the v2 record batch: base offset, length, leader
epoch, magic, CRC-32C over the rest, attributes whose bit 5 marks a control batch; a control
record's key is its version and type, 0 abort and 1 commit), and read by aiokafka's own
fetcher code, which the worker's consumer runs."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from projections import faust_kafka
from projections.continuity import Markers, unseen

TOPIC = "enrollment.events"
PRODUCER = 7
CONTROL = 0x20
"""The attributes bit of a control batch (Kafka's record batch format, v2)."""
ATTRIBUTES_AT = 21
"""Where a v2 batch's attributes start; its CRC-32C covers them and everything after."""


def batch(offset: int, records: list[tuple[bytes | None, bytes]], control: bool = False) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=1, producer_id=PRODUCER,
        producer_epoch=0, base_sequence=0, batch_size=1 << 20,
    )
    for delta, (key, value) in enumerate(records):
        builder.append(delta, timestamp=None, key=key, value=value, headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, offset)
    if control:
        (attributes,) = struct.unpack_from(">h", data, ATTRIBUTES_AT)
        struct.pack_into(">h", data, ATTRIBUTES_AT, attributes | CONTROL)
        struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[ATTRIBUTES_AT:])))
    return bytes(data)


def commit_marker(offset: int) -> bytes:
    return batch(offset, [(struct.pack(">hh", 0, 1), b"\x00\x00\x00\x00\x00\x00")],
                 control=True)


def fetched(log: bytes, markers: Markers, monkeypatch) -> list[int]:
    """The offsets aiokafka's fetcher yields from ``log``, read as the worker's consumer reads
    a partition (``read_committed``), its markers noted in ``markers``."""
    monkeypatch.setattr(faust_kafka, "MARKERS", markers)
    records = faust_kafka._NotingPartitionRecords(
        TopicPartition(TOPIC, 0), MemoryRecords(log), [], 0, None, None, True,
        aiokafka_fetcher.READ_COMMITTED,
    )
    return [record.offset for record in records]


def test_the_markers_of_a_fetched_log_are_noted_and_its_records_delivered(monkeypatch):
    # Given two transactions: records at 0 and 1, marker at 2; record at 3, marker at 4
    log = (batch(0, [(b"a", b"1"), (b"b", b"2")]) + commit_marker(2)
           + batch(3, [(b"c", b"3")]) + commit_marker(4))
    markers = Markers()

    # When aiokafka's fetcher reads it through the worker's hook
    offsets = fetched(log, markers, monkeypatch)

    # Then the records come as Kafka delivers them, and each marker is known as one
    assert offsets == [0, 1, 3]
    source = f"{TOPIC}:0"
    assert list(unseen(2, 3, markers, source)) == []
    assert list(unseen(4, 5, markers, source)) == []
    # and a record the consumer then passes over is a gap, one offset away or more
    assert list(unseen(1, 3, markers, source)) == [1, 2]
    assert list(unseen(0, 1, markers, source)) == [0]


def test_the_worker_s_consumer_reads_committed_records_through_the_hook(monkeypatch):
    import faust
    from yarl import URL

    # aiokafka's own class, as a process has it before the worker's consumer is made
    monkeypatch.setattr(aiokafka_fetcher, "PartitionRecords", aiokafka_fetcher.PartitionRecords)

    async def nothing(*_args: object, **_kwargs: object) -> None:
        return None

    async def made() -> str:
        app = faust.App("test-markers", broker="kafka://127.0.0.1:9")
        reading = faust_kafka.ReadCommittedTransport([URL("kafka://127.0.0.1:9")], app)
        worker_consumer: Any = reading.create_consumer(
            callback=nothing, on_partitions_revoked=nothing, on_partitions_assigned=nothing)
        thread = worker_consumer._new_consumer_thread()
        kafka_consumer = thread._create_worker_consumer(reading)
        await kafka_consumer.stop()
        return kafka_consumer._isolation_level

    # When the worker's transport makes its Kafka consumer (no broker is asked yet)
    isolation = asyncio.run(made())

    # Then it reads committed records, and the fetcher builds each fetched partition's
    # records with the class that notes the markers
    assert isolation == "read_committed"
    assert aiokafka_fetcher.PartitionRecords is faust_kafka._NotingPartitionRecords
