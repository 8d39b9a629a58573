"""A bedside chain-of-identity mismatch leaves a trace.

Sources: DOMAIN.md 2.2 and 2.5 (at least two identifiers checked at the bedside by two people;
the chain of identity links patient, lot and bag). A mismatch is refused: the product is not
given (``bedside-coi-mismatch``, nothing appended). The near miss on patient identity is a
deviation to document: the refusal names the deviation command, which records
``BedsideIdentityMismatchRecorded`` on the stream of the subject the lot was made for, with what
was presented, by whom and when (decision 28). The lot's own identifiers are never echoed.
"""

from __future__ import annotations

from events.dosing import BedsideIdentityMismatchRecorded
from events.envelope import Actor
from services.decider import NewEvent
from services.dosing.decider import (
    COMMANDS,
    RecordBedsideIdentityMismatch,
    VerifyBedsideCoi,
)
from services.dosing.routes import SERVICE
from services.errors import NotFound
from trial.config import load_trial

from .test_dosing_facts import (
    COI,
    CONDITIONED,
    DECIDER,
    ENROLLED,
    LOT,
    NURSE,
    OTHER_COI,
    OTHER_SUBJECT,
    READY_TO_INFUSE,
    SUBJECT,
    enrolled,
    given,
    infuse,
    on_day,
    refused,
)

CHECKED_AT = on_day(0, -30)


def mismatch(by: Actor = NURSE, *, subject_id=SUBJECT, coi_id=COI, lot_id=LOT):
    return RecordBedsideIdentityMismatch(
        subject_id=subject_id, lot_id=lot_id, coi_id=coi_id, actor=by, occurred_at=CHECKED_AT
    )


def test_the_mismatch_refusal_names_the_deviation_command_and_appends_nothing():
    state = given(*CONDITIONED, enrolled(OTHER_SUBJECT))
    check = VerifyBedsideCoi(
        subject_id=OTHER_SUBJECT, lot_id=LOT, coi_id=COI, actor=NURSE, occurred_at=CHECKED_AT
    )

    refusal = refused(check, state)

    assert refusal.rule == "bedside-coi-mismatch"
    assert refusal.details["deviation_command"] == "record-bedside-identity-mismatch"
    assert "record-bedside-identity-mismatch" in refusal.message


def test_the_wrong_patient_at_the_bedside_is_recorded_as_a_deviation_of_the_lot_subject():
    # MSK-0008's wristband was read for MSK-0007's bag
    state = given(*CONDITIONED, enrolled(OTHER_SUBJECT))

    events = DECIDER.decide(mismatch(subject_id=OTHER_SUBJECT), state)

    assert events == [
        NewEvent(
            f"subject-{SUBJECT}",
            BedsideIdentityMismatchRecorded(
                subject_id=SUBJECT,
                lot_id=LOT,
                presented_subject_id=OTHER_SUBJECT,
                presented_coi_id=COI,
                mismatched=("subject_id",),
                detected_by="nurse-lee",
                detected_at=CHECKED_AT,
            ),
            CHECKED_AT,
        )
    ]


def test_a_wrong_chain_of_identity_id_is_recorded_without_echoing_the_right_one():
    [event] = DECIDER.decide(mismatch(coi_id=OTHER_COI), given(*CONDITIONED))

    deviation = event.payload
    assert deviation.mismatched == ("coi_id",)
    assert deviation.presented_coi_id == OTHER_COI
    assert COI not in deviation.model_dump_json()


def test_both_identifiers_wrong_are_both_named():
    state = given(*CONDITIONED, enrolled(OTHER_SUBJECT))

    [event] = DECIDER.decide(mismatch(subject_id=OTHER_SUBJECT, coi_id=OTHER_COI), state)

    assert event.payload.mismatched == ("subject_id", "coi_id")


def test_matching_identifiers_are_not_a_deviation():
    refusal = refused(mismatch(), given(*CONDITIONED))

    assert refusal.rule == "identity-mismatch-must-differ"


def test_a_lot_without_a_chain_of_identity_has_no_mismatch_to_record():
    refusal = refused(mismatch(lot_id="LOT-0007-Z"), given(*ENROLLED), NotFound)

    assert refusal.rule == "lot-coi-must-be-known"


def test_a_recorded_deviation_neither_counts_as_a_check_nor_blocks_the_infusion():
    [deviation] = DECIDER.decide(mismatch(coi_id=OTHER_COI), given(*READY_TO_INFUSE))
    state = given(*READY_TO_INFUSE, deviation.payload)

    assert state == given(*READY_TO_INFUSE)
    [infusion] = DECIDER.decide(infuse(), state)
    assert infusion.payload.event_type == "InfusionRecorded"


def test_the_deviation_command_is_routed_and_permitted_to_the_bedside_staff():
    assert COMMANDS["record-bedside-identity-mismatch"] is RecordBedsideIdentityMismatch
    routes = {route.command: route.path for route in SERVICE.routes}
    assert routes["record-bedside-identity-mismatch"] == "/dosing/identity-mismatches"
    assert load_trial().roles_for("record-bedside-identity-mismatch") == {
        "investigator",
        "site_coordinator",
    }


def test_a_wristband_of_someone_outside_the_trial_is_a_mismatch_not_an_unknown_subject():
    # MSK-0099 is enrolled nowhere: the bag of MSK-0007 was read against a stranger's wristband
    check = VerifyBedsideCoi(
        subject_id="MSK-0099", lot_id=LOT, coi_id=COI, actor=NURSE, occurred_at=CHECKED_AT
    )

    refusal = refused(check, given(*CONDITIONED))

    assert refusal.rule == "bedside-coi-mismatch"
    assert refusal.details["mismatched"] == ["subject_id"]
    [event] = DECIDER.decide(mismatch(subject_id="MSK-0099"), given(*CONDITIONED))
    assert event.payload.presented_subject_id == "MSK-0099"
