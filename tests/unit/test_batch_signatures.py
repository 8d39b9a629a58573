"""A writer signs a transaction's records once (decision 70): each record carries its place in
the transaction and the proof from its hash to the signed tree head. Every record is still read
alone, by the one reading rule: what a batch signature lets through is exactly what the same
records signed one by one let through, and any edit of a record, its place or its proof is a
bad signature, whatever was read before it."""

from __future__ import annotations

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.enrollment import SubjectRegistered, SubjectWithdrawn
from events.envelope import Envelope, to_bytes
from events.keys import WriterKeyRotated
from events.reading import LogReader, Quarantine, Unreadable, Where, decode
from events.signing import Keyring, Signer
from services.decider import NewEvent

from .builders import at, history

TOPIC = "ns.enrollment.events"
WRITER = Signer("enrollment-1", Ed25519PrivateKey.generate())
NEXT = Signer("enrollment-2", Ed25519PrivateKey.generate())
KEYRING = Keyring(keys=(WRITER.public("enrollment"), NEXT.public("enrollment")))


def transaction(n: int = 5) -> list[Envelope]:
    """``n`` chained events, unsigned, as a writer's group commit seals them."""
    new = []
    for i in range(n):
        subject = f"MSK-{i // 2 + 1:04d}"
        payload = (
            SubjectRegistered(subject_id=subject, site_id="S1") if i % 2 == 0
            else SubjectWithdrawn(subject_id=subject, reason_code="subject-decision")
        )
        new.append(NewEvent(f"subject-{subject}", payload, at(i)))
    return [r.envelope for r in history(new)]


def edited(envelope: Envelope, **batch_fields) -> bytes:
    signed = envelope.writer_signature
    assert signed is not None and signed.batch is not None
    batch = signed.batch.model_copy(update=batch_fields)
    return to_bytes(envelope.model_copy(
        update={"writer_signature": signed.model_copy(update={"batch": batch})}
    ))


def kind_of(value: bytes, keyring: Keyring = KEYRING) -> str | None:
    try:
        decode(value, keyring, TOPIC)
    except Unreadable as exc:
        return exc.kind
    return None


def read_all(values: list[bytes]) -> tuple[LogReader, list[str]]:
    reader = LogReader(KEYRING, Quarantine())
    applied = [
        str(recorded.envelope.event_id)
        for offset, value in enumerate(values)
        if (recorded := reader.admit(Where(TOPIC, 0, offset), value)) is not None
    ]
    return reader, applied


def test_every_record_of_a_batch_reads_alone_and_keeps_its_bytes():
    signed = WRITER.sign_batch(transaction(5))

    assert len({e.writer_signature.signature for e in signed}) == 1
    assert [e.writer_signature.batch.index for e in signed] == [0, 1, 2, 3, 4]
    for envelope in reversed(signed):  # any order: no record needs another to be read
        value = to_bytes(envelope)
        recorded = decode(value, KEYRING, TOPIC)
        assert recorded.envelope == envelope and to_bytes(recorded.envelope) == value


def test_a_batch_lets_through_what_the_same_records_signed_one_by_one_do():
    events = transaction(7)
    one_by_one = [to_bytes(WRITER.sign(e)) for e in events]
    batched = [to_bytes(e) for e in WRITER.sign_batch(events)]

    assert read_all(batched)[1] == read_all(one_by_one)[1] == [str(e.event_id) for e in events]


def test_one_event_is_signed_alone_as_before():
    [alone] = WRITER.sign_batch(transaction(1))

    assert alone.writer_signature.batch is None
    assert b'"batch"' not in to_bytes(alone)
    assert alone == WRITER.sign(transaction(1)[0])


@pytest.mark.parametrize(
    "edit",
    [
        {"index": 1},  # another place in the same transaction
        {"size": 6},  # a transaction of another size (the signature covers the size)
        {"size": 4},
        {"path": ()},
        {"path": ("0" * 64, "0" * 64, "0" * 64)},
    ],
    ids=["another-place", "larger-size", "smaller-size", "no-path", "another-path"],
)
def test_a_record_whose_place_or_proof_was_edited_has_a_bad_signature(edit):
    signed = WRITER.sign_batch(transaction(5))
    genuine = [to_bytes(e) for e in signed]
    tampered = edited(signed[0], **edit)

    # Read before and after its genuine transaction: the remembered check changes nothing.
    assert kind_of(tampered) == "bad-signature"
    assert [kind_of(v) for v in genuine] == [None] * 5
    assert kind_of(tampered) == "bad-signature"
    reader, applied = read_all([tampered, *genuine[1:]])
    assert applied == [] and reader.halt_of(TOPIC, 0).kind == "bad-signature"


def test_a_forged_event_cannot_borrow_a_genuine_records_signature_and_proof():
    signed = WRITER.sign_batch(transaction(5))
    forged_content = transaction(6)[5].model_copy(
        update={"writer_signature": signed[4].writer_signature}
    )
    assert forged_content.hash_is_valid()

    assert kind_of(to_bytes(forged_content)) == "bad-signature"


def test_a_batch_signature_does_not_pass_for_a_signature_of_one_event():
    signed = WRITER.sign_batch(transaction(2))
    stripped = signed[0].model_copy(update={
        "writer_signature": signed[0].writer_signature.model_copy(update={"batch": None})
    })

    assert kind_of(to_bytes(stripped)) == "bad-signature"


def test_the_keyring_rules_hold_for_a_batch_as_for_one_event():
    signed = NEXT.sign_batch(transaction(3))
    retired = KEYRING.retiring("enrollment-2")
    elsewhere = Keyring(keys=(WRITER.public("enrollment"), NEXT.public("dosing")))

    assert [kind_of(to_bytes(e), retired) for e in signed] == ["retired-key"] * 3
    assert [kind_of(to_bytes(e), elsewhere) for e in signed] == ["wrong-writer"] * 3
    assert [kind_of(to_bytes(e), Keyring(keys=(WRITER.public("enrollment"),))) for e in signed] \
        == ["unknown-key"] * 3


def test_a_rotation_in_a_batch_retires_its_key_for_the_records_after_it():
    # A writer appends its rotation alone (services/eventstore.py); were it batched with
    # later events, those would be refused like any event signed with a retired key.
    rotation = WriterKeyRotated(
        writer="enrollment", retired_key_id="enrollment-1", next_key_id="enrollment-2"
    )
    events = [r.envelope for r in history([
        NewEvent("writer-key-enrollment", rotation, at(0)),
        NewEvent("subject-MSK-0001", SubjectRegistered(subject_id="MSK-0001", site_id="S1"),
                 at(1)),
    ])]
    reader, applied = read_all([to_bytes(e) for e in WRITER.sign_batch(events)])

    assert applied == [str(events[0].event_id)]
    assert reader.halt_of(TOPIC, 0).kind == "retired-key"


def test_more_events_than_a_tree_holds_are_signed_a_tree_at_a_time(monkeypatch):
    from events import signing

    monkeypatch.setattr(signing, "MAX_LEAVES", 4)
    signed = WRITER.sign_batch(transaction(6))

    assert [(e.writer_signature.batch.index, e.writer_signature.batch.size) for e in signed] \
        == [(0, 4), (1, 4), (2, 4), (3, 4), (0, 2), (1, 2)]
    assert len({e.writer_signature.signature for e in signed}) == 2
    assert [kind_of(to_bytes(e)) for e in signed] == [None] * 6


@pytest.mark.parametrize("field", ["index", "size"])
def test_a_place_or_size_written_as_anything_but_an_integer_is_unreadable(field):
    signed = WRITER.sign_batch(transaction(5))
    document = orjson.loads(to_bytes(signed[2]))
    batch = document["writer_signature"]["batch"]
    batch[field] = str(batch[field])

    assert kind_of(orjson.dumps(document)) == "unreadable"
    assert kind_of(to_bytes(signed[2])) is None
