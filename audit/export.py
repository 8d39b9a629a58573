"""Export of the event log, whole or one subject's, for an auditor, an inspector or an archive.

JSON Lines: one envelope per line, the very bytes read from the topic (canonical JSON), so every
hash and hash chain verifies from the export alone. CSV: the envelope's fields in columns
(actor split in two), the payload as canonical JSON in the last one; the hash covers exactly
these values, so it can be recomputed from a CSV line too.

What is exported is what is on the topics, in topic order (each topic in offset order): a
duplicate, a forged or a schema-invalid event is exported as found, since it is evidence. Only a
record that is not an envelope at all cannot be a line: it is skipped and counted.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

import orjson

from events.envelope import Envelope, from_bytes, to_bytes
from events.topics import CONTEXTS, event_topic

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = (
    "event_id",
    "event_type",
    "schema_version",
    "trial_id",
    "stream_id",
    "stream_seq",
    "occurred_at",
    "recorded_at",
    "actor_user_id",
    "actor_role",
    "reason",
    "correlation_id",
    "causation_id",
    "prev_hash",
    "hash",
    "payload",
    "idempotency",
)
PROGRESS_EVERY = 10_000


@dataclass
class ExportStats:
    read: int = 0
    exported: int = 0
    unreadable: list[str] = field(default_factory=list)
    other_trials: int = 0
    """Envelopes of trials other than the one exported, passed over (decision 62)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def select(
    records: Iterable[tuple[str, bytes | None]],
    stats: ExportStats,
    *,
    subject_id: str | None = None,
    progress: Callable[[ExportStats], None] | None = None,
    trial_id: str | None = None,
) -> Iterator[tuple[bytes, Envelope]]:
    """``(wire bytes, envelope)`` of every record that is an envelope, or, for ``subject_id``,
    of the events whose payload names the subject and of the signatures of those events (a
    signature follows the record it signs in the same stream, so it comes after it). With
    ``trial_id``, only that trial's envelopes: two trials of one deployment share subject ids,
    and an export is one trial's (decision 62); the others are counted in
    ``stats.other_trials``."""
    exported: set[str] = set()
    for where, value in records:
        stats.read += 1
        if progress is not None and stats.read % PROGRESS_EVERY == 0:
            progress(stats)
        try:
            envelope = from_bytes(value or b"")
        except ValueError as exc:  # orjson's and pydantic's errors are ValueErrors
            stats.unreadable.append(f"{where}: {type(exc).__name__}")
            continue
        if trial_id is not None and envelope.trial_id != trial_id:
            stats.other_trials += 1
            continue
        if subject_id is not None:
            if not _concerns(envelope, subject_id, exported):
                continue
            exported.add(str(envelope.event_id))
        stats.exported += 1
        yield value or b"", envelope


def _concerns(envelope: Envelope, subject_id: str, exported: set[str]) -> bool:
    if envelope.event_type == "RecordSigned":
        return str(envelope.payload.get("signed_event_id")) in exported
    return envelope.payload.get("subject_id") == subject_id


def jsonl_line(value: bytes, envelope: Envelope) -> bytes:
    """The record as read, on one line. Canonical JSON never holds a raw line break; a record
    that does (written by hand) is re-serialised canonically, which keeps its hash valid."""
    line = value if b"\n" not in value and b"\r" not in value else to_bytes(envelope)
    return line + b"\n"


def csv_row(envelope: Envelope) -> list[str]:
    body = envelope.model_dump(mode="json")
    actor = body.pop("actor")
    body |= {"actor_user_id": actor["user_id"], "actor_role": actor["role"]}
    for name in ("payload", "idempotency"):
        if body[name] is not None:
            body[name] = orjson.dumps(body[name], option=orjson.OPT_SORT_KEYS).decode()
    return ["" if body[name] is None else str(body[name]) for name in CSV_COLUMNS]


def write_jsonl(selected: Iterable[tuple[bytes, Envelope]], out: BinaryIO) -> None:
    for value, envelope in selected:
        out.write(jsonl_line(value, envelope))


def write_csv(selected: Iterable[tuple[bytes, Envelope]], out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for _value, envelope in selected:
        writer.writerow(csv_row(envelope))


def envelope_from_csv(row: dict[str, str]) -> Envelope:
    """The envelope a CSV line was written from (its hash can be checked with
    ``hash_is_valid``)."""
    fields: dict = {name: (value if value != "" else None) for name, value in row.items()}
    fields["actor"] = {"user_id": fields.pop("actor_user_id"), "role": fields.pop("actor_role")}
    fields["payload"] = orjson.loads(fields["payload"])
    if fields.get("idempotency") is not None:
        fields["idempotency"] = orjson.loads(fields["idempotency"])
    return Envelope.model_validate(fields)


def wire_records(settings) -> Iterator[tuple[str, bytes | None]]:
    """Every record of every event topic, each topic read to its end in offset order."""
    from infra.kafka_io import read_to_end

    topics = [event_topic(context, settings.namespace) for context in CONTEXTS]
    for position, _key, value in read_to_end(settings.bootstrap_servers, topics):
        yield f"{position.topic}@{position.partition}:{position.offset}", value
