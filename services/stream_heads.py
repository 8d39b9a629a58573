"""A writer's stream heads (decision 57): what each stream's next event chains to, and the
reading rule's heads for a catch-up from a snapshot, both made only for the streams that are
met, not for the hundreds of thousands a long log has."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from events.envelope import GENESIS_HASH
from events.reading import Head


def bare_stream(key: tuple[str, str], partition: int) -> str:
    """The stream id of the reading rule's ``key`` for a stream of ``partition``
    (``events.reading.stream_key`` marks ids past the first partition): a writer writes one
    partition and names its streams by their ids."""
    stream = key[1]
    mark = f"@{partition}"
    return stream[: -len(mark)] if partition and stream.endswith(mark) else stream


class ResumedHeads(dict[tuple[str, str], Head]):
    """The reading rule's heads for a catch-up from a snapshot: a stream the catch-up has not
    met yet is at the snapshot's head. Heads are made only for the streams it meets, not for
    the hundreds of thousands a long log has."""

    def __init__(self, topic: str, resumed: Mapping[str, tuple[int, str]], partition: int = 0):
        super().__init__()
        self._topic = topic
        self._resumed = resumed
        self._partition = partition

    def get(self, key: tuple[str, str], default: Head | None = None) -> Head | None:  # type: ignore[override]
        found = dict.get(self, key)
        if found is None and key[0] == self._topic:
            resumed = self._resumed.get(bare_stream(key, self._partition))
            if resumed is not None:
                return Head(*resumed)
        return default if found is None else found


@dataclass(slots=True)
class StreamHead:
    seq: int = 0
    hash: str = GENESIS_HASH


class StreamHeads:
    """Each stream's head, as the writer chains its next event to it: the heads a snapshot
    gave (``resumed``, read from the snapshot when a stream is asked for) under those the
    writer made or moved since. A long log has hundreds of thousands of streams and a restart
    moves a few of them: none is made until it is asked for (decision 57)."""

    __slots__ = ("_moved", "_resumed")

    def __init__(self, resumed: Mapping[str, tuple[int, str]] | None = None):
        self._resumed: Mapping[str, tuple[int, str]] = {} if resumed is None else resumed
        self._moved: dict[str, StreamHead] = {}

    def get(self, stream_id: str) -> StreamHead | None:
        """The head of ``stream_id`` (the same object until the heads are replaced: an append
        moves it in place), or None for a stream with no event yet."""
        head = self._moved.get(stream_id)
        if head is None:
            resumed = self._resumed.get(stream_id)
            if resumed is not None:
                head = self._moved[stream_id] = StreamHead(*resumed)
        return head

    def setdefault(self, stream_id: str, default: StreamHead) -> StreamHead:
        head = self.get(stream_id)
        if head is None:
            head = self._moved[stream_id] = default
        return head

    def update(self, heads: Iterable[tuple[str, StreamHead]]) -> None:
        self._moved.update(heads)

    def items(self) -> Iterator[tuple[str, StreamHead]]:
        """Every stream's head: the snapshot's streams in its order, then the new ones."""
        moved = self._moved
        for stream_id, (seq, hash_) in self._resumed.items():
            yield stream_id, moved.get(stream_id) or StreamHead(seq, hash_)
        for stream_id, head in moved.items():
            if stream_id not in self._resumed:
                yield stream_id, head

    def pairs(self) -> Mapping[str, tuple[int, str]]:
        """Every stream's (seq, hash) as of now, without copying the snapshot's: what a
        snapshot or a check reads them from (the moved ones copied, they move on)."""
        return ChainMap({sid: (h.seq, h.hash) for sid, h in self._moved.items()},
                        self._resumed)  # type: ignore[arg-type]
