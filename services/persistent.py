"""Immutable maps and sets that share their structure: the deciders' states are values, and
``evolve`` returns a new state for every event, so copying a map of 20,000 subjects to change
one of them made a service's start-up grow with the square of its history (issue 12).

``PMap`` and ``PSet`` wrap rpds' hash array mapped tries (``HashTrieMap``, ``HashTrieSet``):
a changed copy costs O(log n) and shares everything else with the original, which stays as it
was. They read like any ``Mapping`` or ``Set`` and compare equal to a ``dict`` or a
``frozenset`` with the same contents, so tests can build and compare states with plain data.
``put``, ``drop`` and ``add`` take any mapping or set (a test may start a state from a dict)
and always return the persistent kind.

A map read back from a writer's snapshot (decision 42) need not make its hundreds of thousands
of entries at once: ``PMap.lazily`` keeps the snapshot's keys and a function that makes the
entry at a position, and makes an entry the first time it is read. What changes after that is
kept in the trie, as for any map; the map reads, iterates, measures and compares exactly as the
same map made eagerly would (decision 57).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence, Set
from itertools import islice
from operator import ge, itemgetter
from typing import Any, Generic, TypeVar, overload

from rpds import HashTrieMap, HashTrieSet

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T", bound=Hashable)

_MISSING: Any = object()


class _Made(Generic[K, V]):
    """The entries of a map as a snapshot holds them: its keys, sorted, and ``make``, which
    makes the entry at a position; each one is made on its first read and kept (entries are
    immutable values, so every version of the map that shares them may share them made).

    A key is found by bisection in the sorted keys: no index is built (hashing the hundreds of
    thousands of keys of a long log into a dict was the largest part of opening its snapshot).
    ``order`` lists the positions in the map's own order (None: the sorted order is it)."""

    __slots__ = ("keys", "made", "make", "order", "source")

    def __init__(self, keys: list[K], make: Callable[[int], V], source: Any = None,
                 order: list[int] | None = None):
        sortable: list[Any] = keys
        try:
            ascending = not any(map(ge, sortable, islice(sortable, 1, None)))
        except TypeError:
            ascending = False
        if not ascending:
            raise ValueError("a map's keys are not sorted without repeats")
        if order is not None and (
            len(order) != len(keys) or not all(type(position) is int for position in order)
            or len(set(order)) != len(keys) or (order and not 0 <= min(order) <= max(order)
                                                < len(keys))
        ):
            raise ValueError("a map's order is not one of its keys")
        self.keys, self.order = keys, order
        self.make = make
        self.made: list[Any] = [_MISSING] * len(keys)
        self.source = source
        """What the entries are made from (the snapshot's columns), for whoever encodes it."""

    def position(self, key: object) -> int | None:
        """Where ``key`` is among the keys, or None."""
        keys: list[Any] = self.keys
        try:
            found = bisect_left(keys, key)
        except TypeError:  # a key of another kind than the map's
            return None
        return found if found < len(keys) and keys[found] == key else None

    def in_order(self) -> list[K]:
        """The keys in the map's own order."""
        return self.keys if self.order is None else [self.keys[p] for p in self.order]

    def at(self, position: int) -> V:
        found = self.made[position]
        if found is _MISSING:
            found = self.made[position] = self.make(position)
        return found


class PMap(Mapping[K, V]):
    """An immutable mapping; ``set`` and ``remove`` return a changed copy in O(log n).

    It iterates in insertion order, as a dict does (a key set again keeps its place), because
    deciders and views that list a state's cohorts or lots were written against dicts. The
    order is a second trie (key -> rank); it is sorted on the first iteration of a map and kept
    with it, so folding events never pays for it.

    A map made ``lazily`` has a base (``_Made``): the snapshot's entries, in their order, made
    when read. Its trie holds what was set since (a base key set again keeps its place), its
    ranks the keys set since that the base does not hold, ``_gone`` the base keys removed (one
    set again is a new key, at the end, as in a dict)."""

    __slots__ = ("_base", "_gone", "_keys", "_next", "_rank", "_trie")
    _trie: HashTrieMap[K, V]
    _rank: HashTrieMap[K, int]
    _next: int
    _keys: list[K] | None
    _base: _Made[K, V] | None
    _gone: HashTrieSet[K]

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        if isinstance(items, PMap):
            self._trie, self._rank, self._next = items._trie, items._rank, items._next
            self._keys, self._base, self._gone = items._keys, items._base, items._gone
            return
        pairs = dict(items)
        self._trie = HashTrieMap(pairs)
        self._rank = HashTrieMap((key, rank) for rank, key in enumerate(pairs))
        self._next = len(pairs)
        self._keys = list(pairs)
        self._base, self._gone = None, _NONE_GONE

    @classmethod
    def lazily(cls, keys: list[K], make: Callable[[int], V], source: Any = None,
               order: list[int] | None = None) -> PMap[K, V]:
        """The map of ``keys`` (sorted, none repeated: else ``ValueError``) whose entry at
        position i is ``make(i)``, made when it is first read. ``order``: the positions in
        the map's order (a permutation; None: sorted). ``source``: what the entries are made
        from, kept for :func:`base_of`."""
        new = cls._of(HashTrieMap(), HashTrieMap(), 0)
        new._base = _Made(keys, make, source, order)
        return new

    @classmethod
    def _of(cls, trie: HashTrieMap[K, V], rank: HashTrieMap[K, int], next_: int) -> PMap[K, V]:
        new = cls.__new__(cls)
        new._trie, new._rank, new._next, new._keys = trie, rank, next_, None
        new._base, new._gone = None, _NONE_GONE
        return new

    def _changed(self, trie: HashTrieMap[K, V], rank: HashTrieMap[K, int], next_: int,
                 gone: HashTrieSet[K] | None = None) -> PMap[K, V]:
        new = self._of(trie, rank, next_)
        new._base, new._gone = self._base, self._gone if gone is None else gone
        return new

    def _in_base(self, key: object) -> bool:
        base = self._base
        return base is not None and key not in self._gone and base.position(key) is not None

    def set(self, key: K, value: V) -> PMap[K, V]:
        if key in self._rank or self._in_base(key):
            changed = self._changed(self._trie.insert(key, value), self._rank, self._next)
            changed._keys = self._keys  # same keys, same order
            return changed
        return self._changed(
            self._trie.insert(key, value), self._rank.insert(key, self._next), self._next + 1
        )

    def remove(self, key: K) -> PMap[K, V]:
        """Without ``key`` (the same map when it is absent)."""
        if key in self._rank:
            return self._changed(self._trie.discard(key), self._rank.discard(key), self._next)
        if self._in_base(key):
            return self._changed(self._trie.discard(key), self._rank, self._next,
                                 self._gone.insert(key))
        return self

    def __getitem__(self, key: K) -> V:
        found = self.get(key, _MISSING)
        if found is _MISSING:
            raise KeyError(key)
        return found

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | T, /) -> V | T: ...
    def get(self, key: K, default: Any = None, /) -> Any:
        found = self._trie.get(key, _MISSING)
        if found is not _MISSING:
            return found
        base = self._base
        if base is not None:
            position = base.position(key)
            if position is not None and key not in self._gone:
                return base.at(position)
        return default

    def __contains__(self, key: object) -> bool:
        return key in self._trie or self._in_base(key)

    def __iter__(self) -> Iterator[K]:
        return iter(self._ordered())

    def _ordered(self) -> list[K]:
        if self._keys is None:
            added = [key for key, _rank in sorted(self._rank.items(), key=itemgetter(1))]
            base = self._base
            if base is None:
                self._keys = added
            else:
                gone, keys = self._gone, base.in_order()
                kept = [key for key in keys if key not in gone] if len(gone) else keys
                self._keys = [*kept, *added] if added else kept
        return self._keys

    def __len__(self) -> int:
        base = self._base
        if base is None:
            return len(self._trie)
        return len(base.keys) - len(self._gone) + len(self._rank)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PMap) and self._base is None and other._base is None:
            return bool(self._trie == other._trie)
        if isinstance(other, Mapping):
            return len(self) == len(other) and all(
                other.get(key, _MISSING) == value for key, value in self.items()
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # values need not be hashable

    def __repr__(self) -> str:
        return f"PMap({dict(self.items())!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PMap, (dict(self.items()),))


_NONE_GONE: HashTrieSet[Any] = HashTrieSet()


def base_of(mapping: PMap[K, V]) -> tuple[Any, Callable[[K], int | None]] | None:
    """For a map made ``lazily``: the ``source`` it was made with, and the base position of a
    key whose entry is still the base's own (None when it was set again or removed since, or
    is not the base's); None for any other map. An encoder may copy an untouched entry's
    source instead of making the entry."""
    base = mapping._base
    if base is None:
        return None
    trie, gone = mapping._trie, mapping._gone

    def position(key: K) -> int | None:
        return None if key in trie or key in gone else base.position(key)

    return base.source, position


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
