"""Dosing follows the stopping rule's pause.

Source: DOMAIN.md section 3, stopping rules (the project's default): any grade 5 event at least
possibly related pauses the trial until a documented safety review; the pause suspends
enrollment *and dosing*, so an already-enrolled subject is neither conditioned nor infused
while it stands. The safety service records the pause (``EnrollmentPaused``) and its lifting
by the review (``EnrollmentResumed``); dosing follows the safety topic.
"""

from __future__ import annotations

from events.safety import EnrollmentPaused, EnrollmentResumed
from services.dosing.decider import VerifyBedsideCoi

from .test_dosing_facts import (
    COI,
    CONDITIONED,
    DECIDER,
    LOT,
    NURSE,
    PRODUCT_AVAILABLE,
    READY_TO_INFUSE,
    SUBJECT,
    conditioning_day,
    given,
    infuse,
    on_day,
    record_day,
    refused,
)

PAUSED = EnrollmentPaused(ae_id="AE-0009-01", subject_id="MSK-0009", rule="grade5-related")
"""A grade 5 related event of another subject, MSK-0009, fired the stopping rule."""
RESUMED = EnrollmentResumed(review_id="SR-2025-01", summary="reviewed; the trial may go on")


def test_a_paused_trial_refuses_conditioning_day_one_of_an_enrolled_subject():
    state = given(*PRODUCT_AVAILABLE, PAUSED)

    refusal = refused(record_day(1), state)

    assert refusal.rule == "dosing-paused"
    assert refusal.details == {
        "subject_id": SUBJECT,
        "ae_ids": ["AE-0009-01"],
        "stopping_rule": "grade5-related",
    }
    assert "AE-0009-01" in refusal.message and "safety review" in refusal.message


def test_a_pause_between_conditioning_days_refuses_the_next_day():
    state = given(*PRODUCT_AVAILABLE, conditioning_day(1), PAUSED)

    assert refused(record_day(2), state).rule == "dosing-paused"


def test_a_paused_trial_refuses_the_infusion_of_a_subject_ready_for_it():
    state = given(*READY_TO_INFUSE, PAUSED)

    refusal = refused(infuse(), state)

    assert refusal.rule == "dosing-paused"
    assert refusal.details["ae_ids"] == ["AE-0009-01"]


def test_every_event_still_pausing_is_named():
    second = EnrollmentPaused(ae_id="AE-0010-02", subject_id="MSK-0010", rule="grade5-related")
    state = given(*READY_TO_INFUSE, PAUSED, second)

    assert refused(infuse(), state).details["ae_ids"] == ["AE-0009-01", "AE-0010-02"]


def test_after_the_safety_review_resumes_the_trial_the_infusion_is_recorded():
    state = given(*READY_TO_INFUSE, PAUSED, RESUMED)

    [event] = DECIDER.decide(infuse(), state)

    assert event.payload.event_type == "InfusionRecorded"


def test_after_the_safety_review_conditioning_goes_on():
    state = given(*CONDITIONED[:-1], PAUSED, RESUMED)

    [event] = DECIDER.decide(record_day(3), state)

    assert event.payload.event_type == "ConditioningDayRecorded"


def test_a_new_pause_after_a_review_refuses_dosing_again():
    state = given(*READY_TO_INFUSE, PAUSED, RESUMED, PAUSED)

    assert refused(infuse(), state).rule == "dosing-paused"


def test_the_bedside_check_is_not_dosing_and_is_recorded_during_a_pause():
    state = given(*CONDITIONED, PAUSED)
    check = VerifyBedsideCoi(
        subject_id=SUBJECT, lot_id=LOT, coi_id=COI, actor=NURSE, occurred_at=on_day(0, -30)
    )

    [event] = DECIDER.decide(check, state)

    assert event.payload.event_type == "BedsideCoiVerified"


def test_a_pause_changes_nothing_else_dosing_knows():
    before = given(*READY_TO_INFUSE)
    after = given(*READY_TO_INFUSE, PAUSED, RESUMED)

    assert after == before


def test_the_pause_does_not_depend_on_how_the_safety_topic_interleaves_with_the_others():
    from .test_dosing_facts import interleavings

    from_safety = [PAUSED, RESUMED, PAUSED]
    states = {repr(given(*order)) for order in interleavings(READY_TO_INFUSE[:4], from_safety)}

    assert len(states) == 1
    assert [pause.ae_id for pause in given(*READY_TO_INFUSE, *from_safety).pauses] == [
        "AE-0009-01"
    ]
