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
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from uuid import UUID

import orjson
from pydantic import ValidationError

from audit.checkpoint import SignedCheckpoint, compare, end_offsets, signature_problem
from events.envelope import GENESIS_HASH, Envelope
from events.keys import WriterKeyRotated
from events.reading import LogReader, Unreadable, check_rotation, stream_key
from events.registry import UnknownEventType, read
from events.signing import SIGNATURE_KINDS, Keyring, SignatureProblem, check_writer_signature
from events.topics import WRITERS, context_of, event_topic
from infra.kafka_io import load_quarantine, read_to_end
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
    holds, unchanged, everything the checkpoint covered (audit/checkpoint.py).

    One pass, each record decoded once: the reading rule's decode (events/reading.py) serves
    the checks too; a record the rule does not apply (a copy, a halted partition) is decoded
    again to say what is wrong with it. Memory: per stream, its head and what arrived out of
    order (:class:`StreamCheck`); per event, 8 bytes of its stream's hash prefixes and the
    32 bytes of the event-id table (:class:`EventIds`, decision 36), not the envelopes."""
    report = Report()
    started = time.monotonic()
    streams: dict[tuple[str, str], StreamCheck] = {}
    event_ids = EventIds()
    found: list[tuple[int, Problem]] = []
    topics = [event_topic(c, settings.namespace) for c in contexts]
    rank = {topic: index for index, topic in enumerate(topics)}
    wanted = _checkpointed_seqs(checkpoint)
    at_checkpoint: dict[tuple[str, str], Envelope] = {}
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
        recorded = readers.admit(position, value)
        if recorded is None and readers.skipped and readers.skipped[-1] == position:
            report.quarantined.append(str(position))
            continue
        report.events += 1
        report.topics[position.topic] = report.topics.get(position.topic, 0) + 1
        if progress and report.events % 10_000 == 0:
            progress(report.events, time.monotonic() - started)
        place = _place(rank[position.topic], position.partition, position.offset)
        if recorded is not None:
            # Applied by the rule: it decoded, validated, hashed and verified already.
            envelope = recorded.envelope
        else:
            checked = _check_event(value, str(position), found, place, keys_here, position.topic)
            if checked is None:
                continue
            envelope = checked
        # Named as every reader names it: two trials' streams of one id sit in two partitions.
        stream = stream_key(position, envelope.stream_id)
        check = streams.get(stream)
        if check is None:
            check = streams[stream] = StreamCheck(*stream)
        check.add(envelope.stream_seq, envelope.hash, envelope.prev_hash, position)
        event_ids.add(envelope.event_id.int, hash((envelope.hash, stream)), place)
        if stream in wanted and wanted[stream] == envelope.stream_seq:
            at_checkpoint[stream] = envelope
    # One event id for two different events is a forgery or a bug; the same event written
    # twice to its stream is a "duplicate" (reported per stream).
    for place, first, event_id in event_ids.clashes():
        found.append((place, Problem(
            "duplicate-event-id", _where_of(topics, place),
            f"event {event_id} also at {_where_of(topics, first)}",
        )))
    found.sort(key=lambda item: item[0])
    report.problems.extend(problem for _place, problem in found)
    for check in streams.values():
        report.problems.extend(check.finish())
    if checkpoint is not None:
        held = {stream: [envelope] for stream, envelope in at_checkpoint.items()}
        _check_checkpoint(settings, checkpoint, keyring, topics, held, report)
    report.halts = [halt.as_dict() for halt in readers.halts.values()]
    report.streams = len(streams)
    report.seconds = time.monotonic() - started
    return report


_OFFSET_BITS = 40
_PARTITION_BITS = 16


def _place(topic_rank: int, partition: int, offset: int) -> int:
    """A record's position in one integer that sorts in verify's reading order."""
    return (
        ((topic_rank << _PARTITION_BITS) | partition) << _OFFSET_BITS
    ) | offset


def _where_of(topics: list[str], place: int) -> str:
    offset = place & ((1 << _OFFSET_BITS) - 1)
    partition = (place >> _OFFSET_BITS) & ((1 << _PARTITION_BITS) - 1)
    topic = topics[place >> (_OFFSET_BITS + _PARTITION_BITS)]
    return f"{topic}@{partition}:{offset}"


def _checkpointed_seqs(checkpoint: SignedCheckpoint | None) -> dict[tuple[str, str], int]:
    """The stream heads a checkpoint names: the only events verify keeps for its comparison."""
    if checkpoint is None:
        return {}
    return {
        (topic, stream): head.seq
        for topic, state in checkpoint.statement.topics.items()
        for stream, head in state.streams.items()
    }


def _check_event(
    value: bytes,
    where: str,
    found: list[tuple[int, Problem]],
    place: int,
    keyring: Keyring,
    topic: str,
) -> Envelope | None:
    """What is wrong with a record the reading rule did not apply (its envelope, when it has
    one, still counts in its stream's checks)."""
    try:
        envelope = Envelope.model_validate(orjson.loads(value))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        found.append((place, Problem("unreadable", where, _first_line(exc))))
        return None
    try:
        recorded = read(envelope)
    except (ValidationError, UnknownEventType) as exc:
        found.append((place, Problem("schema-invalid", where, _first_line(exc))))
        recorded = None
    if not envelope.hash_is_valid():
        found.append((place, Problem(
            "hash-mismatch", where, f"{envelope.event_type} content does not match its hash"
        )))
    try:
        check_writer_signature(envelope, keyring, context_of(topic) or topic)
        if recorded is not None and isinstance(recorded.payload, WriterKeyRotated):
            check_rotation(recorded.payload, envelope, keyring, context_of(topic) or topic)
    except SignatureProblem as exc:
        found.append((place, Problem(exc.kind, where, exc.detail)))
    except Unreadable as exc:
        found.append((place, Problem(exc.kind, where, exc.detail)))
    return envelope


def _check_checkpoint(settings, checkpoint, keyring, topics, held, report: Report) -> None:
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
    ends = end_offsets(settings.bootstrap_servers, topics)
    for kind, place, detail in compare(checkpoint.statement, ends, held):
        report.problems.append(Problem(kind, place, detail))


_MASK64 = (1 << 64) - 1


def _prefix(hash_hex: str) -> int:
    """The first 8 bytes of a hex SHA-256 (the envelope's hash is 64 hex digits)."""
    return int(hash_hex[:16], 16)


class StreamCheck:
    """The sequence checks of one stream, fed its events in the order they are on the topic,
    keeping what they need rather than the events: the contiguous run 1..``run`` received and
    its head's hash; the seqs that arrived ahead of the run (hash and prev_hash); 8 bytes of
    each hash in the run (to tell a later duplicate of it from a conflicting one).

    Reports, as the stream-wide checks always have: a seq seen again (``duplicate`` when its
    hash is the first one's, else ``conflicting-duplicate``); a seq below one seen before
    (``reordered``); seqs below the highest that never came (``missing``, one problem with
    ranges); an event whose ``prev_hash`` is not the hash of the event before it
    (``broken-chain``; not reported where the event before it is missing)."""

    __slots__ = (
        "ahead",
        "chain",
        "head",
        "prefixes",
        "problems",
        "run",
        "stream_id",
        "top",
        "topic",
    )

    def __init__(self, topic: str, stream_id: str):
        self.topic = topic
        self.stream_id = stream_id
        self.run = 0
        self.head = GENESIS_HASH
        self.top = 0
        self.prefixes = array("Q")
        # Made when first needed: most streams never have anything ahead or wrong.
        self.ahead: dict[int, tuple[str, str]] | None = None
        self.problems: list[Problem] | None = None
        self.chain: list[Problem] | None = None

    @property
    def name(self) -> str:
        return f"{self.topic} stream {self.stream_id}"

    def add(self, seq: int, hash_hex: str, prev_hash: str, where: object) -> None:
        ahead = self.ahead
        if seq <= self.run or (ahead is not None and seq in ahead):
            if seq == self.run:
                same = hash_hex == self.head
            elif seq < self.run:
                same = _prefix(hash_hex) == self.prefixes[seq - 1]
            else:
                same = ahead is not None and hash_hex == ahead[seq][0]
            kind = "duplicate" if same else "conflicting-duplicate"
            self._found(Problem(kind, str(where), f"{self.name}: seq {seq} appears again"))
            return
        if seq < self.top:
            self._found(Problem(
                "reordered", str(where), f"{self.name}: seq {seq} comes after seq {self.top}"
            ))
        if seq > self.top:
            self.top = seq
        if seq != self.run + 1:
            if ahead is None:
                ahead = self.ahead = {}
            ahead[seq] = (hash_hex, prev_hash)
            return
        self._extend(seq, hash_hex, prev_hash)
        while ahead and (self.run + 1) in ahead:
            following = self.run + 1
            self._extend(following, *ahead.pop(following))

    def _found(self, problem: Problem) -> None:
        if self.problems is None:
            self.problems = []
        self.problems.append(problem)

    def _extend(self, seq: int, hash_hex: str, prev_hash: str) -> None:
        if prev_hash != self.head:
            if self.chain is None:
                self.chain = []
            self.chain.append(self._broken(seq, prev_hash, self.head))
        self.run = seq
        self.head = hash_hex
        self.prefixes.append(_prefix(hash_hex))

    def _broken(self, seq: int, prev_hash: str, expected: str) -> Problem:
        return Problem(
            "broken-chain", self.name,
            f"seq {seq} does not chain to seq {seq - 1} (prev_hash "
            f"{prev_hash[:12]}..., expected {expected[:12]}...)",
        )

    def finish(self) -> list[Problem]:
        """The stream's problems: per event in the order met, then missing, then the chain."""
        problems = list(self.problems or ())
        waiting = self.ahead or {}
        ahead = sorted(waiting)
        if ahead:
            gaps: list[tuple[int, int]] = []
            previous = self.run
            for seq in ahead:
                if seq > previous + 1:
                    gaps.append((previous + 1, seq - 1))
                previous = seq
            problems.append(Problem(
                "missing", self.name,
                f"seq {_spans(gaps)} of 1..{self.top} not on the topic",
            ))
        chain = list(self.chain or ())
        for seq in ahead:
            before = waiting.get(seq - 1)
            if before is not None and waiting[seq][1] != before[0]:
                chain.append(self._broken(seq, waiting[seq][1], before[0]))
        return problems + chain


class EventIds:
    """Every event id verify has read, to find one id on two different events, in 32 bytes an
    event (decision 36): the id's 128 bits, a 64-bit fingerprint of (hash, topic, stream) and
    the record's place. Compared once, at the end, by sorting; a copy of the same event in the
    same stream is not a clash (the stream check calls it a duplicate)."""

    def __init__(self) -> None:
        self.high = array("Q")
        self.low = array("Q")
        self.content = array("q")
        self.places = array("Q")

    def __len__(self) -> int:
        return len(self.low)

    def add(self, event_id: int, content: int, place: int) -> None:
        self.high.append(event_id >> 64)
        self.low.append(event_id & _MASK64)
        self.content.append(content)
        self.places.append(place)

    def clashes(self) -> list[tuple[int, int, str]]:
        """``(place, first place, event id)`` of every event whose id an earlier, different
        event carries."""
        low = self.low
        ordered = sorted(low)
        repeated = {a for a, b in pairwise(ordered) if a == b}
        del ordered
        if not repeated:
            return []
        first: dict[tuple[int, int], int] = {}
        clashes = []
        for index, value in enumerate(low):
            if value not in repeated:
                continue
            event_id = (self.high[index], value)
            earlier = first.setdefault(event_id, index)
            if earlier != index and self.content[earlier] != self.content[index]:
                clashes.append((
                    self.places[index], self.places[earlier],
                    str(UUID(int=(event_id[0] << 64) | value)),
                ))
        return clashes


def _spans(gaps: list[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in gaps)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]
