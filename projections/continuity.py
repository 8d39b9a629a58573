"""The worker's own account of where each partition stands, and what it does when Faust's
consumer disagrees with it (decision 69).

The worker notes, per source partition, the next offset it has to apply (the ``positions``
table, written once the tables hold what the batch applied, decision 76). Faust decides
what the consumer delivers: it seeks to the group's committed offsets after each rebalance
and drops what it thinks it has read. Several of its paths were found to pass over events
(decisions 63 and 68, a restart in the many-trials test that delivered offset 58 of a
partition whose position was 11, and decision 77's one record passed over; decision 78
traced such passes to a seek Faust's recovery makes with its flow running), and each one
found left the worker halted on a broken chain or, worse, silently behind. Rather
than trust the consumer, the worker checks what it is given against its positions:

- a delivered record beyond the position, with offsets in between that are not transaction
  markers, follows a gap: the worker reads the committed records in between itself and
  applies them first (:func:`unseen`);
- a held partition whose position does not move while records wait beyond it is read again
  from the position (:func:`stalled`).

A gap is told from a transaction marker by what the consumer's fetcher saw: a services'
append is one Kafka transaction, which ends with a control record (the commit marker) in each
partition it wrote, and a ``read_committed`` consumer delivers no record there. The fetcher
notes the offsets of every control batch it passes (:class:`Markers`); an offset between the
position and a delivered record (or the partition's end) that is neither delivered nor a noted
marker is a record the worker has not seen, and it reads them (decision 77). An aborted
transaction's records also leave such a gap; reading it finds nothing and costs one short read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class Markers:
    """Per source partition (``topic:partition``), the offsets the consumer's fetcher passed
    over as control batches (transaction markers), where no record is to be delivered. Noted
    by the fetcher's thread, asked by the agents' (decision 77)."""

    KEEP = 4096
    """How many noted batches of a partition are kept before those below its position go."""

    def __init__(self) -> None:
        self._noted: dict[str, dict[int, int]] = {}
        """Per source partition: the first offset of each control batch, and the next one."""
        self._keep: dict[str, int] = {}
        """Per source partition: how many noted batches it keeps before the next clearing."""
        self._lock = threading.Lock()

    def note(self, source: str, start: int, stop: int) -> None:
        """The offsets ``start`` to ``stop - 1`` of ``source`` hold a control batch."""
        with self._lock:
            self._noted.setdefault(source, {})[start] = stop

    def cover(self, source: str, start: int, stop: int) -> bool:
        """Whether every offset from ``start`` to ``stop - 1`` is in a noted control batch.
        ``start`` is the partition's position, which never goes back: once a partition has
        many noted batches, those below it are forgotten."""
        with self._lock:
            noted = self._noted.get(source)
            if noted is None:
                return start >= stop
            if len(noted) > self._keep.get(source, self.KEEP):
                noted = self._noted[source] = {
                    first: end for first, end in noted.items() if end > start
                }
                # Batches noted ahead of the position stay: clear again once they doubled
                self._keep[source] = max(self.KEEP, 2 * len(noted))
            while start < stop:
                end = noted.get(start)
                if end is None:
                    return False
                start = end
            return True


def unseen(position: int, offset: int, markers: Markers, source: str) -> range:
    """The offsets between ``position`` (the next offset to apply) and a delivered record at
    ``offset`` that may hold committed records: none when every one is a noted marker."""
    if offset <= position or markers.cover(source, position, offset):
        return range(0)
    return range(position, offset)


def stalled(
    before: Mapping[str, int],
    now: Mapping[str, int],
    ends: Mapping[str, int | None],
    halted: Iterable[str],
    markers: Markers,
) -> list[str]:
    """The source partitions whose position is the same ``now`` as ``before`` (the previous
    look) while offsets other than noted markers lie between it and their end; a halted
    partition waits on purpose."""
    waiting = set(halted)
    stuck = []
    for source, position in sorted(now.items()):
        end = ends.get(source)
        if source in waiting or end is None or before.get(source) != position:
            continue
        if end > position and not markers.cover(source, position, end):
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
