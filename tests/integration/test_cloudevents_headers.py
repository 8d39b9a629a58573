"""A downstream consumer routes without parsing (decision 43): a record the enrollment service
appends on the real broker, read with a plain kafka-python consumer, carries the CloudEvents
1.0.2 Kafka-binding headers (binary content mode) and a W3C traceparent; the headers sit beside
a value that verify still reads as before.

Sources: CloudEvents 1.0.2 and its Kafka Protocol Binding (``ce_`` headers, ``content-type``);
W3C Trace Context Level 1 (``traceparent``: version 00, 32-hex trace id, 16-hex parent id,
2-hex flags).
"""

from __future__ import annotations

import re
import time
from uuid import UUID

import pytest
from kafka import KafkaConsumer

from audit.verify import verify
from events.envelope import Envelope, from_bytes
from events.topics import event_topic
from infra.kafka_io import AUDITOR
from infra.kafka_security import kafka_python_settings
from tests.integration.helpers import open_cohort, register

pytestmark = pytest.mark.kafka

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def plain_read(bootstrap_servers: str, topic: str, at_least: int) -> list:
    """Records of ``topic`` as any consumer of the topic sees them (committed ones only)."""
    consumer = KafkaConsumer(
        topic,
        **kafka_python_settings(AUDITOR),
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    records: list = []
    try:
        deadline = time.monotonic() + 30
        while len(records) < at_least and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records += batch
    finally:
        consumer.close()
    return records


def test_a_registered_subjects_record_carries_cloudevents_headers(stack, settings):
    # Given a cohort opened by the review and a subject registered by the site coordinator
    open_cohort(stack, "DL1-IP", "DL1")
    register(stack, "MSK-0101")
    topic = event_topic("enrollment", settings.namespace)

    # When a consumer that knows nothing of trialops reads the enrollment topic
    records = plain_read(settings.bootstrap_servers, topic, at_least=2)

    # Then every record names what it is in its headers
    assert len(records) >= 2
    for record in records:
        headers = {name: value.decode() for name, value in record.headers}
        envelope: Envelope = from_bytes(record.value)
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_id"] == str(envelope.event_id)
        assert headers["ce_source"] == f"/trialops/{settings.namespace}/enrollment"
        assert headers["ce_subject"] == envelope.stream_id == record.key.decode()
        assert headers["ce_time"] == envelope.recorded_at.isoformat().replace("+00:00", "Z")
        assert headers["content-type"] == "application/json"
        assert headers["ce_dataschema"] == (
            f"https://trialops.example/schemas/{envelope.event_type}"
            f".v{envelope.schema_version}.record.schema.json"
        )
        trace = TRACEPARENT.match(headers["traceparent"])
        assert trace is not None, headers["traceparent"]
        assert UUID(trace.group(1)) == envelope.correlation_id
    by_type = {dict(r.headers)["ce_type"].decode(): r for r in records}
    assert "org.trialops.enrollment.CohortOpened.v1" in by_type
    registered = by_type["org.trialops.enrollment.SubjectRegistered.v1"]
    assert from_bytes(registered.value).payload["subject_id"] == "MSK-0101"

    # and the log still verifies: the headers are outside every hash and signature
    report = verify(settings)
    assert report.ok, report.problems
