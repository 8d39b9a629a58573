"""The event envelope: what every fact on a trialops topic carries besides its payload.

An envelope is immutable. Its ``hash`` is SHA-256 over the canonical bytes of every other
field, including ``prev_hash`` (the hash of the previous event of the same stream), so a
replay detects an event that was altered, removed or reordered.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Self
from uuid import UUID

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from events.merkle import MAX_LEAVES, MAX_PATH

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first event of a stream."""

_CANONICAL = orjson.OPT_SORT_KEYS


class Frozen(BaseModel):
    """Base for every value on the wire: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Actor(Frozen):
    """Who did it: an authenticated user and the role under which they acted."""

    user_id: str = Field(min_length=1, max_length=128)
    role: str = Field(min_length=1, max_length=64)


class _Immutable:
    """What an immutable JSON container shares: it refuses edits, copies to itself, and pickles
    as the plain container it holds."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("an event's payload is immutable: edit a copy (dict(...) or list(...))")

    def _plain(self) -> dict[str, Any] | list[Any]:
        raise NotImplementedError

    def __reduce__(self) -> tuple[type[_Immutable], tuple[dict[str, Any] | list[Any]]]:
        return (type(self), (self._plain(),))

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self


class FrozenDict(_Immutable, dict[str, Any]):
    """A JSON object that refuses to change: an event's payload, as read or sealed. It is a
    ``dict`` (comparisons, serialisation and ``dict(...)`` copies work as before)."""

    __slots__ = ()
    # Each edit raises instead of returning, so dict's return types need not hold (ignored).
    __setitem__ = __delitem__ = __ior__ = _Immutable._refuse  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _Immutable._refuse  # type: ignore[assignment]

    def _plain(self) -> dict[str, Any]:
        return dict(self)


class FrozenList(_Immutable, list[Any]):
    """A JSON array inside an event's payload that refuses to change; see ``FrozenDict``."""

    __slots__ = ()
    # Each edit raises instead of returning, so list's return types need not hold (ignored).
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _Immutable._refuse  # type: ignore[assignment]
    append = extend = insert = pop = remove = clear = sort = reverse = _Immutable._refuse

    def _plain(self) -> list[Any]:
        return list(self)


def frozen(value: Any) -> Any:
    """``value`` with every JSON object and array in it made immutable."""
    if isinstance(value, dict):
        return frozen_object(value)
    if isinstance(value, list):
        return FrozenList(frozen(v) for v in value)
    return value


def frozen_object(value: dict[str, Any]) -> FrozenDict:
    """A JSON object made immutable, with every object and array in it."""
    return FrozenDict({k: frozen(v) for k, v in value.items()})


class Idempotency(Frozen):
    """The client's ``Idempotency-Key`` and the digest of the request it was sent with: a retry
    with the same key and request gets the first answer back and appends nothing."""

    key: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
    request_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BatchProof(Frozen):
    """Where the event sits among the records its writer signed at once (one transaction): its
    index, how many there were, and the sibling hashes from its leaf up to the signed tree head
    (events/merkle.py, decision 70)."""

    index: int = Field(ge=0, lt=MAX_LEAVES, strict=True)
    size: int = Field(ge=2, le=MAX_LEAVES, strict=True)
    path: tuple[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")], ...] = Field(
        max_length=MAX_PATH, description="Hex SHA-256 sibling hashes, leaf to root"
    )


class WriterSignature(Frozen):
    """The writer's Ed25519 signature and the id of the key that made it (events/signing.py).
    Alone, it signs the event's ``hash``; with ``batch``, it signs the tree head of a
    transaction's records, which ``batch`` leads to from this event's hash. Outside the hash:
    it signs the hash."""

    key_id: str = Field(min_length=1, max_length=128)
    signature: str = Field(min_length=1, max_length=200, description="base64")
    batch: BatchProof | None = None


_OPTIONAL = ("idempotency", "writer_signature")
"""Fields added after the first events were written: left out of the wire form and the hash
when empty, so events written before them keep their bytes and their hash."""


_OUTSIDE_HASH = {"hash", "writer_signature"}
"""Fields the hash does not cover: itself, and the signature over it. A ``set``: pydantic's
``exclude`` took 2 to 4 us longer a call with a ``frozenset`` (measured)."""


class Envelope(Frozen):
    event_id: UUID
    event_type: str = Field(min_length=1)
    schema_version: int = Field(ge=1)
    trial_id: str = Field(min_length=1)
    stream_id: str = Field(min_length=1)
    stream_seq: int = Field(ge=1)
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    actor: Actor
    reason: str | None = None
    correlation_id: UUID
    causation_id: UUID | None = None
    prev_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    payload: dict[str, Any]
    idempotency: Idempotency | None = None
    writer_signature: WriterSignature | None = None

    @field_validator("payload")
    @classmethod
    def _immutable(cls, value: dict[str, Any]) -> dict[str, Any]:
        # A frozen model alone would still let ``envelope.payload[...] = ...`` edit a fact.
        return frozen_object(value)

    @field_validator("occurred_at", "recorded_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        # One textual form per instant, so the canonical bytes (and the hash) survive a round trip.
        return value.astimezone(UTC)

    def body(self) -> dict[str, Any]:
        """Every field but ``hash`` and the writer's signature (which signs the hash), in its
        JSON form: what the hash covers. It is ``wire()`` without those two fields, made
        without dumping them (every reader computes it for every record)."""
        body = self.model_dump(mode="json", exclude=_OUTSIDE_HASH)
        for name in _OPTIONAL:
            if name in body and body[name] is None:
                del body[name]
        return body

    def wire(self) -> dict[str, Any]:
        """The JSON form on the topic: every field, optional ones only when set."""
        document = self.model_dump(mode="json")
        for name in _OPTIONAL:
            if document[name] is None:
                del document[name]
        signed = document.get("writer_signature")
        if signed is not None and signed["batch"] is None:
            del signed["batch"]  # a signature of one event keeps the bytes it always had
        return document

    def computed_hash(self) -> str:
        return content_hash(self.body())

    def hash_is_valid(self) -> bool:
        return self.computed_hash() == self.hash


def content_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=_CANONICAL)).hexdigest()


def seal(**fields: Any) -> Envelope:
    """Build an envelope from every field but ``hash`` and compute the hash over them."""
    draft = Envelope.model_validate({**fields, "hash": GENESIS_HASH})
    return draft.model_copy(update={"hash": draft.computed_hash()})


def to_bytes(envelope: Envelope) -> bytes:
    """Wire form: canonical JSON of the whole envelope (sorted keys, UTC ISO times)."""
    return orjson.dumps(envelope.wire(), option=_CANONICAL)


def from_bytes(data: bytes) -> Envelope:
    """Parse wire bytes; raises ``pydantic.ValidationError`` or ``orjson.JSONDecodeError``."""
    return Envelope.model_validate(orjson.loads(data))
