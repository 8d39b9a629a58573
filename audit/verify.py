"""Integrity verification of the event log: every topic, every stream.

Checks, per stream (a stream is a topic's ``stream_id``): each event's hash matches its content
and is signed by the writer of its topic (events/signing.py);
sequence numbers run 1, 2, 3 ... without gaps or repeats; they appear in that order on the topic;
each event's ``prev_hash`` is the hash of the event before it; every event validates against its
schema after upcasting; no event id appears twice.

An attacker who can rewrite the last event of a stream and recompute its hash is not caught by
the chain alone: the next event would be. Anchoring stream heads outside Kafka closes that gap.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError

from audit.checkpoint import SignedCheckpoint, compare, end_offsets, signature_problem
from events.envelope import Envelope
from events.keys import WriterKeyRotated
from events.reading import LogReader, Unreadable, check_rotation
from events.registry import UnknownEventType, read
from events.signing import SIGNATURE_KINDS, Keyring, SignatureProblem, check_writer_signature
from events.topics import WRITERS, context_of, event_topic
from infra.kafka_io import Position, load_quarantine, read_to_end
from infra.keys import load_keyring
from infra.settings import Settings

KINDS = (
    "unreadable",
    "schema-invalid",
    "hash-mismatch",
    *SIGNATURE_KINDS,
    "bad-rotation",
    "missing",
    "duplicate",
    "conflicting-duplicate",
    "reordered",
    "broken-chain",
    "duplicate-event-id",
    "checkpoint-signature",
    "checkpoint-truncated",
    "checkpoint-missing",
    "checkpoint-rewritten",
)


@dataclass(frozen=True)
class Problem:
    kind: str
    where: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "where": self.where, "detail": self.detail}


@dataclass
class Report:
    events: int = 0
    streams: int = 0
    topics: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    """Unreadable records set aside by a signed quarantine: not problems, but listed."""
    halts: list[dict] = field(default_factory=list)
    """Where every reader stops (the first unreadable record of a partition not quarantined)."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_kind(self) -> dict[str, int]:
        counts = Counter(p.kind for p in self.problems)
        return {kind: counts[kind] for kind in KINDS if counts[kind]}

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "events": self.events,
            "streams": self.streams,
            "topics": self.topics,
            "problems_by_kind": self.by_kind(),
            "problems": [p.as_dict() for p in self.problems],
            "quarantined": self.quarantined,
            "readers_halt_at": self.halts,
            "seconds": round(self.seconds, 3),
        }


def verify(
    settings: Settings,
    contexts: tuple[str, ...] = WRITERS,
    progress: Callable[[int, float], None] | None = None,
    checkpoint: SignedCheckpoint | None = None,
) -> Report:
    """Check every record of ``contexts``' topics; with ``checkpoint``, also that the log still
    holds, unchanged, everything the checkpoint covered (audit/checkpoint.py)."""
    report = Report()
    started = time.monotonic()
    streams: dict[tuple[str, str], list[tuple[Position, Envelope]]] = defaultdict(list)
    event_ids: dict[str, tuple[str, str, tuple[str, str]]] = {}
    topics = [event_topic(c, settings.namespace) for c in contexts]
    # What the readers make of the log, by the rule they share: where they halt, and which
    # records a quarantine lets them pass over (those are left out of the checks below).
    keyring = load_keyring(settings.keyring)
    readers = LogReader(
        keyring, load_quarantine(settings.bootstrap_servers, settings.namespace, keyring)
    )
    for position, _key, value in read_to_end(settings.bootstrap_servers, topics):
        # Signatures are checked with the keys as of this record: a key rotation read earlier
        # on the topic retires its key from the next record on (events/keys.py).
        keys_here = readers.keyring
        readers.admit(position, value)
        if readers.skipped and readers.skipped[-1] == position:
            report.quarantined.append(str(position))
            continue
        report.events += 1
        report.topics[position.topic] = report.topics.get(position.topic, 0) + 1
        if progress and report.events % 10_000 == 0:
            progress(report.events, time.monotonic() - started)
        where = f"{position.topic}@{position.partition}:{position.offset}"
        envelope = _check_event(value, where, report, keys_here, position.topic)
        if envelope is None:
            continue
        stream = (position.topic, envelope.stream_id)
        first = event_ids.setdefault(str(envelope.event_id), (where, envelope.hash, stream))
        # The same event written twice to its stream is a "duplicate" (reported per stream);
        # one id for two different events is a forgery or a bug.
        if first[0] != where and (first[1], first[2]) != (envelope.hash, stream):
            report.problems.append(
                Problem(
                    "duplicate-event-id", where, f"event {envelope.event_id} also at {first[0]}"
                )
            )
        streams[stream].append((position, envelope))
    for (topic, stream_id), events in streams.items():
        _check_stream(topic, stream_id, events, report)
    if checkpoint is not None:
        _check_checkpoint(settings, checkpoint, keyring, topics, streams, report)
    report.halts = [halt.as_dict() for halt in readers.halts.values()]
    report.streams = len(streams)
    report.seconds = time.monotonic() - started
    return report


def _check_event(
    value: bytes, where: str, report: Report, keyring: Keyring, topic: str
) -> Envelope | None:
    try:
        envelope = Envelope.model_validate(orjson.loads(value))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        report.problems.append(Problem("unreadable", where, _first_line(exc)))
        return None
    try:
        recorded = read(envelope)
    except (ValidationError, UnknownEventType) as exc:
        report.problems.append(Problem("schema-invalid", where, _first_line(exc)))
        recorded = None
    if not envelope.hash_is_valid():
        report.problems.append(
            Problem(
                "hash-mismatch", where, f"{envelope.event_type} content does not match its hash"
            )
        )
    try:
        check_writer_signature(envelope, keyring, context_of(topic) or topic)
        if recorded is not None and isinstance(recorded.payload, WriterKeyRotated):
            check_rotation(recorded.payload, envelope, keyring, context_of(topic) or topic)
    except SignatureProblem as exc:
        report.problems.append(Problem(exc.kind, where, exc.detail))
    except Unreadable as exc:
        report.problems.append(Problem(exc.kind, where, exc.detail))
    return envelope


def _check_checkpoint(settings, checkpoint, keyring, topics, streams, report: Report) -> None:
    where = f"checkpoint of {checkpoint.statement.taken_at.isoformat()}"
    if (problem := signature_problem(checkpoint, keyring)) is not None:
        report.problems.append(Problem("checkpoint-signature", where, problem))
        return
    if checkpoint.statement.namespace != settings.namespace:
        report.problems.append(Problem(
            "checkpoint-signature", where,
            f"taken of namespace {checkpoint.statement.namespace}, not {settings.namespace}",
        ))
        return
    held = {stream: [e for _p, e in events] for stream, events in streams.items()}
    ends = end_offsets(settings.bootstrap_servers, topics)
    for kind, place, detail in compare(checkpoint.statement, ends, held):
        report.problems.append(Problem(kind, place, detail))


def _check_stream(topic: str, stream_id: str, events, report: Report) -> None:
    name = f"{topic} stream {stream_id}"
    by_seq: dict[int, Envelope] = {}
    last_seq = 0
    for position, envelope in events:
        seq = envelope.stream_seq
        where = f"{position.topic}@{position.partition}:{position.offset}"
        if seq in by_seq:
            kind = "duplicate" if by_seq[seq].hash == envelope.hash else "conflicting-duplicate"
            report.problems.append(Problem(kind, where, f"{name}: seq {seq} appears again"))
            continue
        if seq < last_seq:
            report.problems.append(
                Problem("reordered", where, f"{name}: seq {seq} comes after seq {last_seq}")
            )
        by_seq[seq] = envelope
        last_seq = max(last_seq, seq)
    missing = sorted(set(range(1, last_seq + 1)) - set(by_seq))
    if missing:
        report.problems.append(
            Problem("missing", name, f"seq {_ranges(missing)} of 1..{last_seq} not on the topic")
        )
    for seq in sorted(by_seq):
        previous = by_seq.get(seq - 1)
        if seq > 1 and previous is None:
            continue  # already reported as missing
        expected = previous.hash if previous is not None else "0" * 64
        if by_seq[seq].prev_hash != expected:
            report.problems.append(
                Problem(
                    "broken-chain",
                    name,
                    f"seq {seq} does not chain to seq {seq - 1} (prev_hash "
                    f"{by_seq[seq].prev_hash[:12]}..., expected {expected[:12]}...)",
                )
            )


def _ranges(numbers: list[int]) -> str:
    parts: list[str] = []
    start: int | None = numbers[0]
    for a, b in zip(numbers, [*numbers[1:], None], strict=True):
        if b != a + 1:
            parts.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(parts)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]
