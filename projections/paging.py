"""Paging a projection's list view: a page of keys in key order after a cursor, and the page's
document (decision 41).

A page is chosen from the table's keys alone, and only the page's values are read and
rendered. A table that keeps its keys in order (on disk, decision 85) gives a page with a seek
and ``limit`` steps (``StoredOrder``). For a table in memory: while the table changes, a page
costs one pass over its keys that keeps the ``limit + 1`` smallest after the cursor (a heap of
that size); once the table is quiet (the same version at two requests in a row), its keys are
sorted once and kept (``KeyOrder``), and a page costs a binary search and ``limit`` steps until
the table changes again. The cursor is the last key of the page, base64url encoded: opaque to
clients, and valid whatever was added or removed since, because a page starts after it, not at
a position. Pure: the worker's view passes its table's keys (or its ordered keys), its version
and a way to read one value.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.base import Listing, Projection, State

DEFAULT_LIMIT = 100
"""Items a page holds when the query names no ``limit``."""
MAX_LIMIT = 1000
"""The largest ``limit`` a query may ask for: a page's cost stays bounded."""
NEXT = "next_cursor"
"""The document field that holds the cursor of the next page, null on the last one."""


class BadPage(ValueError):
    """A ``limit`` or ``cursor`` the view refuses; the message names the parameter and the
    rule it breaks."""


@dataclass(frozen=True)
class Page:
    keys: list[str]
    """The page's table keys, in key order."""
    last: str | None
    """The key the next page starts after; None when this page is the last."""


def parse_limit(value: str | None) -> int:
    """The page size a query asks for: a whole number from 1 to ``MAX_LIMIT``."""
    if value is None:
        return DEFAULT_LIMIT
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise BadPage(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {value!r}")
    return int(value)


def encode_cursor(key: str) -> str:
    """The cursor of the page that starts after ``key``: base64url of its UTF-8, unpadded."""
    return base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, prefix: str = "") -> str:
    """The key a cursor stands for; ``BadPage`` for anything ``encode_cursor`` did not give for
    a key of this list (keys listed start with ``prefix``)."""
    problem = BadPage(f"cursor {cursor[:80]!r} is not a next_cursor this view gave")
    if not cursor or len(cursor) % 4 == 1:
        raise problem
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = raw.decode()
    except (binascii.Error, ValueError):
        raise problem from None
    if encode_cursor(key) != cursor or not key.startswith(prefix):
        raise problem
    return key


def page_of(keys: Iterable[str], after: str | None, limit: int, prefix: str = "") -> Page:
    """The first ``limit`` keys with ``prefix`` after ``after``, in key order, and whether more
    follow. One pass over ``keys`` with a heap of ``limit + 1``: O(n log limit) comparisons and
    O(limit) memory, whatever order the table iterates in."""
    wanted = (k for k in keys if k.startswith(prefix) and (after is None or k > after))
    chosen = heapq.nsmallest(limit + 1, wanted)
    if len(chosen) > limit:
        return Page(chosen[:limit], chosen[limit - 1])
    return Page(chosen, None)


class KeyOrder:
    """A table's keys in order, sorted once the table is quiet and kept while it stays so.

    ``version`` is anything that changes whenever the table's keys may have changed (the
    worker passes the positions it has applied and the table's size). At a version seen for
    the first time, a page is chosen by ``page_of`` (one pass, no copy); at the same version
    twice in a row the keys are sorted and kept, and pages are cut from them until the version
    changes. A reader following the cursors of a quiet table pays the sort once."""

    def __init__(self) -> None:
        self.seen: Hashable = _NEVER
        """The version of the last request."""
        self.sorted_at: Hashable = _NEVER
        """The version ``keys`` were sorted at."""
        self.keys: list[str] = []

    def page(
        self,
        keys: Callable[[], Iterable[str]],
        version: Hashable,
        after: str | None,
        limit: int,
        prefix: str = "",
    ) -> Page:
        if version != self.sorted_at:
            if version != self.seen:
                self.seen, self.keys, self.sorted_at = version, [], _NEVER
                return page_of(keys(), after, limit, prefix)
            self.keys, self.sorted_at = sorted(keys()), version
        ordered = self.keys
        start = bisect_left(ordered, prefix)
        if after is not None:
            start = max(start, bisect_right(ordered, after))
        chosen: list[str] = []
        for i in range(start, min(start + limit + 1, len(ordered))):
            if not ordered[i].startswith(prefix):
                break
            chosen.append(ordered[i])
        if len(chosen) > limit:
            return Page(chosen[:limit], chosen[limit - 1])
        return Page(chosen, None)


_NEVER = object()


class StoredOrder:
    """The order a table keeps its keys in itself (RocksDB's, on disk): a page is a seek to
    where it starts and ``limit + 1`` steps, whether the table changes or not, and nothing is
    kept in memory. ``keys_from(start)`` yields the table's keys from ``start`` on, in key
    order. Used where ``KeyOrder`` would be, its ``keys`` and ``version`` not needed."""

    def __init__(self, keys_from: Callable[[str], Iterable[str]]) -> None:
        self.keys_from = keys_from

    def page(
        self,
        keys: Callable[[], Iterable[str]] | None,
        version: Hashable,
        after: str | None,
        limit: int,
        prefix: str = "",
    ) -> Page:
        start = prefix if after is None or after < prefix else after
        chosen: list[str] = []
        for key in self.keys_from(start):
            if key == after:
                continue
            if not key.startswith(prefix):
                break
            chosen.append(key)
            if len(chosen) > limit:
                break
        if len(chosen) > limit:
            return Page(chosen[:limit], chosen[limit - 1])
        return Page(chosen, None)


def keys_under(
    order: tuple[KeyOrder | StoredOrder, Hashable],
    keys: Callable[[], Iterable[str]],
    prefixes: Iterable[str],
) -> list[str]:
    """Every key under ``prefixes``, found as a page's keys are: a page with no end per prefix
    (counting the keys first would be one more pass over the table)."""
    found: list[str] = []
    for prefix in prefixes:
        found += order[0].page(keys, order[1], None, sys.maxsize, prefix).keys
    return found


def listed(document: Any, path: tuple[str, ...]) -> list[Any]:
    """The list at ``path`` in a rendered document."""
    for name in path:
        document = document[name]
    if not isinstance(document, list):
        raise TypeError(f"{'.'.join(path)} is not a list in the document")
    return document


def with_listed(
    document: dict[str, Any], path: tuple[str, ...], items: list[Any]
) -> dict[str, Any]:
    """A copy of ``document`` with ``items`` at ``path`` (the objects above it copied, so the
    original is left as it was)."""
    head, *rest = path
    if not rest:
        return {**document, head: items}
    return {**document, head: with_listed(document.get(head, {}), tuple(rest), items)}


def page_document(
    projection: Projection,
    keys: Iterable[str],
    state: Callable[[str], State | None],
    whole: Callable[[], Mapping[str, State]],
    after: str | None,
    limit: int,
    as_of: datetime,
    order: tuple[KeyOrder | StoredOrder, Hashable] | None = None,
) -> dict[str, Any]:
    """One page of ``projection``'s list view: the list's items for the page's keys, rendered
    from those keys' states alone, and ``next_cursor``. The first page of a list with a
    summary carries the summary, rendered over ``whole()`` (or over the keys under the
    listing's ``summary_prefixes``, read one by one); later pages carry the list only.
    ``state`` reads one key's state (None if it is gone since the keys were listed); ``order``
    is the table's ``KeyOrder`` and its version now (or the ``StoredOrder`` of a table that
    keeps its keys in order), without which every page is one pass."""
    listing = _listing(projection)
    if order is None:
        page = page_of(keys, after, limit, listing.prefix)
    else:
        page = order[0].page(lambda: keys, order[1], after, limit, listing.prefix)
    states = {key: s for key in page.keys if (s := state(key)) is not None}
    if listing.needs is not None:
        needed = {k for s in list(states.values()) for k in listing.needs(s)} - set(states)
        states |= {key: s for key in sorted(needed) if (s := state(key)) is not None}
    items = listed(projection.document(states, as_of), listing.path)
    base: dict[str, Any] = {"projection": projection.name}
    if listing.summary and after is None:
        prefixes = listing.summary_prefixes
        if prefixes is None:
            summarised = whole()
        elif order is None:
            summarised = {k: s for k, s in whole().items() if k.startswith(prefixes)}
        else:
            found = keys_under(order, lambda: keys, prefixes)
            summarised = {key: s for key in found if (s := state(key)) is not None}
        base = projection.document(summarised, as_of)
    document = with_listed(base, listing.path, items)
    document[NEXT] = None if page.last is None else encode_cursor(page.last)
    return document


def assemble(listing: Listing, pages: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The whole document from its pages in order: the first page (with its summary) and the
    list items of every page, without ``next_cursor``. What a client following the cursors
    gets, and what the replay prints for the same events."""
    whole: dict[str, Any] | None = None
    items: list[Any] = []
    for page in pages:
        if whole is None:
            whole = {k: v for k, v in page.items() if k != NEXT}
        items.extend(listed(page, listing.path))
    if whole is None:
        raise ValueError("no page to assemble")
    return with_listed(whole, listing.path, items)


def _listing(projection: Projection) -> Listing:
    if projection.listing is None:
        raise TypeError(f"{projection.name} is one aggregate document, not a list view")
    return projection.listing
