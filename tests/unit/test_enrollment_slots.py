"""Slots: who may be enrolled, the trial-wide waiting list, the safety pause, withdrawal and
what it does to the slot, and eligibility re-confirmed once the product is released.

Sources: DOMAIN.md section 2.1 (eligibility confirmed -> enrolled into a cohort slot or a
waiting list), section 3 (stopping rule: a grade 5 event at least possibly related pauses
enrollment until a documented safety review), section 1 (sibling trial NCT04577326:
eligibility re-checked after successful manufacturing) and section 2.3 (an OOS lot is infused
only on an exceptional release). The trial-wide waiting list and the slot kept after infusion
are the project's choices, documented in services/enrollment/slots.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from events.dosing import InfusionRecorded
from events.enrollment import (
    EligibilityReconfirmed,
    SlotReleased,
    SubjectEnrolled,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from events.manufacturing import ExceptionalReleaseApproved, LotOutOfSpecification, LotReleased
from events.registry import EventPayload
from events.safety import EnrollmentPaused, EnrollmentResumed
from services.decider import NewEvent
from services.enrollment.decider import (
    EnrollSubject,
    ReconfirmEligibility,
    WithdrawSubject,
    evolve,
    fold,
    make_decider,
)
from services.errors import NotFound, RuleViolated
from trial.config import SHIPPED, load_trial

from .builders import (
    MONDAY_9AM,
    at,
    cohort_opened,
    eligible_subject,
    subject_consented,
    subject_enrolled,
    subject_prescreened,
    subject_registered,
    subject_screen_failed,
    subject_waitlisted,
    subject_withdrawn,
)

TRIAL = load_trial(SHIPPED)
decide = make_decider(TRIAL).decide
LOT = "LOT-0001-A"


def given(*facts: NewEvent | EventPayload):
    return fold([f.payload if isinstance(f, NewEvent) else f for f in facts])


def then(state, events):
    return fold([e.payload for e in events], state)


def enroll(subject_id, cohort_id="DL1-IP", *, waitlist_if_full=False, reason=None, minute=0):
    return EnrollSubject(
        subject_id=subject_id,
        cohort_id=cohort_id,
        waitlist_if_full=waitlist_if_full,
        reason=reason,
        occurred_at=at(minute),
    )


def withdraw(subject_id, reason_code="consent-withdrawn", reason=None):
    return WithdrawSubject(
        subject_id=subject_id, reason_code=reason_code, reason=reason, occurred_at=at(60)
    )


def reconfirm(subject_id="MSK-0001", lot_id=LOT):
    return ReconfirmEligibility(subject_id=subject_id, lot_id=lot_id, occurred_at=at(90))


def enrolled(subject_id, cohort_id="DL1-IP", slot=1):
    return [*eligible_subject(subject_id), subject_enrolled(subject_id, cohort_id, slot)]


# Upstream facts, as the manufacturing, dosing and safety contexts record them.


def released(subject_id="MSK-0001", lot_id=LOT, conditional=False):
    return LotReleased(
        lot_id=lot_id,
        subject_id=subject_id,
        coi_id=f"COI-{subject_id}-01",
        total_car_t_cells=2.1e9,
        conditional=conditional,
    )


def out_of_specification(subject_id="MSK-0001", lot_id=LOT, after_release=False):
    return LotOutOfSpecification(
        lot_id=lot_id,
        subject_id=subject_id,
        failed_tests=("sterility",),
        after_release=after_release,
    )


def exceptional_release(subject_id="MSK-0001", lot_id=LOT):
    return ExceptionalReleaseApproved(
        lot_id=lot_id, subject_id=subject_id, investigator_id="dr-ortega", sponsor_id="sp-1"
    )


def infused(subject_id="MSK-0001", lot_id=LOT):
    return InfusionRecorded(
        subject_id=subject_id,
        lot_id=lot_id,
        cohort_id="DL1-IP",
        dose_level="DL1",
        target_cells_per_kg=1e6,
        weight_kg=70.0,
        cells_infused=7.0e7,
        route="intraperitoneal",
        infused_at=MONDAY_9AM + timedelta(days=20),
    )


PAUSED = EnrollmentPaused(ae_id="AE-0003-01", subject_id="MSK-0003", rule="grade5-related")
RESUMED = EnrollmentResumed(review_id="SR-2025-01", summary="reviewed; not product related")


# ---------------------------------------------------------------- who may take a slot


def not_assessed(subject_id):
    return [
        subject_registered(subject_id),
        subject_prescreened(subject_id),
        subject_consented(subject_id),
    ]


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        (not_assessed, "subject-must-be-eligible"),
        (lambda s: [*eligible_subject(s), subject_screen_failed(s)], "subject-screen-failed"),
        (lambda s: [*eligible_subject(s), subject_withdrawn(s)], "subject-withdrawn"),
    ],
    ids=["consented, not yet assessed", "screen failed", "withdrawn"],
)
def test_only_an_eligible_subject_still_in_the_study_takes_a_slot(path, rule):
    state = given(cohort_opened("DL1-IP"), *path("MSK-0001"))

    with pytest.raises(RuleViolated) as refused:
        decide(enroll("MSK-0001"), state)

    assert refused.value.rule == rule
    assert refused.value.details["subject_id"] == "MSK-0001"


# ---------------------------------------------------------------- the waiting list


def waiting_list_and_a_freed_slot():
    """DL1-IP (3) was full, MSK-0004 then MSK-0005 wait; MSK-0002 withdrew before infusion
    and gave slot 2 back; MSK-0009 has just become eligible."""
    state = given(
        cohort_opened("DL1-IP", 3),
        *enrolled("MSK-0001", slot=1),
        *enrolled("MSK-0002", slot=2),
        *enrolled("MSK-0003", slot=3),
        *eligible_subject("MSK-0004"),
        subject_waitlisted("MSK-0004", "DL1-IP", 1),
        *eligible_subject("MSK-0005"),
        subject_waitlisted("MSK-0005", "DL1-IP", 2),
    )
    state = then(state, decide(withdraw("MSK-0002"), state))
    return then(state, eligible_subject("MSK-0009"))


def test_the_freed_slot_goes_to_the_first_in_line():
    state = waiting_list_and_a_freed_slot()

    (event,) = decide(enroll("MSK-0004"), state)

    assert event.payload == SubjectEnrolled(subject_id="MSK-0004", cohort_id="DL1-IP", slot=2)
    assert then(state, [event]).waiting == ("MSK-0005",)


@pytest.mark.parametrize("subject_id", ["MSK-0005", "MSK-0009"], ids=["second in line", "new"])
def test_no_one_else_takes_the_slot_of_the_first_in_line(subject_id):
    state = waiting_list_and_a_freed_slot()

    with pytest.raises(RuleViolated) as refused:
        decide(enroll(subject_id), state)

    assert refused.value.rule == "waiting-list-first-come"
    assert refused.value.details["first_in_line"] == "MSK-0004"
    assert refused.value.message.startswith("MSK-0004 is first in line for the next slot")


def test_a_new_subject_who_asks_for_the_waiting_list_joins_its_end_even_with_a_slot_free():
    state = waiting_list_and_a_freed_slot()

    (event,) = decide(enroll("MSK-0009", waitlist_if_full=True), state)

    assert event.payload == SubjectWaitlisted(subject_id="MSK-0009", cohort_id="DL1-IP", position=3)


def test_with_a_reason_the_slot_may_go_out_of_turn_and_those_passed_over_are_recorded():
    state = waiting_list_and_a_freed_slot()

    (event,) = decide(enroll("MSK-0005", reason="MSK-0004 is in hospital this week"), state)

    assert event.payload == SubjectEnrolled(
        subject_id="MSK-0005", cohort_id="DL1-IP", slot=2, passed_over=("MSK-0004",)
    )
    assert then(state, [event]).waiting == ("MSK-0004",)


def test_a_withdrawn_subject_leaves_the_waiting_list_and_the_next_is_first():
    state = waiting_list_and_a_freed_slot()
    state = then(state, decide(withdraw("MSK-0004"), state))

    (event,) = decide(enroll("MSK-0005"), state)

    assert state.waiting == ("MSK-0005",)
    assert event.payload == SubjectEnrolled(subject_id="MSK-0005", cohort_id="DL1-IP", slot=2)


# ---------------------------------------------------------------- the safety pause


def test_while_enrollment_is_paused_enroll_subject_is_refused_naming_the_pause_and_the_ae():
    state = given(cohort_opened("DL1-IP"), *eligible_subject("MSK-0001"), PAUSED)

    for command in (enroll("MSK-0001"), enroll("MSK-0001", waitlist_if_full=True)):
        with pytest.raises(RuleViolated) as refused:
            decide(command, state)
        assert refused.value.rule == "enrollment-paused"
        assert refused.value.status == 409
        assert refused.value.details == {"ae_id": "AE-0003-01", "stopping_rule": "grade5-related"}
        assert "AE-0003-01" in refused.value.message
        assert "grade5-related" in refused.value.message


def test_a_documented_safety_review_lifts_the_pause():
    state = given(cohort_opened("DL1-IP"), *eligible_subject("MSK-0001"), PAUSED, RESUMED)

    (event,) = decide(enroll("MSK-0001"), state)

    assert event.payload.slot == 1


def test_the_safety_topics_last_word_decides():
    state = given(cohort_opened("DL1-IP"), *eligible_subject("MSK-0001"), PAUSED, RESUMED, PAUSED)

    with pytest.raises(RuleViolated, match="AE-0003-01"):
        decide(enroll("MSK-0001"), state)


def test_the_pause_stops_enrollment_only_not_withdrawal():
    state = given(cohort_opened("DL1-IP"), *enrolled("MSK-0001"), PAUSED)

    events = decide(withdraw("MSK-0001", "adverse-event"), state)

    assert [type(e.payload) for e in events] == [SubjectWithdrawn, SlotReleased]


# ---------------------------------------------------------------- withdrawal


def test_a_withdrawal_before_infusion_releases_the_slot():
    state = given(cohort_opened("DL1-IP"), *enrolled("MSK-0001", slot=1))

    events = decide(withdraw("MSK-0001", "manufacturing-failure"), state)

    assert [e.payload for e in events] == [
        SubjectWithdrawn(subject_id="MSK-0001", reason_code="manufacturing-failure"),
        SlotReleased(subject_id="MSK-0001", cohort_id="DL1-IP", slot=1),
    ]
    assert all(e.stream_id == "subject-MSK-0001" for e in events)
    assert then(state, events).cohorts["DL1-IP"].free_slot() == 1


@pytest.mark.parametrize("infusion_first", [True, False], ids=["as on restart", "as live"])
def test_a_withdrawal_after_infusion_keeps_the_slot_the_subject_was_treated(infusion_first):
    own = [cohort_opened("DL1-IP"), *enrolled("MSK-0001", slot=1)]
    state = given(infused(), *own) if infusion_first else given(*own, infused())

    events = decide(withdraw("MSK-0001", "disease-progression"), state)

    assert [e.payload for e in events] == [
        SubjectWithdrawn(subject_id="MSK-0001", reason_code="disease-progression")
    ]
    assert then(state, events).cohorts["DL1-IP"].slots == ((1, "MSK-0001"),)


def test_a_waiting_subject_who_withdraws_leaves_the_waiting_list_only():
    state = given(
        cohort_opened("DL1-IP", 1),
        *enrolled("MSK-0001"),
        *eligible_subject("MSK-0002"),
        subject_waitlisted("MSK-0002", "DL1-IP", 1),
    )

    events = decide(withdraw("MSK-0002"), state)

    assert [type(e.payload) for e in events] == [SubjectWithdrawn]
    assert then(state, events).waiting == ()


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        (lambda s: [*eligible_subject(s), subject_withdrawn(s)], "subject-withdrawn"),
        (lambda s: [*eligible_subject(s), subject_screen_failed(s)], "subject-screen-failed"),
        (lambda s: [subject_registered(s)], "consent-before-study-procedures"),
    ],
    ids=["twice", "after a screen failure", "before consent"],
)
def test_a_withdrawal_is_refused_for_a_subject_not_in_the_study(path, rule):
    with pytest.raises(RuleViolated) as refused:
        decide(withdraw("MSK-0001"), given(*path("MSK-0001")))

    assert refused.value.rule == rule


def test_an_unregistered_subject_cannot_be_withdrawn():
    with pytest.raises(NotFound):
        decide(withdraw("MSK-0404"), given())


def test_a_withdrawal_for_another_reason_says_which():
    with pytest.raises(ValidationError, match="reason is required when reason_code is 'other'"):
        withdraw("MSK-0001", "other")
    assert withdraw("MSK-0001", "other", "moved abroad").reason == "moved abroad"


# ---------------------------------------------------------------- re-confirmation after release


@pytest.mark.parametrize(
    "lot_history",
    [
        [released()],
        [released(conditional=True)],
        [out_of_specification(), exceptional_release()],
    ],
    ids=["released", "released conditionally", "exceptional release after OOS"],
)
def test_eligibility_is_reconfirmed_for_a_lot_of_the_subject_that_was_released(lot_history):
    state = given(*lot_history, cohort_opened("DL1-IP"), *enrolled("MSK-0001"))

    events = decide(reconfirm(), state)

    assert events == [
        NewEvent(
            "subject-MSK-0001",
            EligibilityReconfirmed(subject_id="MSK-0001", lot_id=LOT),
            at(90),
        )
    ]


@pytest.mark.parametrize(
    ("lot_history", "rule", "message"),
    [
        ([], "lot-must-be-released", f"no release of lot {LOT} has been recorded by manufacturing"),
        (
            [out_of_specification()],
            "lot-must-be-released",
            f"lot {LOT} is out of specification (sterility) without an exceptional release",
        ),
        (
            [released(), out_of_specification(after_release=True)],
            "lot-must-be-released",
            f"lot {LOT} is out of specification (sterility) without an exceptional release",
        ),
        (
            [released("MSK-0002")],
            "lot-of-the-subject",
            f"lot {LOT} was made for subject MSK-0002, not MSK-0001",
        ),
    ],
    ids=["no release", "out of specification", "failed after release", "another subject's"],
)
def test_eligibility_is_not_reconfirmed_without_a_released_lot_of_the_subject(
    lot_history, rule, message
):
    state = given(cohort_opened("DL1-IP"), *enrolled("MSK-0001"), *lot_history)

    with pytest.raises(RuleViolated) as refused:
        decide(reconfirm(), state)

    assert (refused.value.rule, refused.value.message) == (rule, message)


@pytest.mark.parametrize(
    ("facts", "rule"),
    [
        ([*eligible_subject("MSK-0001")], "subject-must-hold-a-slot"),
        ([*enrolled("MSK-0001"), subject_withdrawn("MSK-0001")], "subject-withdrawn"),
        ([*enrolled("MSK-0001"), infused()], "reconfirmation-before-infusion"),
        (
            [
                *enrolled("MSK-0001"),
                NewEvent(
                    "subject-MSK-0001",
                    EligibilityReconfirmed(subject_id="MSK-0001", lot_id=LOT),
                    MONDAY_9AM,
                ),
            ],
            "eligibility-reconfirmed-once-per-lot",
        ),
    ],
    ids=["not enrolled", "withdrawn", "already infused", "twice for one lot"],
)
def test_reconfirmation_is_for_an_enrolled_subject_before_infusion_once_per_lot(facts, rule):
    state = given(released(), cohort_opened("DL1-IP"), *facts)

    with pytest.raises(RuleViolated) as refused:
        decide(reconfirm(), state)

    assert refused.value.rule == rule


def test_a_second_lot_is_reconfirmed_again():
    state = given(
        released(), released(lot_id="LOT-0001-B"), cohort_opened("DL1-IP"), *enrolled("MSK-0001")
    )
    state = then(state, decide(reconfirm(), state))

    (event,) = decide(reconfirm(lot_id="LOT-0001-B"), state)

    assert event.payload.lot_id == "LOT-0001-B"
    assert evolve(state, event.payload).subjects["MSK-0001"].reconfirmed_lots == (LOT, "LOT-0001-B")
