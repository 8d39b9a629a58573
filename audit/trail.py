"""The audit trail of a subject, a lot or a cohort, read from the event log itself.

21 CFR 11.10(e) asks for secure, computer-generated, time-stamped audit trails that record the
date and time of entries and actions that create, modify or delete records, where "record
changes shall not obscure previously recorded information"; 21 CFR 11.50 asks that a signed
record show the signer's printed name, the date and time and the meaning of the signature.
ICH E6(R3) asks the same of trial data: attributable, contemporaneous, with changes explained.

Each event is one row: who (actor and role), when (recorded and business time), why (the
envelope's reason) and what (a compact summary of the payload). A correction (a payload with
``previous`` and ``new``) is a row of its own that lists what it changed; the row of the record
it corrects is always kept. An electronic signature (``RecordSigned``) is not a row: it is shown
on the row of the record it signs, and flagged when its hash is not that record's.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from events.enrollment import SubjectRegistered
from events.registry import EventPayload, Recorded
from events.signatures import RecordSigned
from events.topics import WRITERS

SELECTION_FIELDS = ("subject_id", "lot_id", "cohort_id")
SIGNATURE_MISMATCH = "signature does not match the record"


class SelectionError(ValueError):
    """The selection asked for cannot be made (nothing selected, a window that ends first)."""


@dataclass(frozen=True)
class Selection:
    """What to audit: the events whose payload names every given id, recorded (system time)
    within ``start``..``end`` inclusive when given."""

    subject_id: str | None = None
    lot_id: str | None = None
    cohort_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    user_id: str | None = None
    """A user: every event they recorded, and every change to their access."""

    def __post_init__(self) -> None:
        if not self.keys() and self.user_id is None:
            raise SelectionError("choose what to audit: a subject, a lot, a cohort or a user")
        for name, moment in (("start", self.start), ("end", self.end)):
            if moment is not None and moment.tzinfo is None:
                raise SelectionError(f"the {name} of the window {moment} has no time zone")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise SelectionError(f"the window starts ({self.start}) after it ends ({self.end})")

    def keys(self) -> dict[str, str]:
        values = {"subject_id": self.subject_id, "lot_id": self.lot_id, "cohort_id": self.cohort_id}
        return {name: value for name, value in values.items() if value is not None}

    def names(self, payload: EventPayload) -> bool:
        return all(getattr(payload, name, None) == value for name, value in self.keys().items())

    def selects(self, recorded: Recorded) -> bool:
        if not self.names(recorded.payload):
            return False
        return self.user_id is None or self.user_id in (
            recorded.envelope.actor.user_id,
            getattr(recorded.payload, "user_id", None),
        )

    def in_window(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and not self.after_end(moment)

    def after_end(self, moment: datetime) -> bool:
        return self.end is not None and moment > self.end

    def describe(self) -> str:
        keys = self.keys().items()
        text = ", ".join(f"{name.removesuffix('_id')} {value}" for name, value in keys)
        if self.user_id is not None:
            text = ", ".join(filter(None, (text, f"user {self.user_id}")))
        if self.start is not None:
            text += f", recorded from {iso(self.start)}"
        if self.end is not None:
            text += f", recorded until {iso(self.end)}"
        return text


@dataclass(frozen=True)
class SignatureMark:
    """The manifestation of one electronic signature on the record it signs (21 CFR 11.50).
    ``problem`` is None when the signature's hash is the record's."""

    signature_event_id: str
    signer_id: str
    printed_name: str
    role: str
    meaning: str
    signed_at: datetime
    recorded_at: datetime
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "printed_name": self.printed_name,
            "signer_id": self.signer_id,
            "role": self.role,
            "meaning": self.meaning,
            "signed_at": iso(self.signed_at),
            "signature_event_id": self.signature_event_id,
            "valid": self.valid,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class TrailRow:
    recorded_at: datetime
    occurred_at: datetime
    context: str
    stream_id: str
    stream_seq: int
    event_type: str
    event_id: str
    user_id: str
    role: str
    reason: str | None
    subject_id: str | None
    hash: str
    payload: dict[str, Any]
    summary: str
    changes: dict[str, dict[str, Any]] | None
    signatures: tuple[SignatureMark, ...] = ()

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(mark.problem for mark in self.signatures if mark.problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recorded_at": iso(self.recorded_at),
            "occurred_at": iso(self.occurred_at),
            "context": self.context,
            "stream_id": self.stream_id,
            "stream_seq": self.stream_seq,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "role": self.role,
            "reason": self.reason,
            "summary": self.summary,
            "changes": self.changes,
            "signatures": [mark.as_dict() for mark in self.signatures],
            "flags": list(self.flags),
            "subject_id": self.subject_id,
            "hash": self.hash,
            "payload": self.payload,
        }


@dataclass
class Trail:
    selection: Selection
    rows: list[TrailRow] = field(default_factory=list)
    sites: dict[str, str] = field(default_factory=dict)
    """subject_id -> site_id, from every ``SubjectRegistered`` read (inside the window or not)."""
    problems: list[str] = field(default_factory=list)
    """What the trail found but cannot show on a row (a signature of a record not in the log)."""


def build_trail(events: Iterable[Recorded], selection: Selection) -> Trail:
    """The rows of ``selection`` in recorded-time order, signatures attached to the records
    they sign. ``events`` are every readable event of every context (signatures name no subject,
    lot or cohort: they are found by the id of the event they sign)."""
    records: list[Recorded] = []
    signatures: dict[str, list[Recorded]] = defaultdict(list)
    trail = Trail(selection)
    for recorded in events:
        payload = recorded.payload
        if isinstance(payload, RecordSigned):
            signatures[str(payload.signed_event_id)].append(recorded)
            continue
        if isinstance(payload, SubjectRegistered):
            trail.sites[payload.subject_id] = payload.site_id
        records.append(recorded)
    known = {str(recorded.envelope.event_id) for recorded in records}
    # sorted() is stable: events recorded at the same instant keep their order on the topic.
    for recorded in sorted(records, key=lambda r: r.envelope.recorded_at):
        envelope = recorded.envelope
        if not (selection.selects(recorded) and selection.in_window(envelope.recorded_at)):
            continue
        marks = tuple(
            _mark(signature, recorded)
            for signature in signatures.get(str(envelope.event_id), [])
            if not selection.after_end(signature.envelope.recorded_at)
        )
        trail.rows.append(_row(recorded, marks, omit=selection.keys()))
    streams = {row.stream_id for row in trail.rows}
    for signed_id, found in signatures.items():
        for signature in found:
            if signed_id in known or signature.envelope.stream_id not in streams:
                continue
            if selection.in_window(signature.envelope.recorded_at):
                trail.problems.append(
                    f"signature {signature.envelope.event_id} in stream "
                    f"{signature.envelope.stream_id} signs event {signed_id}, "
                    "which is not in the log"
                )
    return trail


def changes_of(payload: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """A correction's changes, field by field: ``{field: {"from": old, "to": new}}`` for the
    fields whose values differ; None when the payload is not a correction."""
    previous, new = payload.get("previous"), payload.get("new")
    if not (isinstance(previous, dict) and isinstance(new, dict)):
        return None
    names = [*previous, *(name for name in new if name not in previous)]
    return {
        name: {"from": previous.get(name), "to": new.get(name)}
        for name in names
        if previous.get(name) != new.get(name)
    }


def summarize(
    payload: dict[str, Any],
    changes: dict[str, dict[str, Any]] | None = None,
    omit: Collection[str] = (),
) -> str:
    """``name=value`` pairs of the payload, empty values and the ``omit`` fields (the ids the
    trail was selected by) left out; a correction shows what it changed (``grade 3 -> 2``)
    instead of its two full assessments."""
    parts = []
    for name, value in payload.items():
        if name in omit or (changes is not None and name in ("previous", "new")):
            continue
        if value is None or value == [] or value == {}:
            continue
        parts.append(f"{name}={_text(value)}")
    if changes is not None:
        parts += [
            f"{name} {_text(change['from'])} -> {_text(change['to'])}"
            for name, change in changes.items()
        ]
        if not changes:
            parts.append("no assessed value changed")
    return "; ".join(parts)


def _mark(signature: Recorded, signed: Recorded) -> SignatureMark:
    payload = signature.payload
    if not isinstance(payload, RecordSigned):  # only RecordSigned events are kept as signatures
        raise TypeError(f"not a signature: {signature.envelope.event_type}")
    envelope = signed.envelope
    problem = None
    if payload.signed_hash != envelope.hash:
        problem = (
            f"{SIGNATURE_MISMATCH}: it signs hash {payload.signed_hash[:12]}..., "
            f"the record's hash is {envelope.hash[:12]}..."
        )
    elif payload.signed_event_type != envelope.event_type:
        problem = (
            f"{SIGNATURE_MISMATCH}: it signs a {payload.signed_event_type}, "
            f"the record is a {envelope.event_type}"
        )
    return SignatureMark(
        signature_event_id=str(signature.envelope.event_id),
        signer_id=payload.signer_id,
        printed_name=payload.printed_name,
        role=payload.role,
        meaning=payload.meaning,
        signed_at=payload.signed_at,
        recorded_at=signature.envelope.recorded_at,
        problem=problem,
    )


def _row(recorded: Recorded, marks: tuple[SignatureMark, ...], omit: Collection[str]) -> TrailRow:
    envelope = recorded.envelope
    payload = recorded.payload.model_dump(mode="json")
    if "token_hash" in payload:
        # A trail is printed and shared; who got a token matters, not its hash.
        payload["token_hash"] = "(kept on the access log)"
    changes = changes_of(payload)
    return TrailRow(
        recorded_at=envelope.recorded_at,
        occurred_at=envelope.occurred_at,
        context=recorded.payload.context,
        stream_id=envelope.stream_id,
        stream_seq=envelope.stream_seq,
        event_type=envelope.event_type,
        event_id=str(envelope.event_id),
        user_id=envelope.actor.user_id,
        role=envelope.actor.role,
        reason=envelope.reason,
        subject_id=getattr(recorded.payload, "subject_id", None),
        hash=envelope.hash,
        payload=payload,
        summary=summarize(payload, changes, omit),
        changes=changes,
        signatures=marks,
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


# ---------------------------------------------------------------- renderings

CSV_COLUMNS = (
    "recorded_at",
    "occurred_at",
    "context",
    "stream_id",
    "stream_seq",
    "event_type",
    "event_id",
    "user_id",
    "role",
    "reason",
    "summary",
    "changes",
    "signatures",
    "flags",
)


def to_json(rows: list[TrailRow]) -> bytes:
    return orjson.dumps(
        [row.as_dict() for row in rows], option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    )


def to_csv(rows: list[TrailRow]) -> str:
    """One line per event; changes, signatures and flags as compact JSON (empty when none)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        document = row.as_dict()
        for name in ("changes", "signatures", "flags"):
            document[name] = orjson.dumps(document[name]).decode() if document[name] else ""
        writer.writerow(["" if document[c] is None else document[c] for c in CSV_COLUMNS])
    return out.getvalue()


_TABLE = (
    ("RECORDED (UTC)", 19),
    ("OCCURRED (UTC)", 19),
    ("CONTEXT", 13),
    ("STREAM #SEQ", 24),
    ("EVENT", 26),
    ("BY", 30),
    ("REASON", 28),
    ("SUMMARY", 60),
)


def to_table(rows: list[TrailRow]) -> str:
    """Terminal columns, long values cut; below a row: what a correction changed, each signature
    and each flag, indented."""
    widths = [width for _title, width in _TABLE]
    lines = [_columns([title for title, _width in _TABLE], widths)]
    indent = " " * (widths[0] + widths[1] + 4)
    for row in rows:
        cells = [
            _clock(row.recorded_at),
            _clock(row.occurred_at),
            row.context,
            f"{row.stream_id} #{row.stream_seq}",
            row.event_type,
            f"{row.user_id} ({row.role})",
            row.reason or "",
            row.summary,
        ]
        lines.append(_columns(cells, widths))
        if row.reason and len(row.reason) > widths[6]:
            lines.append(f"{indent}reason: {' '.join(row.reason.split())}")
        for name, change in (row.changes or {}).items():
            lines.append(
                f"{indent}changed {name}: {_text(change['from'])} -> {_text(change['to'])}"
            )
        for mark in row.signatures:
            lines.append(
                f"{indent}signed by {mark.printed_name} ({mark.signer_id}, {mark.role}), "
                f"meaning {mark.meaning}, at {iso(mark.signed_at)}"
            )
        lines += [f"{indent}! {flag}" for flag in row.flags]
    if not rows:
        lines.append("(no events)")
    return "\n".join(lines) + "\n"


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _columns(cells: list[str], widths: list[int]) -> str:
    cut = [_cut(cell, width) for cell, width in zip(cells, widths, strict=True)]
    return "  ".join(cell.ljust(width) for cell, width in zip(cut, widths, strict=True)).rstrip()


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------- reading the topics


def read_trail(
    settings, selection: Selection, stats, trial_id: str | None = None,
    trials: Collection[str] = (),
) -> Trail:
    """The trail of ``selection`` from every event topic (kafka-python, read to the end).
    ``stats`` (a ``audit.replay.ReplayStats``) counts what was read and what was unreadable.
    ``trial_id``: only that trial's events, of the deployment's ``trials`` (decision 62); None
    reads every trial's."""
    from audit.replay import recorded_events, trial_events

    if trial_id is None:
        return build_trail(recorded_events(settings, WRITERS, stats), selection)
    return build_trail(trial_events(settings, WRITERS, stats, trial_id, trials), selection)
