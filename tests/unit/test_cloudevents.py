"""Kafka headers of every appended record (decision 43).

Sources: CloudEvents 1.0.2 ("Context Attributes": specversion "1.0", id, source, type,
subject, time in RFC 3339, dataschema) and its Kafka Protocol Binding 1.0.2 (binary content
mode, section 3.2: each attribute in a header named ``ce_<attribute>``, the data's media type
in ``content-type``); W3C Trace Context Level 1 (``traceparent``: version 00, a 32-hex trace id
and a 16-hex parent id, neither all zeros, 2-hex flags, lowercase, section 3.2; a participant
keeps the trace id and flags and replaces the parent id with its own, section 3.4; an invalid
header is ignored, section 4.3). The headers sit outside the hash and the writer's signature:
the value a reader checks is the envelope's bytes alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.cloudevents import parse_traceparent, record_headers
from events.enrollment import SubjectRegistered
from events.envelope import Actor, to_bytes
from events.reading import decode
from events.safety import AdverseEventReported
from events.signatures import RecordSigned
from events.signing import Keyring, Signer
from services.decider import NewEvent
from services.eventstore import KafkaEventStore

from .builders import CORRELATION_ID, at, event_id, sealed

SAFETY = "trialops.safety.events"
ENROLLMENT = "trialops.enrollment.events"
W3C_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
"""The traceparent of W3C Trace Context's own example (section 3.2.3)."""
RFC_3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

AE = AdverseEventReported.model_validate(AdverseEventReported.model_json_schema()["examples"][0])
REGISTERED = SubjectRegistered(subject_id="MSK-0007", site_id="SITE-01")


def headers_of(envelope, topic=SAFETY, incoming=None) -> dict[str, str]:
    pairs = record_headers(envelope, topic, incoming)
    assert all(isinstance(v, bytes) for _, v in pairs), "kafka-python sends bytes"
    assert len({n for n, _ in pairs}) == len(pairs), "each header once"
    return {name: value.decode() for name, value in pairs}


def test_an_adverse_event_record_carries_the_cloudevents_binary_mode_headers():
    envelope = sealed(AE, stream_id="ae-AE-0007-01")

    headers = headers_of(envelope)

    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == "00000000-0000-0000-0000-000000000001"
    assert headers["ce_source"] == "/trialops/trialops/safety"
    assert headers["ce_type"] == "org.trialops.safety.AdverseEventReported.v2"
    assert headers["ce_subject"] == "ae-AE-0007-01"
    assert headers["ce_time"] == "2025-03-03T09:01:00Z", "recorded_at, 9:01 on Monday, UTC"
    assert RFC_3339_UTC.match(headers["ce_time"])
    assert headers["content-type"] == "application/json"
    assert headers["ce_dataschema"] == (
        "https://trialops.example/schemas/AdverseEventReported.v2.record.schema.json"
    )
    assert set(headers) == {
        "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time",
        "ce_dataschema", "content-type", "traceparent",
    }


def test_the_type_names_the_schema_version_the_record_was_written_in():
    v1_payload = {k: v for k, v in AE.model_dump(mode="json").items() if k != "ctcae_version"}
    envelope = sealed(AE, schema_version=1, payload=v1_payload)

    headers = headers_of(envelope)

    assert headers["ce_type"] == "org.trialops.safety.AdverseEventReported.v1"
    assert headers["ce_dataschema"].endswith("/AdverseEventReported.v1.record.schema.json")


def test_a_signature_of_record_is_typed_as_shared_whichever_writer_appends_it():
    signed = RecordSigned.model_validate(RecordSigned.model_json_schema()["examples"][0])
    headers = headers_of(sealed(signed), topic=ENROLLMENT)

    assert headers["ce_type"] == "org.trialops.shared.RecordSigned.v1"
    assert headers["ce_source"] == "/trialops/trialops/enrollment"


def test_the_source_names_the_namespace_of_the_deployment():
    headers = headers_of(sealed(REGISTERED), topic="site-b.enrollment.events")

    assert headers["ce_source"] == "/trialops/site-b/enrollment"


def test_without_a_caller_trace_the_trace_id_is_the_commands_correlation_id():
    headers = headers_of(sealed(REGISTERED))

    match = TRACEPARENT.match(headers["traceparent"])
    assert match is not None, headers["traceparent"]
    trace_id, parent_id, flags = match.groups()
    assert trace_id == "11111111111141118111111111111111"  # CORRELATION_ID without hyphens
    assert UUID(trace_id) == CORRELATION_ID
    assert parent_id != "0" * 16
    assert flags == "00", "trialops records no spans: not sampled"


def test_two_events_of_one_command_share_the_trace_and_name_two_spans():
    first = headers_of(sealed(REGISTERED, event_id=event_id(1)))["traceparent"]
    second = headers_of(sealed(REGISTERED, event_id=event_id(2)))["traceparent"]

    assert first.split("-")[1] == second.split("-")[1]
    assert first.split("-")[2] != second.split("-")[2]


def test_the_same_record_always_gets_the_same_headers():
    envelope = sealed(AE)

    assert record_headers(envelope, SAFETY, W3C_EXAMPLE) == record_headers(
        envelope, SAFETY, W3C_EXAMPLE
    )


def test_a_callers_traceparent_is_continued_with_this_append_as_the_parent():
    headers = headers_of(sealed(AE), incoming=W3C_EXAMPLE)

    trace_id, parent_id, flags = TRACEPARENT.match(headers["traceparent"]).groups()
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert flags == "01", "the caller's sampling decision is kept"
    assert parent_id != "00f067aa0ba902b7", "the parent id is this append's own span"
    assert parent_id == headers_of(sealed(AE))["traceparent"].split("-")[2]


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", id="uppercase"),
        pytest.param("00-" + "0" * 32 + "-00f067aa0ba902b7-01", id="all-zero-trace-id"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", id="zero-parent"),
        pytest.param("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", id="version-ff"),
        pytest.param(W3C_EXAMPLE + "-extra", id="version-00-with-a-fifth-field"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", id="short-trace"),
        pytest.param("not a traceparent", id="garbage"),
        pytest.param("", id="empty"),
    ],
)
def test_an_invalid_traceparent_is_ignored_and_the_commands_own_trace_used(incoming):
    assert parse_traceparent(incoming) is None
    headers = headers_of(sealed(REGISTERED), incoming=incoming)

    assert headers["traceparent"] == headers_of(sealed(REGISTERED))["traceparent"]


def test_a_later_traceparent_version_is_read_by_its_first_four_fields():
    later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next"

    parsed = parse_traceparent(later)

    assert parsed is not None
    assert (parsed.trace_id, parsed.parent_id, parsed.flags) == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01",
    )


# ---------------------------------------------------------------- the headers and the log


@dataclass
class _Sent:
    topic: str
    partition: int
    offset: int


class _Future:
    is_done = True

    def __init__(self, meta: _Sent):
        self.meta = meta

    def get(self, timeout: float) -> _Sent:
        return self.meta


class _Producer:
    """What the store gives kafka-python, kept: (topic, key, value, headers) per record."""

    def __init__(self):
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]] | None]] = []

    def begin_transaction(self):
        pass

    def send(self, topic, key=None, value=None, headers=None, partition=None):
        self.records.append((topic, key, value, headers))
        return _Future(_Sent(topic, 0, len(self.records) - 1))

    def flush(self, timeout=None):
        pass

    def commit_transaction(self):
        pass


def test_the_writer_appends_headers_beside_the_value_it_signed():
    signer = Signer("enrollment-1", Ed25519PrivateKey.generate())
    keyring = Keyring(keys=(signer.public("enrollment"),))
    store = KafkaEventStore(
        "127.0.0.1:9", ENROLLMENT, "T", writer_id="w", keyring=keyring, signer=signer
    )
    producer = store._producer = _Producer()
    envelopes = store.seal_all(
        [NewEvent("subject-MSK-0007", REGISTERED, at(0))],
        actor=Actor(user_id="crc-1", role="coordinator"),
        recorded_at=datetime.fromisoformat("2025-03-03T09:05:00+00:00"),
        correlation_id=CORRELATION_ID,
    )

    [appended] = store.append(envelopes)
    signed = appended.envelope

    [(topic, key, value, headers)] = producer.records
    assert (topic, key) == (ENROLLMENT, b"subject-MSK-0007")
    assert headers == record_headers(signed, ENROLLMENT)
    assert dict(headers)["ce_time"] == b"2025-03-03T09:05:00Z"
    # The value is the signed envelope's bytes, unchanged: its hash and signature verify,
    # and a reader given the value alone (as every reader is) reads the event.
    assert value == to_bytes(signed)
    assert signed.model_copy(update={"writer_signature": None}) == envelopes[0]
    recorded = decode(value, keyring, ENROLLMENT)
    assert recorded.envelope == signed
    assert recorded.envelope.hash_is_valid()
    assert recorded.payload == REGISTERED


def test_a_record_written_without_headers_reads_like_one_with_them():
    # Records appended before decision 43 have no headers: the reading rule never asks.
    signer = Signer("safety-1", Ed25519PrivateKey.generate())
    keyring = Keyring(keys=(signer.public("safety"),))
    envelope = signer.sign(sealed(AE))

    read = decode(to_bytes(envelope), keyring, SAFETY)

    assert read.envelope == envelope
    assert read.envelope.hash == envelope.computed_hash()
    assert read.payload == AE
