"""Applying each event once to the live projections, whatever Kafka redelivers.

Kafka delivers at least once, in two ways the worker must tell apart:

* a **duplicate in the log**: the same event appended twice (a producer retry), at a later
  offset. The stream's sequence number gives it away: ``stream_seq`` not above the last one
  applied for that stream, at an offset past the one that applied it. It is skipped.
* a **redelivery after a crash**: the worker died after some of its table writes reached their
  changelogs and before its consumer offset was committed, so it reads the same offsets again.
  Which writes survived differs from table to table and from key to key (each is its own
  changelog message), so the stream's sequence alone cannot say whether an event's effect is
  in a given table. Each stored value therefore carries the offset, per source partition, of
  the last event applied to it, and a redelivered event is applied to exactly the keys that
  have not seen it.

One changelog partition keeps its messages in order, so what survives of one key's writes is
always a prefix of them: the key's marker tells where to resume.

One case stays out of reach: a duplicate in the log that is redelivered after a crash, after
its stream has moved on, to a key whose later write was lost. Only the latest sequence number
of a stream is kept (with the offset that applied it), so that duplicate cannot be told from
the original there. The services' transactional, idempotent producers do not write
duplicates; only a foreign producer could.

The functions here take plain mappings, so the rules are tested without a broker; the Faust
agent passes its tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TypedDict

from events.reading import Head, next_in_stream
from events.registry import Recorded
from projections.base import FoldError, Projection, State, apply_to, keys


class Stored(TypedDict):
    """A table value: ``{"state": <the projection's state>, "at": {"topic:partition": offset}}``."""

    state: State
    at: dict[str, int]


class DeadLettered(TypedDict):
    """Poison events counted for one partition, and the offset of the last one counted."""

    count: int
    through: int


def state_of(stored: Stored) -> State:
    return stored["state"]


def states(table: MutableMapping[str, Stored]) -> dict[str, State]:
    """The projection's states (what its ``render`` takes) from a table of stored values."""
    return {key: stored["state"] for key, stored in table.items()}


def apply_once(
    projections: Iterable[Projection],
    tables: Mapping[str, MutableMapping[str, Stored]],
    applied: MutableMapping[str, list[Any]],
    source: str,
    offset: int,
    recorded: Recorded,
    errors: list[str] | None = None,
) -> bool:
    """Apply ``recorded``, read at ``offset`` of partition ``source`` (``topic:partition``),
    to every projection in ``projections`` once; False when it is a copy in the log. An event
    that does not follow its stream's head raises ``events.reading.Unreadable`` (the reading
    rule every reader applies); an event a fold cannot take is skipped for that key, with the
    ``FoldError`` message in ``errors``."""
    topic = source.rsplit(":", 1)[0]
    envelope = recorded.envelope
    # Streams are numbered per context: the topic is part of the stream's identity.
    stream = f"{topic}|{envelope.stream_id}"
    seq, at, head_hash = _head(applied.get(stream))
    redelivered = offset <= at
    if not redelivered and not next_in_stream(Head(seq, head_hash), envelope):
        return False
    for projection in projections:
        table = tables[projection.name]
        for key in keys(projection, recorded):
            stored = table.get(key)
            if stored is not None and stored["at"].get(source, -1) >= offset:
                continue  # this key's write survived the crash
            state = stored["state"] if stored is not None else projection.initial(key)
            try:
                applied_state = apply_to(projection, state, recorded)
            except FoldError as exc:
                if errors is not None:
                    errors.append(str(exc))
                continue
            if applied_state is not None:
                marks = dict(stored["at"]) if stored is not None else {}
                marks[source] = offset
                table[key] = {"state": applied_state, "at": marks}
            elif key in table:
                # The key's state is over. Should this deletion be lost in a crash, the events
                # before it are redelivered too and end in the same deletion.
                del table[key]
    if not redelivered:
        applied[stream] = [envelope.stream_seq, offset, envelope.hash]
    return True


def _head(value: list[Any] | None) -> tuple[int, int, str]:
    """The stream's last applied sequence, the offset that applied it and its hash."""
    if not value:
        return 0, -1, Head().hash
    seq, at, *rest = value
    return seq, at, (rest[0] if rest else Head().hash)


def count_dead_letter(
    dead_lettered: MutableMapping[str, DeadLettered], source: str, offset: int
) -> bool:
    """Count the poison event at ``offset`` of ``source``; False when it was counted before (a
    redelivery after a crash). Count and offset share one value, so they survive together;
    had the count been lost and the dead letter sent, it is sent again: the dead-letter topic
    gets each poison event at least once."""
    seen = dead_lettered.get(source) or DeadLettered(count=0, through=-1)
    if offset <= seen["through"]:
        return False
    dead_lettered[source] = {"count": seen["count"] + 1, "through": offset}
    return True


def dead_letter_counts(dead_lettered: Mapping[str, DeadLettered]) -> dict[str, int]:
    """Events dead-lettered per topic, from the per-partition counts."""
    counts: dict[str, int] = {}
    for source, seen in sorted(dead_lettered.items()):
        topic = source.rsplit(":", 1)[0]
        counts[topic] = counts.get(topic, 0) + seen["count"]
    return counts
