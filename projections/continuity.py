"""The worker's own account of where each partition stands, and what it does when Faust's
consumer disagrees with it (decision 69).

The worker notes, per source partition, the next offset it has to apply (the ``positions``
table, written with the tables in every batch). Faust decides what the consumer delivers: it
seeks to the group's committed offsets after each rebalance and drops what it thinks it has
read. Several of its paths were found to pass over events (decisions 63 and 68, and a restart
in the many-trials test that delivered offset 58 of a partition whose position was 11), and
each one found left the worker halted on a broken chain or, worse, silently behind. Rather
than trust the consumer, the worker checks what it is given against its positions:

- a delivered record further beyond the position than a commit marker explains is a gap: the
  worker reads the committed records in between itself and applies them first
  (:func:`unseen`);
- a held partition whose position does not move while records wait beyond it is read again
  from the position (:func:`stalled`).

A services' append is one Kafka transaction, which ends with one commit marker in each
partition it wrote. So between the last record applied (offset ``p - 1``) and the next
committed record, at most one offset (``p``, a marker) is unseen by a ``read_committed``
consumer; a gap of two or more holds a missed record, or an aborted transaction's records and
marker, or two writers' markers interleaved. Reading the gap tells which.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MARKER_GAP = 1
"""The offsets a ``read_committed`` reader sees no record at between two transactions' records
in a partition: the first one's commit marker."""


def unseen(position: int, offset: int) -> range:
    """The offsets between ``position`` (the next offset to apply) and a delivered record at
    ``offset`` that may hold committed records: none when at most a commit marker lies
    between."""
    if offset - position > MARKER_GAP:
        return range(position, offset)
    return range(0)


def stalled(
    before: Mapping[str, int],
    now: Mapping[str, int],
    ends: Mapping[str, int | None],
    halted: Iterable[str],
) -> list[str]:
    """The source partitions whose position is the same ``now`` as ``before`` (the previous
    look) while their end lies more than a commit marker beyond it; a halted partition waits on
    purpose."""
    waiting = set(halted)
    stuck = []
    for source, position in sorted(now.items()):
        end = ends.get(source)
        if source in waiting or end is None or before.get(source) != position:
            continue
        if end - position > MARKER_GAP:
            stuck.append(source)
    return stuck


@dataclass(frozen=True)
class Missed:
    """A record of a gap, read by the worker itself: it goes through the fold as the
    consumer's events do (``event.message`` and ``event.value``)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None

    @property
    def message(self) -> Missed:
        return self
