"""Immutable maps and sets that share their structure: the deciders' states are values, and
``evolve`` returns a new state for every event, so copying a map of 20,000 subjects to change
one of them made a service's start-up grow with the square of its history (issue 12).

``PMap`` and ``PSet`` wrap rpds' hash array mapped tries (``HashTrieMap``, ``HashTrieSet``):
a changed copy costs O(log n) and shares everything else with the original, which stays as it
was. They read like any ``Mapping`` or ``Set`` and compare equal to a ``dict`` or a
``frozenset`` with the same contents, so tests can build and compare states with plain data.
``put``, ``drop`` and ``add`` take any mapping or set (a test may start a state from a dict)
and always return the persistent kind.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence, Set
from operator import itemgetter
from typing import Any, TypeVar, overload

from rpds import HashTrieMap, HashTrieSet

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T", bound=Hashable)

_MISSING: Any = object()


class PMap(Mapping[K, V]):
    """An immutable mapping; ``set`` and ``remove`` return a changed copy in O(log n).

    It iterates in insertion order, as a dict does (a key set again keeps its place), because
    deciders and views that list a state's cohorts or lots were written against dicts. The
    order is a second trie (key -> rank); it is sorted on the first iteration of a map and kept
    with it, so folding events never pays for it."""

    __slots__ = ("_keys", "_next", "_rank", "_trie")
    _trie: HashTrieMap[K, V]
    _rank: HashTrieMap[K, int]
    _next: int
    _keys: list[K] | None

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        if isinstance(items, PMap):
            self._trie, self._rank, self._next = items._trie, items._rank, items._next
            self._keys = items._keys
            return
        pairs = dict(items)
        self._trie = HashTrieMap(pairs)
        self._rank = HashTrieMap((key, rank) for rank, key in enumerate(pairs))
        self._next = len(pairs)
        self._keys = list(pairs)

    @classmethod
    def _of(cls, trie: HashTrieMap[K, V], rank: HashTrieMap[K, int], next_: int) -> PMap[K, V]:
        new = cls.__new__(cls)
        new._trie, new._rank, new._next, new._keys = trie, rank, next_, None
        return new

    def set(self, key: K, value: V) -> PMap[K, V]:
        if key in self._rank:
            changed = self._of(self._trie.insert(key, value), self._rank, self._next)
            changed._keys = self._keys  # same keys, same order
            return changed
        return self._of(
            self._trie.insert(key, value), self._rank.insert(key, self._next), self._next + 1
        )

    def remove(self, key: K) -> PMap[K, V]:
        """Without ``key`` (the same map when it is absent)."""
        if key not in self._rank:
            return self
        return self._of(self._trie.discard(key), self._rank.discard(key), self._next)

    def __getitem__(self, key: K) -> V:
        return self._trie[key]

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T, /) -> V | T: ...
    def get(self, key: K, default: Any = None, /) -> Any:
        found = self._trie.get(key, _MISSING)
        return default if found is _MISSING else found

    def __contains__(self, key: object) -> bool:
        return key in self._trie

    def __iter__(self) -> Iterator[K]:
        return iter(self._ordered())

    def _ordered(self) -> list[K]:
        if self._keys is None:
            self._keys = [key for key, _rank in sorted(self._rank.items(), key=itemgetter(1))]
        return self._keys

    def __len__(self) -> int:
        return len(self._trie)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PMap):
            return bool(self._trie == other._trie)
        if isinstance(other, Mapping):
            return len(self) == len(other) and all(
                key in other and other[key] == value for key, value in self._trie.items()
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # values need not be hashable

    def __repr__(self) -> str:
        return f"PMap({dict(self.items())!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PMap, (dict(self.items()),))


class PSet(Set[T]):
    """An immutable set; ``add`` and ``remove`` return a changed copy in O(log n)."""

    __slots__ = ("_trie",)
    _trie: HashTrieSet[T]

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._trie = items._trie if isinstance(items, PSet) else HashTrieSet(items)

    @classmethod
    def _of(cls, trie: HashTrieSet[T]) -> PSet[T]:
        new = cls.__new__(cls)
        new._trie = trie
        return new

    def add(self, item: T) -> PSet[T]:
        return self._of(self._trie.insert(item))

    def remove(self, item: T) -> PSet[T]:
        """Without ``item`` (the same set when it is absent)."""
        return self._of(self._trie.discard(item))

    def __contains__(self, item: object) -> bool:
        return item in self._trie

    def __iter__(self) -> Iterator[T]:
        return iter(self._trie)

    def __len__(self) -> int:
        return len(self._trie)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PSet):
            return bool(self._trie == other._trie)
        if isinstance(other, Set):
            return len(self) == len(other) and all(item in other for item in self._trie)
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash()

    def __repr__(self) -> str:
        return f"PSet({set(self._trie)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PSet, (list(self._trie),))


class PQueue(Sequence[T]):
    """An immutable first-come list without repeats (a waiting list): ``append`` and
    ``remove`` in O(log n), membership in O(1); positions are counted on the first positional
    read of a queue and kept with it. It compares equal to a tuple or list in the same order.
    Appending an item already in it leaves it where it is."""

    __slots__ = ("_items",)
    _items: PMap[T, None]

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._items = items._items if isinstance(items, PQueue) else PMap(
            (item, None) for item in items
        )

    @classmethod
    def _of(cls, items: PMap[T, None]) -> PQueue[T]:
        new = cls.__new__(cls)
        new._items = items
        return new

    def append(self, item: T) -> PQueue[T]:
        return self if item in self._items else self._of(self._items.set(item, None))

    def remove(self, item: T) -> PQueue[T]:
        """Without ``item`` (the same queue when it is absent)."""
        return self._of(self._items.remove(item)) if item in self._items else self

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...
    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        ordered = self._items._ordered()
        return tuple(ordered[index]) if isinstance(index, slice) else ordered[index]

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        ordered = self._items._ordered()
        return ordered.index(value, start, len(ordered) if stop is None else stop)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PQueue):
            return self._items._ordered() == other._items._ordered()
        if isinstance(other, tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"PQueue({list(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PQueue, (list(self),))


def put(mapping: Mapping[K, V], key: K, value: V) -> PMap[K, V]:
    """``mapping`` with ``key`` set to ``value``, persistent (a plain dict is converted once)."""
    return (mapping if isinstance(mapping, PMap) else PMap(mapping)).set(key, value)


def drop(mapping: Mapping[K, V], key: K) -> PMap[K, V]:
    """``mapping`` without ``key``, persistent."""
    return (mapping if isinstance(mapping, PMap) else PMap(mapping)).remove(key)


def add(items: Set[T], item: T) -> PSet[T]:
    """``items`` with ``item``, persistent (a plain set or frozenset is converted once)."""
    return (items if isinstance(items, PSet) else PSet(items)).add(item)
