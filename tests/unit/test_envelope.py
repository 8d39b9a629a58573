"""The event envelope: hash over every other field, chained per stream, immutable, UTC times.

Rules from events/envelope.py and DESIGN.md section 3: ``hash`` is SHA-256 over the canonical
bytes (sorted-key JSON) of every field but ``hash``, including ``prev_hash``, so that an
altered, removed or reordered event is detected on replay.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from pydantic import ValidationError

from events.enrollment import SubjectEnrolled, SubjectRegistered, SubjectWaitlisted
from events.envelope import GENESIS_HASH, from_bytes, seal, to_bytes

from .builders import CORRELATION_ID, INVESTIGATOR, TRIAL_ID, at, envelope_fields, event_id

REGISTERED = SubjectRegistered(subject_id="MSK-0001", site_id="SITE-01")


def registration(**overrides):
    return seal(**envelope_fields(REGISTERED, **overrides))


def sha256_of(document: dict) -> str:
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def wire_json(envelope) -> dict:
    return orjson.loads(to_bytes(envelope))


# ---------------------------------------------------------------- the hash


def test_sealed_hash_is_sha256_of_the_sorted_key_json_of_every_other_field():
    envelope = registration()

    # The wire document, written out by hand: what a downstream consumer receives.
    body = {
        "event_id": "00000000-0000-0000-0000-000000000001",
        "event_type": "SubjectRegistered",
        "schema_version": 1,
        "trial_id": TRIAL_ID,
        "stream_id": "subject-MSK-0001",
        "stream_seq": 1,
        "occurred_at": "2025-03-03T09:00:00Z",
        "recorded_at": "2025-03-03T09:01:00Z",
        "actor": INVESTIGATOR,
        "reason": None,
        "correlation_id": str(CORRELATION_ID),
        "causation_id": None,
        "prev_hash": GENESIS_HASH,
        "payload": {"subject_id": "MSK-0001", "site_id": "SITE-01"},
    }
    assert envelope.hash == sha256_of(body)
    assert wire_json(envelope) == {**body, "hash": sha256_of(body)}


def test_wire_bytes_are_canonical_sorted_key_json():
    data = to_bytes(registration())

    assert data == orjson.dumps(orjson.loads(data), option=orjson.OPT_SORT_KEYS)


def test_round_trip_through_wire_bytes_keeps_the_hash_valid():
    envelope = registration(reason="re-consented after protocol amendment 2")

    again = from_bytes(to_bytes(envelope))

    assert again == envelope
    assert again.hash == envelope.hash
    assert again.hash_is_valid()


# Each row: one field altered on the wire after sealing, as a tampered or corrupted record.
TAMPERINGS = {
    "payload value": ("payload", {"subject_id": "MSK-0002", "site_id": "SITE-01"}),
    "stream_seq": ("stream_seq", 2),
    "actor role": ("actor", {"user_id": "dr-ortega", "role": "auditor"}),
    "actor user": ("actor", {"user_id": "someone-else", "role": "investigator"}),
    "occurred_at": ("occurred_at", "2025-03-03T09:00:01Z"),
    "recorded_at": ("recorded_at", "2025-03-04T09:01:00Z"),
    "prev_hash": ("prev_hash", "1" * 64),
    "event_id": ("event_id", "00000000-0000-0000-0000-000000000002"),
    "event_type": ("event_type", "SubjectEnrolled"),
    "schema_version": ("schema_version", 2),
    "trial_id": ("trial_id", "CART-OV-02"),
    "stream_id": ("stream_id", "subject-MSK-0002"),
    "reason": ("reason", "typo fixed"),
    "correlation_id": ("correlation_id", "22222222-2222-4222-8222-222222222222"),
    "causation_id": ("causation_id", "33333333-3333-4333-8333-333333333333"),
}


@pytest.mark.parametrize(("field", "value"), TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_changing_any_single_field_after_sealing_invalidates_the_hash(field, value):
    document = wire_json(registration())
    assert document[field] != value, "the row must really change the field"

    tampered = from_bytes(orjson.dumps({**document, field: value}))

    assert not tampered.hash_is_valid()


def test_every_field_but_the_hash_is_covered_by_a_tampering_row():
    covered = {field for field, _ in TAMPERINGS.values()}

    assert covered == set(wire_json(registration())) - {"hash"}


def test_a_forged_hash_is_detected():
    document = {**wire_json(registration()), "hash": "f" * 64}

    assert not from_bytes(orjson.dumps(document)).hash_is_valid()


# ---------------------------------------------------------------- immutability


@pytest.mark.parametrize(
    ("field", "value"),
    [("stream_seq", 2), ("hash", "0" * 64), ("payload", {}), ("actor", None)],
)
def test_an_envelope_cannot_be_edited(field, value):
    envelope = registration()

    with pytest.raises(ValidationError):
        setattr(envelope, field, value)


def test_the_actor_of_an_envelope_cannot_be_edited():
    envelope = registration()

    with pytest.raises(ValidationError):
        envelope.actor.role = "auditor"


def test_an_envelope_refuses_unknown_fields():
    with pytest.raises(ValidationError):
        registration(patient_name="Jane Doe")


# ---------------------------------------------------------------- times


def test_aware_times_in_another_zone_are_stored_in_utc():
    paris_winter = timezone(timedelta(hours=1))
    occurred = datetime(2025, 3, 3, 10, 30, tzinfo=paris_winter)

    envelope = registration(occurred_at=occurred, recorded_at=occurred + timedelta(minutes=5))

    assert envelope.occurred_at.utcoffset() == timedelta(0)
    assert envelope.occurred_at == occurred
    assert wire_json(envelope)["occurred_at"] == "2025-03-03T09:30:00Z"
    assert wire_json(envelope)["recorded_at"] == "2025-03-03T09:35:00Z"


def test_hash_of_an_event_sealed_in_another_zone_survives_a_round_trip():
    new_york = timezone(timedelta(hours=-5))
    envelope = registration(occurred_at=datetime(2025, 3, 3, 4, 0, 0, 250_000, tzinfo=new_york))

    again = from_bytes(to_bytes(envelope))

    assert again.hash_is_valid()
    assert again.hash == envelope.hash


def test_the_same_instant_in_two_zones_seals_to_the_same_hash():
    in_utc = registration(occurred_at=at(0))
    in_tokyo = registration(occurred_at=at(0).astimezone(timezone(timedelta(hours=9))))

    assert in_tokyo.hash == in_utc.hash


@pytest.mark.parametrize("field", ["occurred_at", "recorded_at"])
def test_naive_times_are_refused(field):
    with pytest.raises(ValidationError, match=field):
        registration(**{field: datetime(2025, 3, 3, 9, 0)})


# ---------------------------------------------------------------- prev_hash and the chain


@pytest.mark.parametrize(
    "prev_hash",
    ["0" * 63, "0" * 65, "g" * 64, "A" * 64, "", "0x" + "0" * 62],
    ids=["63 chars", "65 chars", "not hex", "uppercase", "empty", "0x prefix"],
)
def test_prev_hash_must_be_64_lowercase_hex_chars(prev_hash):
    # hashlib's hexdigest is lowercase: any other spelling could never equal a real hash.
    with pytest.raises(ValidationError, match="prev_hash"):
        registration(prev_hash=prev_hash)


def test_first_event_of_a_stream_chains_to_the_genesis_hash():
    assert GENESIS_HASH == "0" * 64
    assert registration().prev_hash == GENESIS_HASH


def chain_of_three():
    """Subject MSK-0001's stream: registered, waitlisted for DL1-IP, then given slot 3."""
    payloads = [
        REGISTERED,
        SubjectWaitlisted(subject_id="MSK-0001", cohort_id="DL1-IP", position=1),
        SubjectEnrolled(subject_id="MSK-0001", cohort_id="DL1-IP", slot=3),
    ]
    chain, prev_hash = [], GENESIS_HASH
    for seq, payload in enumerate(payloads, start=1):
        envelope = seal(
            **envelope_fields(
                payload,
                event_id=event_id(seq),
                stream_seq=seq,
                occurred_at=at(seq),
                prev_hash=prev_hash,
            )
        )
        chain.append(envelope)
        prev_hash = envelope.hash
    return chain


def test_a_chain_of_three_events_links_each_prev_hash_to_the_previous_hash():
    first, second, third = chain_of_three()

    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert len({first.hash, second.hash, third.hash}) == 3
    assert all(e.hash_is_valid() for e in (first, second, third))


def test_resealing_an_altered_event_breaks_the_link_to_its_successor():
    # Given a chain of three; When someone alters the second event and reseals it
    _, second, third = chain_of_three()
    altered = seal(**{**second.model_dump(exclude={"hash"}), "reason": "backdated"})

    # Then its own hash is valid, but the third event no longer points at it
    assert altered.hash_is_valid()
    assert third.prev_hash != altered.hash


def test_the_same_fields_always_seal_to_the_same_hash():
    assert registration().hash == registration().hash


def test_the_payload_of_an_envelope_cannot_be_edited_in_place():
    envelope = registration()

    with pytest.raises(TypeError):
        envelope.payload["subject_id"] = "MSK-0002"


def test_nothing_nested_in_a_payload_can_be_edited_either():
    from events.enrollment import CriterionResult, EligibilityAssessed

    assessed = EligibilityAssessed(subject_id="MSK-0001", criteria=[
        CriterionResult(criterion="msln-ihc", met=True, requirement="MSLN IHC >= 25%",
                        evidence="60% of tumour cells", value=60.0)])
    envelope = from_bytes(to_bytes(seal(**envelope_fields(assessed))))
    criteria = envelope.payload["criteria"]

    for edit in (
        lambda: criteria.append({}),
        lambda: criteria.__setitem__(0, {}),
        lambda: criteria[0].__setitem__("met", False),
        lambda: criteria[0].update(met=False),
        lambda: envelope.payload.pop("subject_id"),
        lambda: envelope.payload.setdefault("extra", 1),
    ):
        with pytest.raises(TypeError, match="immutable"):
            edit()
    assert envelope.hash_is_valid()


def test_a_frozen_payload_still_reads_serialises_and_copies_as_json():
    import copy
    import pickle

    envelope = registration()

    assert envelope.payload == REGISTERED.model_dump(mode="json")
    assert wire_json(envelope)["payload"] == REGISTERED.model_dump(mode="json")
    assert from_bytes(to_bytes(envelope)) == envelope
    assert pickle.loads(pickle.dumps(envelope)) == envelope
    assert copy.deepcopy(envelope) == envelope
    edited = dict(envelope.payload)
    edited["subject_id"] = "MSK-0002"  # a copy is an ordinary dict
    assert envelope.payload["subject_id"] != "MSK-0002"


def test_the_hash_covers_the_wire_document_but_its_hash_and_signature_whatever_is_set():
    """The hash is over the JSON the topic carries, less ``hash`` and ``writer_signature``:
    with an idempotency key, a reason, a causation, signed alone or in a batch."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from events.envelope import Idempotency
    from events.signing import Signer

    signer = Signer("enrollment-1", Ed25519PrivateKey.generate())
    key = Idempotency(key="k-1", request_sha256="a" * 64)
    plain = registration()
    keyed = registration(idempotency=key, reason="because", causation_id=event_id(7))
    batch = signer.sign_batch([registration(idempotency=key), registration(stream_seq=2),
                               registration(stream_seq=3)])
    for envelope in [plain, keyed, signer.sign(plain), signer.sign(keyed), *batch]:
        document = wire_json(envelope)
        document.pop("writer_signature", None)
        assert envelope.hash == sha256_of({k: v for k, v in document.items() if k != "hash"})
        assert envelope.hash_is_valid()
    assert "idempotency" in wire_json(keyed) and "idempotency" not in wire_json(plain)
    assert all(wire_json(e)["writer_signature"]["batch"]["size"] == 3 for e in batch)
