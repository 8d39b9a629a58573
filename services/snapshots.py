"""A writer's snapshot: the state it folded from its topic, the offsets that state covers, and
what is needed to read on from there as if the log had been folded from its start (decision 42).

A service restarted on a long log reads the latest snapshot of its topic, checks it, and folds
only the events after it. Nothing in a snapshot is trusted because of where it was found:

- it is sealed with the writer's own key (the manifest names the key and signs the body's
  SHA-256): a snapshot that a key of another context, an unknown key or no key signed is
  refused before its body is even decompressed;
- it names the code it was written by (:func:`code_version`) and its format: a snapshot of
  another version is ignored, since a state's classes or ``evolve`` may have changed;
- it is anchored in the log: the last event it covers is named by offset, stream, seq and hash,
  and that record must still be there, readable, with that hash, at the head the snapshot
  gives its stream (:func:`anchor_problem`); the key that sealed the snapshot must be the one
  that signed that event (or the next key a rotation there named), and still active when the
  log has been read to its end.

Anything that fails is ignored with a warning and the service folds from offset 0.

The body is JSON (orjson, zlib-compressed) with tagged values (:func:`to_plain`), not pickle:
decoding builds only plain values, the persistent maps and the frozen dataclasses and pydantic
models of the ``services`` and ``events`` packages that are already imported, so even a body
that got past the checks cannot run code when it is read.

Pure apart from :func:`code_version` reading the project's own sources once: the Kafka side is
``infra/snapshot_topic.py`` and the service side ``services/runtime.py``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel

from events.envelope import Envelope, from_bytes, to_bytes
from events.keys import WriterKeyRotated
from events.reading import Unreadable, decode
from events.signing import Keyring, Signer
from events.topics import context_of
from infra.processes import cyclic_gc_paused
from services.persistent import PMap, PQueue, PSet, base_of
from services.snapshot_columns import column_reader, packed

FORMAT = 2
"""The layout of a snapshot; a snapshot of another format is ignored. 2: a map by columns and
the heads are sorted by key (a map's own order beside them), and a column may be packed
(:func:`services.snapshot_columns.packed`)."""

_PACKAGES = ("events", "services", "trial")
"""Whose sources :func:`code_version` covers: the events, the deciders and their states, the
trial's configuration (its files included)."""
_ALLOWED_MODULES = ("events.", "services.")
"""Where the classes a snapshot may name are defined."""


class SnapshotRefused(ValueError):
    """A snapshot that is not used: the service folds its topic from offset 0 instead."""


# ---------------------------------------------------------------------------- the snapshot


@dataclass(frozen=True, slots=True)
class Anchor:
    """The last event a snapshot covers: where it is on the topic and what it is."""

    offset: int
    stream_id: str
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Upstream:
    """How far the followed topics were read: the next offset of each partition, the reading
    rule's stream heads there, and the keys rotations on them had retired."""

    positions: tuple[tuple[str, int, int], ...]
    """(topic, partition, next offset)."""
    heads: Mapping[tuple[str, str], tuple[int, str]]
    """(topic, stream) -> (seq, hash)."""
    retired: frozenset[str]

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(topic for topic, _partition, _offset in self.positions)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a writer knew once it had applied its topic up to ``covers`` (exclusive)."""

    topic: str
    trial_id: str
    covers: int
    """The next offset to read on ``topic``."""
    anchor: Anchor
    heads: Mapping[str, tuple[int, str]]
    """Each stream of ``topic``: the seq and hash of its last event."""
    retired: frozenset[str]
    """The keys rotations on ``topic`` had retired (the keyring after the covered events)."""
    state: Any
    """The decider's state: the followed topics' events and the covered ones, folded."""
    upstream_state: Any
    """The followed topics' events alone, folded (what a re-open builds its history on)."""
    answered: Mapping[tuple[str, str], Any]
    """The idempotency answers: (user, key) -> (request digest, what was appended)."""
    upstream: Upstream | None
    events: int = 0
    """How many events of ``topic`` the state folds (for the logs)."""
    key_id: str = ""
    """The key that sealed it (set when a sealed snapshot is opened)."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """A snapshot as it is stored: a small signed manifest and the compressed body."""

    manifest: bytes
    body: bytes


# ---------------------------------------------------------------------------- sealing


def code_version() -> str:
    """SHA-256 over the sources (and data files) of the packages a state depends on. Any
    change to them makes older snapshots be ignored: a state's classes or ``evolve`` may have
    changed, and a snapshot must equal a fold from offset 0 by the code that reads it."""
    return sources_digest(_PACKAGES)


@lru_cache(maxsize=4)
def sources_digest(packages: tuple[str, ...]) -> str:
    """SHA-256 over the ``.py`` and ``.json`` files of the project's ``packages``, their paths
    included, read once per process."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def seal_snapshot(snapshot: Snapshot, signer: Signer) -> Sealed:
    """Encode ``snapshot`` and sign it with the writer's key. Raises ``TypeError`` for a
    value the encoding does not know (the snapshot is then not written)."""
    with cyclic_gc_paused():
        return _seal(snapshot, signer)


def _seal(snapshot: Snapshot, signer: Signer) -> Sealed:
    # sorted by stream: a restart finds a stream by bisection, with no index to build
    heads = sorted(snapshot.heads.items())
    streams = [stream for stream, _head in heads]
    document = {
        "topic": snapshot.topic,
        "trial_id": snapshot.trial_id,
        "covers": snapshot.covers,
        "anchor": [snapshot.anchor.offset, snapshot.anchor.stream_id, snapshot.anchor.seq,
                   snapshot.anchor.hash],
        # columns: one list each, not one per stream (a long log has hundreds of thousands)
        "heads": [streams, packed([head[0] for _stream, head in heads], streams),
                  [head[1] for _stream, head in heads]],
        "retired": sorted(snapshot.retired),
        "state": to_plain(snapshot.state),
        "upstream_state": to_plain(snapshot.upstream_state),
        "answered": to_plain(dict(snapshot.answered)),
        "upstream": None if snapshot.upstream is None else {
            "positions": [list(p) for p in snapshot.upstream.positions],
            "heads": [[t, sid, seq, h] for (t, sid), (seq, h) in snapshot.upstream.heads.items()],
            "retired": sorted(snapshot.upstream.retired),
        },
        "events": snapshot.events,
    }
    body = zlib.compress(orjson.dumps(document), 1)
    manifest = {
        "format": FORMAT,
        "code": code_version(),
        "topic": snapshot.topic,
        "covers": snapshot.covers,
        "events": snapshot.events,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "key_id": signer.key_id,
    }
    signature = signer.private_key.sign(_canonical(manifest))
    manifest["signature"] = base64.b64encode(signature).decode()
    return Sealed(orjson.dumps(manifest), body)


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in manifest.items() if k != "signature"},
                        option=orjson.OPT_SORT_KEYS)


def read_manifest(manifest: bytes) -> dict[str, Any]:
    """The manifest's fields, or ``SnapshotRefused`` when it is not one."""
    try:
        fields_ = orjson.loads(manifest)
    except orjson.JSONDecodeError as exc:
        raise SnapshotRefused(f"the manifest is not JSON: {exc}") from None
    if not isinstance(fields_, dict):
        raise SnapshotRefused("the manifest is not a JSON object")
    return fields_


def open_snapshot(sealed: Sealed, keyring: Keyring, topic: str) -> Snapshot:
    """The snapshot in ``sealed`` if it was sealed for ``topic`` by a key of its writer, by
    this version of the code, and its body is the one signed; else ``SnapshotRefused``.
    Its place in the log is checked separately (:func:`anchor_problem`)."""
    manifest = read_manifest(sealed.manifest)
    if manifest.get("format") != FORMAT:
        raise SnapshotRefused(f"format {manifest.get('format')!r}, this code reads {FORMAT}")
    if manifest.get("code") != code_version():
        raise SnapshotRefused("written by another version of the code")
    if manifest.get("topic") != topic:
        raise SnapshotRefused(f"a snapshot of {manifest.get('topic')!r}, not of {topic}")
    writer = context_of(topic) or topic
    key_id = str(manifest.get("key_id"))
    key = keyring.key(key_id)
    if key is None:
        raise SnapshotRefused(f"sealed with key {key_id!r}, which is not in the keyring")
    if key.context != writer:
        raise SnapshotRefused(f"sealed with key {key_id!r} of the {key.context} writer")
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
        public.verify(base64.b64decode(str(manifest.get("signature", ""))), _canonical(manifest))
    except (InvalidSignature, ValueError):
        raise SnapshotRefused("the manifest's signature does not verify") from None
    if hashlib.sha256(sealed.body).hexdigest() != manifest.get("sha256"):
        raise SnapshotRefused("the body is not the one the manifest signs")
    try:
        with cyclic_gc_paused():
            document = orjson.loads(zlib.decompress(sealed.body))
            snapshot = _snapshot_of(document, key_id)
    except (zlib.error, orjson.JSONDecodeError, KeyError, IndexError, TypeError,
            ValueError) as exc:
        raise SnapshotRefused(f"the body does not decode: {exc!r}") from None
    if snapshot.topic != topic or snapshot.covers != manifest.get("covers"):
        raise SnapshotRefused("the body does not say what its manifest says")
    if key_id in snapshot.retired:
        raise SnapshotRefused(f"sealed with key {key_id}, which the log had retired")
    return snapshot


def _heads(streams: list[str], seqs: Any, hashes: list[str]) -> PMap[str, tuple[int, str]]:
    """Each stream's (seq, hash), made when a stream is asked for: a long log has hundreds of
    thousands of streams, and a restart meets a few of them (decision 57)."""
    if type(streams) is not list or type(hashes) is not list or len(hashes) != len(streams):
        raise ValueError("the heads' columns differ in length")
    seq_at = column_reader(seqs, streams, "heads")
    return PMap.lazily(streams, lambda position: (seq_at(position), hashes[position]))


def _snapshot_of(document: dict[str, Any], key_id: str) -> Snapshot:
    upstream = document["upstream"]
    return Snapshot(
        topic=document["topic"],
        trial_id=document["trial_id"],
        covers=int(document["covers"]),
        anchor=Anchor(*document["anchor"]),
        heads=_heads(*document["heads"]),
        retired=frozenset(document["retired"]),
        state=from_plain(document["state"]),
        upstream_state=from_plain(document["upstream_state"]),
        answered=from_plain(document["answered"]),
        upstream=None if upstream is None else Upstream(
            positions=tuple((t, p, o) for t, p, o in upstream["positions"]),
            heads={(t, sid): (seq, h) for t, sid, seq, h in upstream["heads"]},
            retired=frozenset(upstream["retired"]),
        ),
        events=int(document["events"]),
        key_id=key_id,
    )


# ---------------------------------------------------------------------------- the anchor


def anchor_problem(snapshot: Snapshot, value: bytes | None, keyring: Keyring) -> str | None:
    """Why the record read at ``snapshot.anchor.offset`` (``value``) does not anchor the
    snapshot in the log, or None when it does. ``keyring``: the deployment's, as every reader
    of the topic starts with it."""
    anchor = snapshot.anchor
    if not 0 <= anchor.offset < snapshot.covers:
        return f"its last event's offset {anchor.offset} is not below {snapshot.covers}"
    try:
        recorded = decode(value, keyring, snapshot.topic)
    except Unreadable as exc:
        return f"the record at offset {anchor.offset} is not an event of the topic ({exc})"
    envelope = recorded.envelope
    found = (envelope.stream_id, envelope.stream_seq, envelope.hash)
    if found != (anchor.stream_id, anchor.seq, anchor.hash):
        return (f"the record at offset {anchor.offset} is {found[0]} seq {found[1]} with hash "
                f"{found[2][:12]}..., not {anchor.stream_id} seq {anchor.seq} "
                f"{anchor.hash[:12]}...")
    if snapshot.heads.get(anchor.stream_id) != (anchor.seq, anchor.hash):
        return f"its heads do not end stream {anchor.stream_id} at its last event"
    signed_with = envelope.writer_signature.key_id if envelope.writer_signature else None
    payload = recorded.payload
    rotated_to = payload.next_key_id if isinstance(payload, WriterKeyRotated) else None
    if isinstance(payload, WriterKeyRotated) and payload.retired_key_id not in snapshot.retired:
        return f"its last event retires key {payload.retired_key_id}, which it keeps active"
    if snapshot.key_id not in (signed_with, rotated_to):
        return (f"sealed with key {snapshot.key_id}, but its last event was signed with "
                f"{signed_with}")
    return None


def find_anchor(
    records: list[tuple[int, bytes | None]],
    heads: Mapping[str, tuple[int, str]],
    keyring: Keyring,
    topic: str,
) -> Anchor | None:
    """The last of ``records`` (offset, value), read just below a snapshot's end, that is an
    event at the head of its stream in ``heads``: what the snapshot names as its last event."""
    for offset, value in reversed(records):
        try:
            envelope = decode(value, keyring, topic).envelope
        except Unreadable:
            continue
        if heads.get(envelope.stream_id) == (envelope.stream_seq, envelope.hash):
            return Anchor(offset, envelope.stream_id, envelope.stream_seq, envelope.hash)
    return None


# ---------------------------------------------------------------------------- the encoding
# Every value is JSON: str, int, float, bool and None as themselves; anything else a tagged
# array [tag, ...]. Dataclasses are positional (their fields in order: the code version
# pins the order), pydantic models by field name.


def to_plain(value: Any) -> Any:
    """``value`` as JSON-able data :func:`from_plain` reads back equal; ``TypeError`` for a
    type it does not know."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else ["f", repr(value)]
    encode = _ENCODERS.get(kind)
    if encode is not None:
        return encode(value)
    if kind is Envelope:
        return ["e", to_bytes(value).decode()]
    if is_dataclass(value) and kind.__module__.startswith(_ALLOWED_MODULES):
        return ["c", _name(kind), *(to_plain(getattr(value, f)) for f in _init_fields(kind))]
    if isinstance(value, BaseModel) and kind.__module__.startswith(_ALLOWED_MODULES):
        return ["m", _name(kind), {f: to_plain(getattr(value, f)) for f in kind.model_fields}]
    raise TypeError(f"a snapshot cannot hold a {kind.__module__}.{kind.__qualname__}")


def _persistent_map(mapping: PMap[Any, Any]) -> list[Any]:
    """A persistent map whose keys are strings and whose values are all dataclasses of one
    class (a state's subjects, lots, cohorts) by columns: its keys, then each field's values
    (``["pmc", class, keys, order, column, ...]``, :func:`_by_columns`); any other one by
    pairs."""
    lazy = base_of(mapping)
    if lazy is not None:
        encoded = _columns_again(mapping, *lazy)
        if encoded is not None:
            return encoded
    kind = None
    for key, item in mapping.items():
        if kind is None:
            kind = type(item)
        if type(key) is not str or type(item) is not kind:
            return _by_pairs(mapping)
    if (kind is None or not is_dataclass(kind) or not kind.__module__.startswith(_ALLOWED_MODULES)
            or not kind.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        return _by_pairs(mapping)
    items, keys = list(mapping.values()), list(mapping)
    columns = [[to_plain(getattr(item, f)) for item in items] for f in _init_fields(kind)]
    return _by_columns(_name(kind), keys, columns)


def _columns_again(
    mapping: PMap[Any, Any], source: Any, position: Callable[[Any], int | None]
) -> list[Any] | None:
    """A map read by columns from a snapshot (``_columns``) by columns again, each entry
    still the snapshot's copied from its columns as it was read, without being made; None
    when an entry set since is not of the same class or a key not a string (then by the
    general rule)."""
    name, readers = source
    kind = _DATACLASSES.get(name)
    keys = list(mapping)
    positions = [position(key) for key in keys]
    for key, found in zip(keys, positions, strict=True):
        if found is None and (type(key) is not str or type(mapping[key]) is not kind):
            return None
    if kind is None:
        return None
    return _by_columns(name, keys, [
        [read(found) if found is not None else to_plain(getattr(mapping[key], field_))
         for key, found in zip(keys, positions, strict=True)]
        for read, field_ in zip(readers, _init_fields(kind), strict=True)
    ])


def _by_columns(name: str, keys: list[str], columns: list[list[Any]]) -> list[Any]:
    """``["pmc", class, keys, order, column, ...]`` for a map of ``keys`` (in its order) whose
    entries' fields are ``columns``: the keys sorted (a reader finds one by bisection, with no
    index to build), ``order`` the sorted positions in the map's order (null when that is the
    sorted order), each column in the keys' sorted order, packed."""
    by_key = sorted(range(len(keys)), key=keys.__getitem__)
    order: list[int] | None = None
    if any(position != n for n, position in enumerate(by_key)):
        order = [0] * len(keys)
        for sorted_at, position in enumerate(by_key):
            order[position] = sorted_at
        keys = [keys[position] for position in by_key]
        columns = [[column[position] for position in by_key] for column in columns]
    return ["pmc", name, keys, order, *(packed(column, keys) for column in columns)]


def _pairs(tag: str) -> Callable[[Mapping[Any, Any]], list[Any]]:
    def encode(mapping: Mapping[Any, Any]) -> list[Any]:
        out: list[Any] = [tag]
        for key, item in mapping.items():
            out.append(to_plain(key))
            out.append(to_plain(item))
        return out
    return encode


def _items(tag: str) -> Callable[[Any], list[Any]]:
    def encode(items: Any) -> list[Any]:
        return [tag, *(to_plain(item) for item in items)]
    return encode


_by_pairs = _pairs("pm")

_ENCODERS: dict[type, Callable[[Any], Any]] = {
    tuple: _items("t"),
    list: _items("l"),
    frozenset: _items("fs"),
    set: _items("s"),
    PSet: _items("ps"),
    PQueue: _items("pq"),
    dict: _pairs("d"),
    PMap: _persistent_map,
    MappingProxyType: _pairs("mp"),
    datetime: lambda v: ["dt", v.isoformat()],
    date: lambda v: ["da", v.isoformat()],
    UUID: lambda v: ["u", str(v)],
}


def from_plain(data: Any) -> Any:
    """The value :func:`to_plain` encoded as ``data``; ``ValueError`` for a tag or a class it
    does not allow."""
    if type(data) is not list:
        return data
    tag = data[0]
    # the common tags first, without a call for each plain value or empty tuple
    if tag == "c":
        cls = _DATACLASSES.get(data[1]) or _allowed(data[1], dataclass_=True)
        return cls(*[item if type(item) is not list else
                     () if item == _EMPTY_TUPLE else from_plain(item) for item in data[2:]])
    if tag == "t":
        return tuple(_all(data)) if len(data) > 1 else ()
    decode_ = _DECODERS.get(tag)
    if decode_ is None:
        raise ValueError(f"unknown tag {tag!r} in a snapshot")
    return decode_(data)


_EMPTY_TUPLE = ["t"]


def _all(data: list[Any], start: int = 1) -> list[Any]:
    """The values encoded in ``data[start:]`` (a plain value is its own encoding: no call)."""
    return [item if type(item) is not list else from_plain(item) for item in data[start:]]


def _pairs_of(data: list[Any]) -> list[tuple[Any, Any]]:
    values = _all(data)
    return list(zip(values[::2], values[1::2], strict=True))


def _columns(data: list[Any]) -> PMap[Any, Any]:
    """A map by columns, its entries made when they are read (``PMap.lazily``): a restart
    reads a few of the hundreds of thousands of subjects a long log has (decision 57). Every
    check that needs no entry is made here: the class is allowed, the columns fit it and the
    keys, the keys are sorted without repeats, the order is one of them."""
    cls = _DATACLASSES.get(data[1]) or _allowed(data[1], dataclass_=True)
    keys, order, columns = data[2], data[3], data[4:]
    if len(columns) != len(_init_fields(cls)):
        raise ValueError(f"{data[1]!r} has {len(_init_fields(cls))} fields, not {len(columns)}")
    if type(keys) is not list or (order is not None and type(order) is not list):
        raise ValueError(f"the keys of a map of {data[1]!r} are not a list")
    readers = [column_reader(column, keys, data[1]) for column in columns]

    def make(position: int) -> Any:
        return cls(*[item if type(item) is not list else () if item == _EMPTY_TUPLE
                     else from_plain(item) for item in [read(position) for read in readers]])

    return PMap.lazily(keys, make, source=(data[1], readers), order=order)


def _model(data: list[Any]) -> BaseModel:
    cls = _allowed(data[1], dataclass_=False)
    return cls.model_validate({k: from_plain(v) for k, v in data[2].items()})


_DECODERS: dict[str, Callable[[list[Any]], Any]] = {
    "t": lambda d: tuple(_all(d)),
    "l": _all,
    "fs": lambda d: frozenset(_all(d)),
    "s": lambda d: set(_all(d)),
    "ps": lambda d: PSet(_all(d)),
    "pq": lambda d: PQueue(_all(d)),
    "d": lambda d: dict(_pairs_of(d)),
    "pm": lambda d: PMap(_pairs_of(d)),
    "pmc": _columns,
    "mp": lambda d: MappingProxyType(dict(_pairs_of(d))),
    "dt": lambda d: datetime.fromisoformat(d[1]),
    "da": lambda d: date.fromisoformat(d[1]),
    "u": lambda d: UUID(d[1]),
    "f": lambda d: float(d[1]),
    "e": lambda d: from_bytes(d[1].encode()),
    "m": _model,
}


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_FIELDS: dict[type, tuple[str, ...]] = {}


def _init_fields(cls: type) -> tuple[str, ...]:
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = tuple(f.name for f in fields(cls) if f.init)
    return found


_DATACLASSES: dict[str, Any] = {}
"""The dataclasses a body named that were allowed (a body names one for every value)."""


@cache
def _allowed(name: str, *, dataclass_: bool) -> Any:
    """The class ``name`` names when it is a dataclass (or a pydantic model) of an already
    imported module of the ``events`` or ``services`` packages: nothing is imported, nothing
    else is built."""
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name) if module_name.startswith(_ALLOWED_MODULES) else None
    cls = getattr(module, qualname, None) if module is not None and "." not in qualname else None
    if not isinstance(cls, type) or cls.__module__ != module_name:
        raise ValueError(f"a snapshot names {name!r}, which it may not build")
    if dataclass_ and not is_dataclass(cls):
        raise ValueError(f"{name!r} is not a dataclass")
    if not dataclass_ and not issubclass(cls, BaseModel):
        raise ValueError(f"{name!r} is not a model")
    if dataclass_:
        _DATACLASSES[name] = cls
    return cls
