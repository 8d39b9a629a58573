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

The worker applies events in batches (:class:`Batch`): each event is applied as above, but to
an :class:`Overlay` of each table, and at the end of the batch each touched key's final value
is written to its table once, with the offset of the last event of the batch applied to it.
Those writes are a subsequence of the writes event by event would have made (the last one per
key), so whatever prefix of them survives a crash, the markers still say where each key
resumes (decision 46).

Each source partition's position (the next offset to apply) is the worker's own account of
where it stands: it reads the log from there when its consumer passes over records (decision
69). Prefixes of different changelogs survive independently, so a position is written only
once the changelogs hold the batch's other writes (decision 76): whatever position survives,
everything below it is in the tables.

The functions here take plain mappings, so the rules are tested without a broker; the Faust
agent passes its tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Final, TypedDict, TypeVar

from events.reading import Head, Where, next_in_stream, stream_key
from events.registry import Recorded
from projections.base import (
    FoldError,
    Projection,
    State,
    apply_to,
    scope,
    table_keys,
    trial_states,
)


class Stored(TypedDict):
    """A table value: ``{"state": <the projection's state>, "at": {"topic:partition": offset}}``."""

    state: State
    at: dict[str, int]


class DeadLettered(TypedDict):
    """Poison events counted for one partition, and the offset of the last one counted."""

    count: int
    through: int


V = TypeVar("V")

_DELETED: Final = object()
"""What an overlay holds for a key deleted in the batch."""
_UNTOUCHED: Final = object()


class Overlay(MutableMapping[str, V]):
    """A table as one batch sees it: reads go through to the table, sets and deletes stay here
    until :meth:`flush` writes each touched key's last value to the table, once."""

    def __init__(self, table: MutableMapping[str, V]) -> None:
        self.table = table
        self.written: dict[str, object] = {}
        """Per key set or deleted in the batch: its value now, or ``_DELETED``."""

    def __getitem__(self, key: str) -> V:
        value = self.written.get(key, _UNTOUCHED)
        if value is _UNTOUCHED:
            return self.table[key]
        if value is _DELETED:
            raise KeyError(key)
        return value  # type: ignore[return-value]  # only a V or _DELETED is ever stored

    def get(self, key: str, default: Any = None) -> Any:
        value = self.written.get(key, _UNTOUCHED)
        if value is _UNTOUCHED:
            return self.table.get(key, default)
        return default if value is _DELETED else value

    def __contains__(self, key: object) -> bool:
        value = self.written.get(key, _UNTOUCHED) if isinstance(key, str) else _UNTOUCHED
        if value is _UNTOUCHED:
            return key in self.table
        return value is not _DELETED

    def __setitem__(self, key: str, value: V) -> None:
        self.written[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.written[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        for key in self.table:
            if key not in self.written:
                yield key
        for key, value in self.written.items():
            if value is not _DELETED:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> int:
        """Write each touched key's value to the table (a key created and deleted in the batch
        is not written at all); the number of table writes."""
        writes = 0
        table = self.table
        for key, value in self.written.items():
            if value is _DELETED:
                if key in table:
                    del table[key]
                    writes += 1
            else:
                table[key] = value  # type: ignore[assignment]  # not _DELETED: a V
                writes += 1
        self.written.clear()
        return writes


class Batch:
    """Events applied together: to overlays of the projections' tables and of the applied
    stream heads, written to the tables at :meth:`flush`, with each source partition's next
    position noted, written at :meth:`advance` once the flushed writes are durable."""

    def __init__(
        self,
        tables: Mapping[str, MutableMapping[str, Stored]],
        applied: MutableMapping[str, list[Any]],
        positions: MutableMapping[str, int],
    ) -> None:
        self.tables = {name: Overlay(table) for name, table in tables.items()}
        self.applied = Overlay(applied)
        self.positions = positions
        self.passed: dict[str, int] = {}
        """Per source partition, the next offset to apply once this batch is flushed."""

    def apply(
        self,
        projections: Iterable[Projection],
        source: str,
        offset: int,
        recorded: Recorded,
        errors: list[str] | None = None,
    ) -> bool:
        """:func:`apply_once` on the batch's overlays."""
        return apply_once(projections, self.tables, self.applied, source, offset, recorded,
                          errors)

    def pass_over(self, source: str, offset: int) -> None:
        """The record at ``offset`` of ``source`` is done with (applied, a copy, quarantined).
        A position only moves forward: a copy of an earlier record, which Kafka delivers again
        after a rebalance, leaves everything below the position applied."""
        self.passed[source] = max(self.position(source), offset + 1)

    def flush(self) -> int:
        """Write what the batch changed to the projections' keys and the streams' heads; the
        number of table writes. The positions wait for :meth:`advance`."""
        writes = sum(overlay.flush() for overlay in self.tables.values())
        writes += self.applied.flush()
        return writes

    def advance(self, before: Callable[[str], object] | None = None) -> int:
        """Write each source partition's next position (``before(source)`` called ahead of
        each write); the number of writes. The caller advances only once the changelogs hold
        what :meth:`flush` wrote (decision 76): each table is its own changelog, so a position
        written with them could survive a crash that lost an earlier key or head, and a reader
        that resumes from a position would then never apply what it covers."""
        for source, position in self.passed.items():
            if before is not None:
                before(source)
            self.positions[source] = position
        writes = len(self.passed)
        self.passed.clear()
        return writes

    def position(self, source: str) -> int:
        """The next offset of ``source`` to apply, counting what this batch passed over."""
        return self.passed.get(source, self.positions.get(source, 0))


def state_of(stored: Stored) -> State:
    return stored["state"]


def states(table: Mapping[str, Stored], trial_id: str | None = None) -> dict[str, State]:
    """The projection's states (what its ``render`` takes) from a table of stored values; with
    ``trial_id``, that trial's from a table of trial-scoped keys (the worker's, decision 61),
    keyed by the projection's own keys."""
    every = {key: stored["state"] for key, stored in table.items()}
    return every if trial_id is None else trial_states(every, trial_id)


class TrialTable(Mapping[str, Stored]):
    """One trial's part of a worker's table, read by the projection's own keys (the trial's
    scope added to each key read and stripped from each key listed): what a view of that trial
    reads, so that it never sees another trial's keys and renders what a one-trial deployment
    renders (decision 61)."""

    def __init__(self, table: Mapping[str, Stored], trial_id: str) -> None:
        self.table = table
        self.prefix = scope(trial_id)

    def __getitem__(self, key: str) -> Stored:
        return self.table[self.prefix + key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(self.prefix + key, default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.prefix + key in self.table

    def __iter__(self) -> Iterator[str]:
        prefix, cut = self.prefix, len(self.prefix)
        return (key[cut:] for key in self.table if key.startswith(prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def items(self) -> Iterator[tuple[str, Stored]]:  # type: ignore[override]
        # One pass over the table's items, not a read per key.
        prefix, cut = self.prefix, len(self.prefix)
        return ((key[cut:], value) for key, value in self.table.items()
                if key.startswith(prefix))

    @property
    def keys_from(self) -> Callable[[str], Iterator[str]] | None:
        """The trial's keys from a key on, in key order, when the table keeps its keys in
        order (``keys_from`` of an on-disk table, projections/faust_tables.py); else None."""
        ordered = getattr(self.table, "keys_from", None)
        if ordered is None:
            return None
        prefix, cut = self.prefix, len(self.prefix)

        def keys_from(start: str) -> Iterator[str]:
            for key in ordered(prefix + start):
                if not key.startswith(prefix):
                    return
                yield key[cut:]

        return keys_from


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
    topic, partition = source.rsplit(":", 1)
    envelope = recorded.envelope
    # Streams are numbered per context: the topic is part of the stream's identity; past the
    # first partition, so is the partition (two trials may both have a stream "DL1").
    named_topic, stream_id = stream_key(Where(topic, int(partition), offset), envelope.stream_id)
    stream = f"{named_topic}|{stream_id}"
    seq, at, head_hash = _head(applied.get(stream))
    redelivered = offset <= at
    if not redelivered and not next_in_stream(Head(seq, head_hash), envelope):
        return False
    for projection in projections:
        table = tables[projection.name]
        for scoped, key in table_keys(projection, recorded):  # scoped by the event's trial
            stored = table.get(scoped)
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
                table[scoped] = {"state": applied_state, "at": marks}
            elif scoped in table:
                # The key's state is over. Should this deletion be lost in a crash, the events
                # before it are redelivered too and end in the same deletion.
                del table[scoped]
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
