"""One rule for every reader: whether a record on a trialops topic is an event to apply.

The services (their own topic and the topics they follow), the Faust worker, replay, verify and
audit all call :func:`decode` and :func:`next_in_stream` on each record, in offset order per
partition, so they agree on what the log says, including when it holds something unreadable.

A record is applied when its bytes are an envelope, its payload validates (after upcasting),
its hash matches its content, it is signed by the writer of its topic (events/signing.py) and it
is the next event of its stream (``stream_seq`` one past
the stream's head, ``prev_hash`` the head's hash). An event already applied (``stream_seq`` not
above the head: a producer retry, a copy) is skipped. Anything else is *unreadable*, and the
policy for it is the same everywhere (decision 17 of docs/decisions.md):

* a reader never moves past it: nothing after it in its partition is applied, so nothing is
  decided on a view with a hole in it; a service answers 503 for its context naming the record;
* an authorised person may record a signed quarantine of exactly that record (topic, partition,
  offset and the SHA-256 of its bytes); every reader then skips exactly that record and goes on.
  A quarantine never hides a readable event: a record is skipped only when it is unreadable
  and quarantined.

Pure: no I/O; the adapters pass the bytes and the quarantine they loaded.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from events.envelope import GENESIS_HASH, Envelope, from_bytes
from events.keys import WriterKeyRotated
from events.registry import Recorded, UnknownEventType, read
from events.signing import SIGNATURE_KINDS, Keyring, SignatureProblem, check_writer_signature
from events.topics import context_of

KINDS = (
    "unreadable", "schema-invalid", "hash-mismatch", *SIGNATURE_KINDS, "bad-rotation",
    "broken-chain",
)
"""Why a record cannot be applied: not an envelope; a payload its schema refuses; content that
does not match its hash; no valid signature of the topic's writer, or one by a key retired
earlier on the topic (events/signing.py); a key rotation that is not its writer's own (events/
keys.py); an event that does not follow its stream's head."""


class Unreadable(ValueError):
    """A record no reader may apply; ``kind`` is one of :data:`KINDS`."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def digest(value: bytes | None) -> str:
    """SHA-256 of a record's bytes: what a quarantine names, so it covers those bytes only."""
    return hashlib.sha256(value or b"").hexdigest()


def decode(value: bytes | None, keyring: Keyring, topic: str) -> Recorded:
    """The recorded event in ``value``, read on ``topic``, or :class:`Unreadable`."""
    if value is None:
        raise Unreadable("unreadable", "the record has no value")
    try:
        envelope = from_bytes(value)
    except (orjson.JSONDecodeError, ValidationError, TypeError) as exc:
        raise Unreadable("unreadable", _first_line(exc)) from None
    try:
        recorded = read(envelope)
    except (ValidationError, UnknownEventType) as exc:
        raise Unreadable("schema-invalid", _first_line(exc)) from None
    if not envelope.hash_is_valid():
        raise Unreadable("hash-mismatch", f"{envelope.event_type} content does not match its hash")
    writer = context_of(topic) or topic
    try:
        check_writer_signature(envelope, keyring, writer)
    except SignatureProblem as exc:
        raise Unreadable(exc.kind, exc.detail) from None
    if isinstance(recorded.payload, WriterKeyRotated):
        check_rotation(recorded.payload, envelope, keyring, writer)
    return recorded


def check_rotation(
    rotation: WriterKeyRotated, envelope: Envelope, keyring: Keyring, writer: str
) -> None:
    """A writer retires its own key, signing with it, in favour of another key of its own."""
    signed_with = envelope.writer_signature.key_id if envelope.writer_signature else None
    successor = keyring.key(rotation.next_key_id)
    if rotation.writer != writer or signed_with != rotation.retired_key_id:
        raise Unreadable(
            "bad-rotation",
            f"a rotation on {writer}'s topic must retire the key it is signed with "
            f"({signed_with}), not {rotation.writer}'s {rotation.retired_key_id}",
        )
    if successor is None or successor.context != writer or successor.key_id in keyring.retired:
        raise Unreadable(
            "bad-rotation",
            f"the next key {rotation.next_key_id!r} is not an active key of {writer} in the "
            "keyring",
        )


def keyring_after(keyring: Keyring, recorded: Recorded) -> Keyring:
    """The keyring a reader uses after applying ``recorded``: a key rotation retires its key
    from the next record on; anything else leaves it as it is."""
    payload = recorded.payload
    if isinstance(payload, WriterKeyRotated):
        return keyring.retiring(payload.retired_key_id)
    return keyring


@dataclass(frozen=True, slots=True)
class Head:
    """The last event applied of one stream."""

    seq: int = 0
    hash: str = GENESIS_HASH


def next_in_stream(head: Head | None, envelope: Envelope) -> bool:
    """True when ``envelope`` is the next event of its stream; False when it was applied
    already (a copy: ``stream_seq`` not above the head); :class:`Unreadable` when it skips an
    event or does not chain to the head."""
    head = head or Head()
    if envelope.stream_seq <= head.seq:
        return False
    if envelope.stream_seq != head.seq + 1:
        raise Unreadable(
            "broken-chain",
            f"stream {envelope.stream_id}: seq {envelope.stream_seq} follows seq {head.seq} "
            f"(seq {head.seq + 1} is missing)",
        )
    if envelope.prev_hash != head.hash:
        raise Unreadable(
            "broken-chain",
            f"stream {envelope.stream_id}: seq {envelope.stream_seq} does not chain to seq "
            f"{head.seq} (prev_hash {envelope.prev_hash[:12]}..., head {head.hash[:12]}...)",
        )
    return True


@dataclass(frozen=True, slots=True, order=True)
class Where:
    """A record's position: topic, partition, offset."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}@{self.partition}:{self.offset}"

    def as_dict(self) -> dict[str, str | int]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class Halt:
    """Where a reader stopped: the unreadable record, why, and the digest a quarantine needs."""

    where: Where
    kind: str
    detail: str
    sha256: str

    def describe(self) -> str:
        return (
            f"{self.where} is unreadable ({self.kind}: {self.detail}); nothing after it is "
            f"applied until it is quarantined (record sha256 {self.sha256})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.where.topic,
            "partition": self.where.partition,
            "offset": self.where.offset,
            "kind": self.kind,
            "detail": self.detail,
            "record_sha256": self.sha256,
        }


@dataclass(frozen=True)
class Quarantine:
    """Records an authorised person set aside: position and the digest of the bytes there."""

    entries: frozenset[tuple[Where, str]] = frozenset()

    @classmethod
    def of(cls, entries: Iterable[tuple[Where, str]]) -> Quarantine:
        return cls(frozenset(entries))

    def covers(self, where: Where, value: bytes | None) -> bool:
        return (where, digest(value)) in self.entries

    def __len__(self) -> int:
        return len(self.entries)


NO_QUARANTINE = Quarantine()


def stream_key(where: Where, stream_id: str) -> tuple[str, str]:
    """The reading rule's name for the stream ``stream_id`` of the record at ``where``: its
    topic and id, the id marked with its partition past the first one (decision 60). Each
    trial's streams live in one partition of each topic (``events.topics.partition_of``) and
    two trials may use one stream id (a cohort "DL1"): a reader of every partition keeps
    their chains apart. A topic of one partition names its streams as before."""
    if where.partition == 0:
        return where.topic, stream_id
    return where.topic, f"{stream_id}@{where.partition}"

@dataclass
class LogReader:
    """The rule applied by a reader that reads each partition from its start, in offset order
    (services' catch-up and tails, replay, audit, verify's view of what readers apply)."""

    keyring: Keyring
    quarantine: Quarantine = NO_QUARANTINE
    heads: dict[tuple[str, str], Head] = field(default_factory=dict)
    halts: dict[tuple[str, int], Halt] = field(default_factory=dict)
    skipped: list[Where] = field(default_factory=list)
    """Quarantined records passed over."""
    copies: int = 0

    def admit(self, where: Where, value: bytes | None) -> Recorded | None:
        """The event at ``where`` when it is to be applied; None when it is a copy, a
        quarantined record, or past a halt. A new halt is in ``halts``."""
        partition = (where.topic, where.partition)
        if partition in self.halts:
            return None
        try:
            recorded = decode(value, self.keyring, where.topic)
            envelope = recorded.envelope
            stream = stream_key(where, envelope.stream_id)
            fresh = next_in_stream(self.heads.get(stream), envelope)
        except Unreadable as exc:
            if self.quarantine.covers(where, value):
                self.skipped.append(where)
                return None
            self.halts[partition] = Halt(where, exc.kind, exc.detail, digest(value))
            return None
        if not fresh:
            self.copies += 1
            return None
        self.heads[stream] = Head(envelope.stream_seq, envelope.hash)
        self.keyring = keyring_after(self.keyring, recorded)
        return recorded

    def halt_of(self, topic: str, partition: int) -> Halt | None:
        return self.halts.get((topic, partition))

    def resume(self, quarantine: Quarantine) -> None:
        """Forget the halts and read on with ``quarantine`` (a newer one): the caller reads the
        halted partitions again from their halted offsets."""
        self.quarantine = quarantine
        self.halts.clear()


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]


TimeAxis = Literal["recorded", "occurred"]


def merged(
    per_topic: Mapping[str, Iterable[Recorded]],
    topics: list[str],
    as_of: datetime | None = None,
    axis: TimeAxis = "recorded",
) -> Iterator[Recorded]:
    """The events of ``topics`` (in that order, which breaks ties), each topic in offset order,
    topics merged by recorded time (the order a live worker roughly sees them in); with
    ``as_of``, only those recorded (or occurred, by ``axis``) by then."""
    events = heapq.merge(
        *(per_topic[topic] for topic in topics), key=lambda r: r.envelope.recorded_at
    )
    if as_of is None:
        yield from events
        return
    for recorded in events:
        envelope = recorded.envelope
        moment = envelope.recorded_at if axis == "recorded" else envelope.occurred_at
        if moment <= as_of:
            yield recorded
