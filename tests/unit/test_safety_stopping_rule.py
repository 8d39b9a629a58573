"""The stopping rule and the safety review that lifts it.

Source: DOMAIN.md section 3 "Stopping rules" (default): any grade 5 event at least possibly
related pauses enrollment until a documented safety review. ``EnrollmentPaused`` and
``EnrollmentResumed`` are the contract enrollment follows.
"""

from __future__ import annotations

import pytest

from events.safety import EnrollmentPaused, EnrollmentResumed, SafetyReviewRecorded
from services.errors import NotFound, RuleViolated

from .test_safety_givens import (
    AE,
    DECIDER,
    SUBJECT,
    day,
    fatal_report,
    given,
    grade_crs,
    names,
    payloads,
    regrade,
    report,
    review,
    run,
    treated,
)

PAUSED = EnrollmentPaused(ae_id=AE, subject_id=SUBJECT, rule="grade5-related")


@pytest.mark.parametrize("attribution", ["possible", "probable", "definite"])
def test_a_related_grade_5_report_pauses_enrollment(attribution):
    events, state = run(given(treated()), fatal_report(attribution=attribution))

    assert payloads(events)[1:] == [PAUSED]
    assert events[1].stream_id == "safety-stopping-rule"
    assert state.enrollment_paused


@pytest.mark.parametrize("attribution", ["unrelated", "unlikely"])
def test_an_unrelated_grade_5_report_does_not_pause_enrollment(attribution):
    events, state = run(given(treated()), fatal_report(attribution=attribution))

    assert names(events) == ["AdverseEventReported"]
    assert not state.enrollment_paused


def test_a_grade_4_report_does_not_pause_enrollment():
    events, _state = run(given(treated()), report(grade=4, attribution="definite"))

    assert names(events) == ["AdverseEventReported"]


def test_a_regrade_to_related_grade_5_pauses_enrollment():
    events, _state = run(
        given(treated()),
        report(grade=4),
        regrade(day(3), grade=5, serious_criteria=("death",), reason="died of CRS on day 3"),
    )

    assert names(events) == ["AdverseEventReported", "AdverseEventRegraded", "EnrollmentPaused"]


def test_a_regrade_of_a_fatal_event_to_possibly_related_pauses_enrollment():
    events, _state = run(
        given(treated()),
        fatal_report(attribution="unlikely"),
        regrade(day(3), attribution="possible", reason="autopsy findings"),
    )

    assert payloads(events)[-1] == PAUSED


def test_death_due_to_crs_on_observation_pauses_enrollment():
    events, _state = run(given(treated()), report(), grade_crs(day(3), death=True))

    assert names(events)[-2:] == ["CrsGraded", "EnrollmentPaused"]


def test_one_ae_pauses_enrollment_once():
    events, _state = run(
        given(treated()),
        fatal_report(attribution="possible"),
        regrade(day(3), attribution="definite", reason="autopsy findings"),
    )

    assert names(events).count("EnrollmentPaused") == 1


def test_a_safety_review_that_allows_resumption_resumes_enrollment():
    _events, state = run(given(treated()), fatal_report())

    events, after = run(state, review(day(10)))

    assert payloads(events) == [
        SafetyReviewRecorded(
            review_id="SR-2026-01",
            reviewed_ae_ids=(AE,),
            allows_resumption=True,
            summary="Reviewed by the safety committee",
            reviewed_at=day(10),
        ),
        EnrollmentResumed(review_id="SR-2026-01", summary="Reviewed by the safety committee"),
    ]
    assert not after.enrollment_paused


def test_a_review_that_does_not_allow_resumption_keeps_enrollment_paused():
    _events, state = run(given(treated()), fatal_report())

    events, after = run(state, review(day(10), allows_resumption=False))

    assert names(events) == ["SafetyReviewRecorded"]
    assert after.enrollment_paused


def test_a_review_while_enrollment_goes_on_is_recorded_without_a_resumption():
    _events, state = run(given(treated()), report())

    events, _after = run(state, review(day(10)))

    assert names(events) == ["SafetyReviewRecorded"]


def test_resumption_needs_a_review_of_every_event_that_paused_enrollment():
    # Given two related deaths paused enrollment
    _events, state = run(
        given(treated(), treated("MSK-0008")),
        fatal_report(),
        fatal_report("AE-0008-01", subject_id="MSK-0008"),
    )

    # When a review of the first alone allows resumption, Then it is refused
    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(review(day(10), AE), state)
    assert refused.value.rule == "review-must-cover-every-pausing-event"
    assert refused.value.details["uncovered"] == ["AE-0008-01"]

    # And a review of both resumes enrollment
    events, after = run(state, review(day(10), AE, "AE-0008-01"))
    assert names(events) == ["SafetyReviewRecorded", "EnrollmentResumed"]
    assert not after.enrollment_paused


def test_a_new_death_after_resumption_pauses_enrollment_again():
    _events, state = run(given(treated(), treated("MSK-0008")), fatal_report(), review(day(10)))

    events, after = run(state, fatal_report("AE-0008-01", subject_id="MSK-0008"))

    assert names(events)[-1] == "EnrollmentPaused"
    assert after.pausing == ("AE-0008-01",)


def test_a_review_is_recorded_once():
    _events, state = run(given(treated()), fatal_report(), review(day(10), allows_resumption=False))

    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(review(day(11)), state)

    assert refused.value.rule == "safety-review-recorded-once"


def test_a_review_of_an_unknown_ae_is_refused():
    with pytest.raises(NotFound) as refused:
        DECIDER.decide(review(day(10), "AE-0007-99"), given(treated()))

    assert refused.value.rule == "ae-must-be-reported"
