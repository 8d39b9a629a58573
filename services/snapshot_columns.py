"""A snapshot's columns as they are written and read back (decision 57): a column that is
its entries' keys, or mostly one value, is written once; reading one makes a value for each
entry read. The rest of the snapshot's encoding is in ``services/snapshots.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

_SAMPLE = 64
"""How many values of a column are looked at to guess its most common one."""


def packed(column: list[Any], keys: list[Any]) -> Any:
    """A column as it is written: ``{"key": true}`` when each value is its entry's key (a
    subject's id in the map of subjects), ``{"same": v, "at": [i, ...], "values": [...]}`` when
    more than half of it is one value ``v`` (a long log's subjects are mostly alike: no slot,
    no screen failure, no lot), else the list itself. Reading a packed column makes one value
    for each entry read, not one for each entry; values compare by their JSON, so ``1``,
    ``1.0`` and ``true`` stay apart."""
    if column == keys and all(type(value) is str for value in column):
        return {"key": True}
    if not column:
        return column
    counts: dict[Any, int] = {}
    for value in column[:_SAMPLE]:
        token = _token(value)
        counts[token] = counts.get(token, 0) + 1
    same = _token(column[0])
    for token, count in counts.items():
        if count > counts[same]:
            same = token
    at = [position for position, value in enumerate(column) if _token(value) != same]
    if 2 * len(at) >= len(column):
        return column
    return {"same": column[next(i for i, v in enumerate(column) if _token(v) == same)],
            "at": at, "values": [column[position] for position in at]}


def _token(value: Any) -> Any:
    """What a plain value is compared by when a column is packed: itself with its type (``1``
    and ``True`` are equal in Python, not in a snapshot), a float by its exact bits (``-0.0``
    equals ``0.0`` in Python, not in a fold's state), a list or an object by its JSON."""
    kind = type(value)
    if kind is list or kind is dict:
        return (kind, orjson.dumps(value))
    if kind is float:
        return (kind, value.hex())
    return (kind, value)


def column_reader(column: Any, keys: list[Any], name: str) -> Callable[[int], Any]:
    """What reads the value at a position of a column :func:`packed` wrote; ``ValueError``
    when it does not fit the map's keys."""
    if type(column) is list and len(column) == len(keys):
        return column.__getitem__
    if type(column) is dict and column == {"key": True}:
        return keys.__getitem__
    if type(column) is dict and set(column) == {"same", "at", "values"}:
        at, values = column["at"], column["values"]
        if type(at) is list and type(values) is list and len(at) == len(values) and all(
            type(position) is int and 0 <= position < len(keys) for position in at
        ):
            others, same = dict(zip(at, values, strict=True)), column["same"]
            return lambda position: others.get(position, same)
    raise ValueError(f"a column of a map of {name!r} does not fit its keys")
