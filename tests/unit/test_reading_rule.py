"""The one reading rule every reader applies (events/reading.py): what is applied, what is a
copy, where a reader halts, and what a quarantine lets it pass over."""

from __future__ import annotations

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.enrollment import SubjectRegistered, SubjectWithdrawn
from events.envelope import to_bytes
from events.reading import (
    NO_QUARANTINE,
    Head,
    LogReader,
    Quarantine,
    Unreadable,
    Where,
    decode,
    digest,
    next_in_stream,
)
from events.registry import Recorded
from events.signing import Keyring, Signer
from services.decider import NewEvent

from .builders import at, history

TOPIC = "ns.enrollment.events"
WRITER = Signer("enrollment-1", Ed25519PrivateKey.generate())
OTHER_WRITER = Signer("dosing-1", Ed25519PrivateKey.generate())
KEYRING = Keyring(keys=(WRITER.public("enrollment"), OTHER_WRITER.public("dosing")))


def log_of_one_subject() -> list[bytes]:
    """Three chained events of one stream, as wire bytes."""
    new = [
        NewEvent("subject-MSK-0001", SubjectRegistered(subject_id="MSK-0001", site_id="S1"), at(0)),
        NewEvent("subject-MSK-0002", SubjectRegistered(subject_id="MSK-0002", site_id="S1"), at(1)),
        NewEvent(
            "subject-MSK-0001",
            SubjectWithdrawn(subject_id="MSK-0001", reason_code="subject-decision"),
            at(2),
        ),
    ]
    return [to_bytes(WRITER.sign(r.envelope)) for r in history(new)]


def read_all(values: list[bytes | None], quarantine: Quarantine = NO_QUARANTINE):
    reader = LogReader(KEYRING, quarantine)
    applied = [
        recorded
        for offset, value in enumerate(values)
        if (recorded := reader.admit(Where(TOPIC, 0, offset), value)) is not None
    ]
    return reader, applied


def types(applied: list[Recorded]) -> list[str]:
    return [r.envelope.event_type for r in applied]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"\x00garbage", "unreadable"),
        (b"{}", "unreadable"),
        (None, "unreadable"),
        (b"[1, 2]", "unreadable"),
    ],
)
def test_what_is_not_an_envelope_is_unreadable(value, kind):
    with pytest.raises(Unreadable) as caught:
        decode(value, KEYRING, TOPIC)

    assert caught.value.kind == kind


def test_an_envelope_whose_payload_its_schema_refuses_is_schema_invalid():
    document = orjson.loads(log_of_one_subject()[0])
    document["payload"]["subject_id"] = "John Smith"

    with pytest.raises(Unreadable) as caught:
        decode(orjson.dumps(document), KEYRING, TOPIC)

    assert caught.value.kind == "schema-invalid"


def test_an_edited_event_is_a_hash_mismatch():
    document = orjson.loads(log_of_one_subject()[0])
    document["payload"]["site_id"] = "S2"

    with pytest.raises(Unreadable) as caught:
        decode(orjson.dumps(document), KEYRING, TOPIC)

    assert caught.value.kind == "hash-mismatch"


def test_a_clean_log_is_applied_in_full():
    reader, applied = read_all(log_of_one_subject())

    assert types(applied) == ["SubjectRegistered", "SubjectRegistered", "SubjectWithdrawn"]
    assert not reader.halts


def test_a_copy_of_an_applied_event_is_skipped_not_applied_twice():
    log = log_of_one_subject()

    reader, applied = read_all([log[0], log[0], log[1], log[2], log[2]])

    assert types(applied) == ["SubjectRegistered", "SubjectRegistered", "SubjectWithdrawn"]
    assert reader.copies == 2
    assert not reader.halts


def test_a_reader_never_moves_past_an_unreadable_record():
    # The finding: garbage, then a withdrawal. The withdrawal must not be lost silently, and
    # nothing after the garbage may be applied as if the log had no hole.
    log = log_of_one_subject()

    reader, applied = read_all([log[0], b"garbage", log[1], log[2]])

    assert types(applied) == ["SubjectRegistered"]
    halt = reader.halt_of(TOPIC, 0)
    assert halt is not None
    assert (halt.where, halt.kind, halt.sha256) == (
        Where(TOPIC, 0, 1), "unreadable", digest(b"garbage")
    )


def test_a_quarantined_record_is_passed_over_and_what_follows_is_applied():
    log = log_of_one_subject()
    quarantine = Quarantine.of([(Where(TOPIC, 0, 1), digest(b"garbage"))])

    reader, applied = read_all([log[0], b"garbage", log[1], log[2]], quarantine)

    assert types(applied) == ["SubjectRegistered", "SubjectRegistered", "SubjectWithdrawn"]
    assert reader.skipped == [Where(TOPIC, 0, 1)]
    assert not reader.halts


def test_a_quarantine_covers_only_the_bytes_it_names():
    log = log_of_one_subject()
    other_bytes = Quarantine.of([(Where(TOPIC, 0, 1), digest(b"other garbage"))])
    other_offset = Quarantine.of([(Where(TOPIC, 0, 2), digest(b"garbage"))])

    for quarantine in (other_bytes, other_offset):
        reader, applied = read_all([log[0], b"garbage", log[1]], quarantine)

        assert types(applied) == ["SubjectRegistered"]
        assert reader.halt_of(TOPIC, 0) is not None


def test_a_quarantine_never_hides_a_readable_event():
    log = log_of_one_subject()
    quarantine = Quarantine.of([(Where(TOPIC, 0, 1), digest(log[1]))])

    reader, applied = read_all(log, quarantine)

    assert len(applied) == 3
    assert reader.skipped == []


def test_a_missing_event_halts_the_reader_at_the_next_one_of_its_stream():
    log = log_of_one_subject()

    reader, applied = read_all([log[1], log[2]])  # seq 1 of MSK-0001 is not on the log

    assert types(applied) == ["SubjectRegistered"]
    halt = reader.halt_of(TOPIC, 0)
    assert halt is not None and halt.kind == "broken-chain"
    assert "seq 1 is missing" in halt.detail


def test_an_event_that_does_not_chain_to_its_head_breaks_the_chain():
    first = decode(log_of_one_subject()[0], KEYRING, TOPIC).envelope
    third = decode(log_of_one_subject()[2], KEYRING, TOPIC).envelope

    with pytest.raises(Unreadable) as caught:
        next_in_stream(Head(1, "f" * 64), third)

    assert caught.value.kind == "broken-chain"
    assert next_in_stream(Head(1, first.hash), third) is True
    assert next_in_stream(Head(2, third.hash), third) is False


def test_resuming_with_a_newer_quarantine_reads_on_from_the_halt():
    log = log_of_one_subject()
    reader = LogReader(KEYRING)
    values = [log[0], b"garbage", log[1], log[2]]
    first = [reader.admit(Where(TOPIC, 0, o), v) for o, v in enumerate(values)]
    assert [r is not None for r in first] == [True, False, False, False]

    reader.resume(Quarantine.of([(Where(TOPIC, 0, 1), digest(b"garbage"))]))
    again = [reader.admit(Where(TOPIC, 0, o), v) for o, v in enumerate(values) if o >= 1]

    assert [r is not None for r in again] == [False, True, True]


def test_a_halt_in_one_partition_does_not_stop_another():
    log = log_of_one_subject()
    reader = LogReader(KEYRING)

    reader.admit(Where(TOPIC, 0, 0), b"garbage")
    other = reader.admit(Where(TOPIC, 1, 0), log[0])

    assert other is not None
    assert list(reader.halts) == [(TOPIC, 0)]


def resigned(value: bytes, signer: Signer | None) -> bytes:
    envelope = decode(value, KEYRING, TOPIC).envelope.model_copy(update={"writer_signature": None})
    return to_bytes(signer.sign(envelope) if signer is not None else envelope)


@pytest.mark.parametrize(
    ("signer", "kind"),
    [
        (None, "unsigned"),
        (Signer("enrollment-9", Ed25519PrivateKey.generate()), "unknown-key"),
        (OTHER_WRITER, "wrong-writer"),
        (Signer("enrollment-1", Ed25519PrivateKey.generate()), "bad-signature"),
    ],
    ids=["unsigned", "unknown-key", "another-topics-writer", "forged-with-a-known-key-id"],
)
def test_an_event_not_signed_by_its_topics_writer_is_unreadable(signer, kind):
    # A correctly hashed and chained event, appended by someone who is not the writer
    forged = resigned(log_of_one_subject()[0], signer)

    with pytest.raises(Unreadable) as caught:
        decode(forged, KEYRING, TOPIC)

    assert caught.value.kind == kind
    reader, applied = read_all([forged])
    assert applied == [] and reader.halt_of(TOPIC, 0).kind == kind


def test_the_writer_signature_is_outside_the_hash_and_survives_the_wire():
    value = log_of_one_subject()[0]
    recorded = decode(value, KEYRING, TOPIC)

    assert recorded.envelope.writer_signature is not None
    assert recorded.envelope.hash_is_valid()
    assert to_bytes(recorded.envelope) == value
