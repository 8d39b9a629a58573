"""Writers' signatures: who wrote an event, proved with the writer's Ed25519 key.

The hash chain proves order and integrity, not authorship: anyone who reaches Kafka could
append a correctly hashed event. Each writer (one per context) therefore signs every event's
hash with its own private key, or, for the events of one transaction, the Merkle tree head over
their hashes once, each event carrying its proof (decision 70); the envelope carries the key id
and the signature. Readers check it against the keyring the trial's deployment supplies: the
key must be known, belong to the writer of the topic the event is on, and the signature must
verify. A record that fails is unreadable, like any other (events/reading.py).

This is not a person's Part 11 signature (``RecordSigned``): that one records a person's intent
(review, approval, responsibility); this one proves which program wrote the bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import Field

from events.envelope import BatchProof, Envelope, Frozen, WriterSignature
from events.merkle import MAX_LEAVES, leaf_hash, proofs, root_from_proof

KeyId = str


class WriterKey(Frozen):
    """A writer's public key, as the keyring lists it."""

    key_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    context: str = Field(min_length=1, max_length=64, description="The topic it may write")
    public_key: str = Field(description="Raw 32-byte Ed25519 public key, base64")


class Keyring(Frozen):
    """Every writer key the deployment trusts. A retired key stays listed: old events keep
    verifying under it. ``retired``: the keys a ``WriterKeyRotated`` event read so far has
    retired; a record read after that event and signed by one of them is refused. Readers
    never load it from a file: it grows as they read the log (``events.reading``)."""

    keys: tuple[WriterKey, ...] = ()
    retired: frozenset[str] = frozenset()

    def key(self, key_id: str) -> WriterKey | None:
        return self._by_id()[1].get(key_id)

    @cached_property
    def _index(self) -> list[tuple[tuple[WriterKey, ...], dict[str, WriterKey]]]:
        return []

    def _by_id(self) -> tuple[tuple[WriterKey, ...], dict[str, WriterKey]]:
        """Read for every record: a lookup, not a scan (the first listing of an id wins, as
        the scan it replaces did). Made again when ``keys`` is not the tuple it was made from
        (``model_copy`` carries the cache along)."""
        index = self._index
        if not index or index[0][0] is not self.keys:
            found: dict[str, WriterKey] = {}
            for k in self.keys:
                found.setdefault(k.key_id, k)
            index[:] = [(self.keys, found)]
        return index[0]

    def retiring(self, key_id: str) -> Keyring:
        """This keyring with ``key_id`` retired (the same keyring when it already is)."""
        if key_id in self.retired:
            return self
        return self.model_copy(update={"retired": self.retired | {key_id}})

    def active(self, context: str) -> list[WriterKey]:
        """The keys ``context``'s writer may sign with now."""
        return [k for k in self.keys if k.context == context and k.key_id not in self.retired]


class SignatureProblem(ValueError):
    """Why an event's writer signature does not hold: ``kind`` names it."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


SIGNATURE_KINDS = ("unsigned", "unknown-key", "wrong-writer", "retired-key", "bad-signature")


def check_writer_signature(envelope: Envelope, keyring: Keyring, context: str) -> None:
    """Raise ``SignatureProblem`` unless ``envelope`` is signed by a key of ``keyring`` that
    belongs to ``context``'s writer and the signature verifies: over the event's hash, or over
    the tree head its ``batch`` proof leads to from that hash (decision 70)."""
    signed = envelope.writer_signature
    if signed is None:
        raise SignatureProblem("unsigned", f"{envelope.event_type} carries no writer signature")
    key = keyring.key(signed.key_id)
    if key is None:
        raise SignatureProblem("unknown-key", f"key {signed.key_id!r} is not in the keyring")
    if key.context != context:
        raise SignatureProblem(
            "wrong-writer",
            f"key {signed.key_id!r} belongs to the {key.context} writer, not to {context}'s",
        )
    if signed.key_id in keyring.retired:
        raise SignatureProblem(
            "retired-key",
            f"key {signed.key_id!r} was retired by a key rotation earlier on this topic",
        )
    batch = signed.batch
    if batch is None:
        holds = _holds(key.public_key, envelope.hash.encode(), signed.signature)
    else:
        head = root_from_proof(
            leaf_hash(bytes.fromhex(envelope.hash)), batch.index, batch.size,
            [bytes.fromhex(p) for p in batch.path],
        )
        if head is None:
            raise SignatureProblem(
                "bad-signature",
                f"{envelope.event_type}'s batch proof does not lead to a tree head "
                f"(index {batch.index} of {batch.size}, {len(batch.path)} hashes)",
            )
        holds = _holds_once(key.public_key, batch_message(batch.size, head), signed.signature)
    if not holds:
        raise SignatureProblem(
            "bad-signature", f"{envelope.event_type}'s signature does not verify"
        )


def batch_message(size: int, head: bytes) -> bytes:
    """What a writer signs for a transaction of ``size`` records whose tree head is ``head``:
    never an event's hash (a hex string of 64 characters), so neither passes for the other."""
    return b"trialops-batch/1 %d %s" % (size, head.hex().encode())


def _holds(public_key: str, message: bytes, signature: str) -> bool:
    try:
        _verify_key(public_key).verify(message, base64.b64decode(signature))
    except (BadSignatureError, ValueError):
        return False
    return True


@lru_cache(maxsize=1024)
def _holds_once(public_key: str, message: bytes, signature: str) -> bool:
    """``_holds``, remembered: every record of a transaction carries the same tree head and
    signature, so a reader checks the signature once per transaction, not once per record.
    A pure function of its arguments, so remembering it changes no verdict."""
    return _holds(public_key, message, signature)


@lru_cache(maxsize=256)
def _verify_key(encoded: str) -> VerifyKey:
    """The key object of a keyring entry, made once (every record is checked against one).

    Verification goes through libsodium (PyNaCl), signing through ``cryptography``: both are
    RFC 8032 Ed25519, and libsodium verifies in about half the time (measured 53 against
    104-114 us a signature on the development machine), the largest cost of reading a record
    (decision 40)."""
    return VerifyKey(base64.b64decode(encoded))


@dataclass(frozen=True)
class Signer:
    """A writer's private key, to sign the events it seals."""

    key_id: str
    private_key: Ed25519PrivateKey

    def sign(self, envelope: Envelope) -> Envelope:
        signature = self.private_key.sign(envelope.hash.encode())
        return envelope.model_copy(
            update={
                "writer_signature": WriterSignature(
                    key_id=self.key_id, signature=base64.b64encode(signature).decode()
                )
            }
        )

    def sign_batch(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """``envelopes``, appended in one transaction, signed with one signature: over their
        tree head, each carrying its proof (decision 70). One event is signed alone; more
        than a tree may hold, a tree at a time."""
        if len(envelopes) <= 1:
            return [self.sign(e) for e in envelopes]
        if len(envelopes) > MAX_LEAVES:
            return [
                signed for start in range(0, len(envelopes), MAX_LEAVES)
                for signed in self.sign_batch(envelopes[start:start + MAX_LEAVES])
            ]
        head, paths = proofs([leaf_hash(bytes.fromhex(e.hash)) for e in envelopes])
        signature = base64.b64encode(
            self.private_key.sign(batch_message(len(envelopes), head))
        ).decode()
        return [
            e.model_copy(update={"writer_signature": WriterSignature(
                key_id=self.key_id, signature=signature,
                batch=BatchProof(index=i, size=len(envelopes), path=tuple(p.hex() for p in path)),
            )})
            for i, (e, path) in enumerate(zip(envelopes, paths, strict=True))
        ]

    def public(self, context: str) -> WriterKey:
        raw = self.private_key.public_key().public_bytes_raw()
        return WriterKey(
            key_id=self.key_id, context=context, public_key=base64.b64encode(raw).decode()
        )
