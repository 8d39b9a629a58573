"""What a record says about itself in its Kafka headers, for consumers that do not parse it.

Every record a writer appends carries the CloudEvents 1.0.2 attributes in the Kafka protocol
binding's binary content mode (CloudEvents, "Kafka Protocol Binding", section 3.2: each
attribute a header named ``ce_<attribute>``, the data's media type in ``content-type``) and a
W3C Trace Context ``traceparent`` (W3C Recommendation "Trace Context", section 3.2). The
record's value is the envelope's canonical bytes, unchanged: headers sit outside the hash and
the writer's signature, and no reader looks at them (events/reading.py reads the value only),
so a record without headers (every record written before them) reads as before.

Pure: the headers are a function of the envelope, the topic it is appended to and the caller's
``traceparent`` when one came with the command.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from uuid import UUID

from events.envelope import Envelope
from events.registry import UnknownEventType, payload_type
from events.schemas import record_schema_id
from events.topics import context_of

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "org.trialops"
SOURCE_ROOT = "/trialops"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_NO_TRACE = "0" * 32
_NO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A W3C ``traceparent``: the trace, the span that caused this one, the trace flags."""

    trace_id: str
    parent_id: str
    flags: str

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The caller's ``traceparent``, or None when absent or invalid (W3C Trace Context Level 1:
    lowercase hex fields, section 3.2.2; all-zero trace and parent ids are invalid, 3.2.2.3 and
    3.2.2.4; version ``ff`` is invalid and a version 00 header has exactly four fields, while a
    later version's extra fields are ignored, 3.2.4; an invalid header is treated as none, and a
    new trace starts, 4.3)."""
    if value is None:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _NO_TRACE or parent_id == _NO_SPAN:
        return None
    return TraceParent(trace_id, parent_id, flags)


def trace_id_of(correlation_id: UUID) -> str:
    """The trace id of a command: its correlation id's 128 bits in lowercase hex, so a trace and
    the events it produced are found by the same value. (The nil UUID, never issued, would be
    the invalid all-zero trace id; it maps to a trace id of its own hash.)"""
    trace_id = correlation_id.hex
    if trace_id == _NO_TRACE:
        return hashlib.sha256(correlation_id.bytes).hexdigest()[:32]
    return trace_id


def span_id_of(envelope: Envelope) -> str:
    """The span id of one append: 64 bits of the SHA-256 of the event id, so the same record
    always names the same span and two events of one command name two spans."""
    span = hashlib.sha256(envelope.event_id.bytes).hexdigest()
    return span[:16] if span[:16] != _NO_SPAN else span[16:32]


def traceparent(envelope: Envelope, incoming: str | None = None) -> TraceParent:
    """The record's ``traceparent``: a child of the caller's span when a valid ``incoming``
    came with the command (its trace id and flags kept, the parent id replaced by this span's:
    W3C Trace Context Level 1, section 3.4), else a new trace named by the command's
    correlation id, not sampled (trialops records no spans)."""
    parent = parse_traceparent(incoming)
    if parent is not None:
        return TraceParent(parent.trace_id, span_id_of(envelope), parent.flags)
    return TraceParent(trace_id_of(envelope.correlation_id), span_id_of(envelope), "00")


def event_context(envelope: Envelope, topic: str) -> str:
    """The context an event type belongs to (``shared`` for types any writer may append), or
    the topic's writer for a type this code does not know."""
    try:
        return payload_type(envelope.event_type).context
    except UnknownEventType:
        return context_of(topic) or topic


def ce_type(envelope: Envelope, topic: str) -> str:
    """``org.trialops.<context>.<EventType>.v<schema_version>``: one CloudEvents type per
    schema version, as the record's schema changes with it (docs/decisions.md, decision 43)."""
    return (
        f"{TYPE_PREFIX}.{event_context(envelope, topic)}.{envelope.event_type}"
        f".v{envelope.schema_version}"
    )


def ce_source(topic: str) -> str:
    """``/trialops/<namespace>/<context>``: the writer that appended the record (a URI
    reference; source and ``ce_id`` together identify the event, CloudEvents 1.0.2, "Context
    Attributes")."""
    context = context_of(topic)
    if context is None:
        return f"{SOURCE_ROOT}/{topic}"
    namespace = topic[: -len(f".{context}.events")]
    return f"{SOURCE_ROOT}/{namespace}/{context}"


def rfc3339(envelope: Envelope) -> str:
    """``recorded_at`` in RFC 3339, UTC with a ``Z``, as the envelope's JSON writes it."""
    return envelope.recorded_at.isoformat().replace("+00:00", "Z")


def record_headers(
    envelope: Envelope, topic: str, incoming_traceparent: str | None = None
) -> list[tuple[str, bytes]]:
    """The Kafka headers of the record that carries ``envelope`` on ``topic``, in the order
    kafka-python sends them; values UTF-8."""
    headers = {
        "ce_specversion": SPECVERSION,
        "ce_id": str(envelope.event_id),
        "ce_source": ce_source(topic),
        "ce_type": ce_type(envelope, topic),
        "ce_subject": envelope.stream_id,
        "ce_time": rfc3339(envelope),
        "ce_dataschema": record_schema_id(envelope.event_type, envelope.schema_version),
        "content-type": CONTENT_TYPE,
        "traceparent": str(traceparent(envelope, incoming_traceparent)),
    }
    return [(name, value.encode()) for name, value in headers.items()]
