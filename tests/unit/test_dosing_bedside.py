"""The bedside chain-of-identity check before the infusion.

Sources: DOMAIN.md 2.2 (a chain-of-identity id links patient, lot and infusion bag; regulators
expect at least two unique identifiers checked at each hand-off and at the bedside) and 2.5
(bedside verification by two people). The two product identifiers are the chain-of-identity id
and the lot id, both as released (LotReleased): each person presents them with the subject id.
The lot's expected values are never echoed in a refusal, so a check cannot be passed by copying
the answer from an error message.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import ValidationError

from events.dosing import BedsideCoiVerified
from events.envelope import Actor
from events.registry import EventPayload
from services.decider import NewEvent
from services.dosing.decider import VerifyBedsideCoi
from services.errors import NotFound, RuleViolated

from .test_dosing_facts import (
    CHECK_TIMES,
    COI,
    CONDITIONED,
    DECIDER,
    DOCTOR,
    ENROLLED,
    LOT,
    NURSE,
    OTHER_COI,
    OTHER_LOT,
    OTHER_SUBJECT,
    SUBJECT,
    checked,
    cohort_opened,
    enrolled,
    exceptionally_released,
    given,
    infused,
    on_day,
    out_of_specification,
    refused,
    released,
    withdrawn,
)


def verify(by: Actor, *, subject_id=SUBJECT, lot_id=LOT, coi_id=COI, at=None) -> VerifyBedsideCoi:
    return VerifyBedsideCoi(
        subject_id=subject_id,
        lot_id=lot_id,
        coi_id=coi_id,
        actor=by,
        occurred_at=at or CHECK_TIMES[by.user_id],
    )


# ---------------------------------------------------------------- two people, matching ids


def test_a_first_check_with_matching_identifiers_is_recorded_with_who_made_it():
    state = given(*CONDITIONED)

    events = DECIDER.decide(verify(NURSE), state)

    assert events == [NewEvent(f"subject-{SUBJECT}", checked(NURSE), CHECK_TIMES["nurse-lee"])]


def test_a_second_person_completes_the_check():
    state = given(*CONDITIONED, checked(NURSE))

    (event,) = DECIDER.decide(verify(DOCTOR), state)

    assert event.payload == checked(DOCTOR)


def test_the_same_person_checking_twice_is_refused():
    # Given the nurse checked the bag; When the nurse checks it again (another role, same user)
    state = given(*CONDITIONED, checked(NURSE))
    same_user = Actor(user_id="nurse-lee", role="investigator")

    error = refused(verify(same_user, at=on_day(0, -15)), state)

    assert error.rule == "bedside-coi-by-two-people"
    assert error.message == (
        "nurse-lee already checked lot LOT-0007-A at the bedside; "
        "the second check must be made by a different person"
    )
    assert error.details == {"lot_id": LOT, "verified_by": ["nurse-lee"]}


def test_a_third_check_after_two_people_is_refused():
    state = given(*CONDITIONED, checked(NURSE), checked(DOCTOR))
    third = Actor(user_id="dr-kim", role="investigator")

    error = refused(verify(third, at=on_day(0, -5)), state)

    assert error.rule == "bedside-coi-by-two-people"
    assert error.details["verified_by"] == ["nurse-lee", "dr-ortega"]


def test_checks_of_one_lot_do_not_count_for_another():
    state = given(
        *CONDITIONED,
        checked(NURSE, lot_id="LOT-0007-B", coi_id="COI-MSK-0007-02"),
        released("LOT-0007-B", SUBJECT, "COI-MSK-0007-02"),
    )

    (event,) = DECIDER.decide(verify(NURSE), state)

    assert event.payload.lot_id == LOT


# ---------------------------------------------------------------- identifiers that do not match

MISMATCHES = [
    ("wrong COI id", {"coi_id": OTHER_COI}, ["coi_id"]),
    ("COI id with a typo", {"coi_id": "COI-MSK-0007-10"}, ["coi_id"]),
    ("COI id in lower case", {"coi_id": COI.lower()}, ["coi_id"]),
    ("wrong patient", {"subject_id": OTHER_SUBJECT}, ["subject_id"]),
    (
        "wrong patient and wrong COI id",
        {"subject_id": OTHER_SUBJECT, "coi_id": OTHER_COI},
        ["subject_id", "coi_id"],
    ),
]


@pytest.mark.parametrize(
    ("presented", "mismatched"),
    [case[1:] for case in MISMATCHES],
    ids=[case[0] for case in MISMATCHES],
)
def test_identifiers_that_do_not_match_the_released_lot_are_refused(presented, mismatched):
    # Given MSK-0008 is enrolled too, so that a wrong patient is a real, treatable subject
    state = given(*CONDITIONED, enrolled(OTHER_SUBJECT))

    error = refused(verify(NURSE, **presented), state)

    assert error.rule == "bedside-coi-mismatch"
    assert error.details["mismatched"] == mismatched
    assert error.details["presented"] == presented
    assert "it cannot be infused" in error.message
    assert COI not in error.message
    assert COI not in str(error.details)


def test_the_lot_of_another_subject_presented_for_this_subject_is_refused():
    # The ids of MSK-0008's bag are right for that bag, but the patient is MSK-0007.
    state = given(*CONDITIONED, released(OTHER_LOT, OTHER_SUBJECT, OTHER_COI))

    error = refused(verify(NURSE, lot_id=OTHER_LOT, coi_id=OTHER_COI), state)

    assert error.rule == "bedside-coi-mismatch"
    assert error.details["mismatched"] == ["subject_id"]


def test_a_lot_without_a_chain_of_identity_on_record_cannot_be_checked():
    state = given(*ENROLLED)

    error = refused(verify(NURSE, lot_id="LOT-0007-Z"), state, NotFound)

    assert error.rule == "lot-coi-must-be-known"
    assert error.status == 404
    assert error.message == (
        "lot LOT-0007-Z has no chain-of-identity id on record (last manufacturing event: none); "
        "the bedside check cannot be made"
    )


class UncontractedApheresisCollected(EventPayload):
    """A manufacturing fact outside the contract that carries the lot's chain-of-identity id."""

    event_type: ClassVar[str] = "UncontractedApheresisCollected"  # never registered
    schema_version: ClassVar[int] = 1
    context: ClassVar[str] = "manufacturing"
    lot_id: str
    subject_id: str
    coi_id: str


def test_an_exceptionally_released_lot_is_checked_against_the_coi_manufacturing_issued():
    # An out-of-specification lot never had a LotReleased to carry its COI id; the id issued
    # at collection serves.
    state = given(
        *ENROLLED,
        UncontractedApheresisCollected(lot_id=LOT, subject_id=SUBJECT, coi_id=COI),
        out_of_specification(),
        exceptionally_released(),
    )

    (event,) = DECIDER.decide(verify(NURSE), state)
    assert event.payload.coi_id == COI
    assert refused(verify(DOCTOR, coi_id=OTHER_COI), state).rule == "bedside-coi-mismatch"


def test_an_exceptionally_released_lot_whose_coi_was_never_seen_cannot_be_checked():
    state = given(*ENROLLED, out_of_specification(), exceptionally_released())

    error = refused(verify(NURSE), state, NotFound)

    assert error.rule == "lot-coi-must-be-known"
    assert "last manufacturing event: ExceptionalReleaseApproved" in error.message


# ---------------------------------------------------------------- who may be checked

SUBJECT_STATES = [
    ("not enrolled", [cohort_opened(), released()], NotFound, "subject-must-be-enrolled"),
    ("withdrawn", [*CONDITIONED, withdrawn()], RuleViolated, "subject-must-not-be-withdrawn"),
    ("already infused", [*CONDITIONED, infused()], RuleViolated, "one-infusion-per-subject"),
]


@pytest.mark.parametrize(
    ("facts", "error", "rule"),
    [case[1:] for case in SUBJECT_STATES],
    ids=[case[0] for case in SUBJECT_STATES],
)
def test_only_an_enrolled_subject_not_yet_infused_is_checked(facts, error, rule):
    refusal = refused(verify(NURSE), given(*facts), error)

    assert refusal.rule == rule
    assert refusal.message.endswith("no bedside check can be recorded")


# ---------------------------------------------------------------- the command


def test_the_checking_person_is_part_of_the_command():
    body = {"subject_id": SUBJECT, "lot_id": LOT, "coi_id": COI, "occurred_at": on_day(0)}

    with pytest.raises(ValidationError, match="actor"):
        VerifyBedsideCoi.model_validate(body)


def test_a_verification_event_names_the_person():
    with pytest.raises(ValidationError, match="verified_by"):
        BedsideCoiVerified(
            subject_id=SUBJECT, lot_id=LOT, coi_id=COI, verified_by="", verified_at=on_day(0)
        )
