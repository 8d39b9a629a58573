"""Closing a subject's DLT evaluation: when a treated subject counts for the dose-escalation
design.

Source: DOMAIN.md section 3 ("a patient is DLT-evaluable when treated and followed through the
window, or earlier with a DLT"; default window 28 days, the trial file's ``dlt.window_days``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events.safety import DltEvaluationCompleted
from services.errors import NotFound, RuleViolated
from services.safety.commands import RecordDltEvaluation

from .test_safety_givens import (
    DECIDER,
    SUBJECT,
    adjudicate,
    day,
    given,
    grade_crs,
    improved,
    registered,
    report,
    run,
    treated,
)


def evaluate(at, subject_id: str = SUBJECT) -> RecordDltEvaluation:
    return RecordDltEvaluation(subject_id=subject_id, occurred_at=at)


def refused(state, command) -> RuleViolated | NotFound:
    with pytest.raises((RuleViolated, NotFound)) as caught:
        DECIDER.decide(command, state)
    error = caught.value
    assert isinstance(error, RuleViolated | NotFound)
    return error


def test_a_subject_without_dlt_is_evaluable_once_the_28_day_window_has_ended():
    events, _state = run(given(treated()), evaluate(day(29)))
    [new] = events
    assert new.payload == DltEvaluationCompleted(
        subject_id=SUBJECT, cohort_id="DL1-IP", dose_level="DL1", evaluated_at=day(29),
        window_days=28, dlt=False, dlt_ae_ids=(),
    )


def test_a_subject_without_dlt_is_not_evaluable_while_the_window_runs():
    error = refused(given(treated()), evaluate(day(27, hours=23)))
    assert error.rule == "dlt-window-open"
    # Infused on 2 March in New York: day 28 is 30 March and ends at midnight EDT (UTC-4)
    assert "2026-03-31T00:00:00-04:00" in error.message


def test_the_evaluation_cannot_close_on_day_28_in_new_york_since_an_onset_that_day_counts():
    # 30 March 23:30 EDT is 31 March 03:30 UTC, yet still day 28 at the sponsor
    late_on_day_28 = datetime(2026, 3, 31, 3, 30, tzinfo=UTC)
    assert refused(given(treated()), evaluate(late_on_day_28)).rule == "dlt-window-open"
    # At midnight in New York the window is over
    events, _state = run(given(treated()), evaluate(datetime(2026, 3, 31, 4, 0, tzinfo=UTC)))
    assert events[0].payload.dlt is False


def test_a_subject_with_a_dlt_is_evaluable_at_once():
    _events, state = run(
        given(treated()), report(), grade_crs(day(2), hypotension="one-vasopressor"),
    )
    _events, state = run(state, adjudicate(day(6)))
    events, _state = run(state, evaluate(day(6)))
    assert (events[0].payload.dlt, events[0].payload.dlt_ae_ids) == (True, ("AE-0007-01",))


def test_an_unadjudicated_severe_ae_holds_the_evaluation():
    _events, state = run(
        given(treated()), report(), grade_crs(day(2), hypotension="one-vasopressor"),
    )
    error = refused(state, evaluate(day(29)))
    assert error.rule == "dlt-adjudications-pending" and "AE-0007-01" in error.message


def test_a_mild_ae_does_not_hold_the_evaluation():
    _events, state = run(given(treated()), report(grade=1))
    events, _state = run(state, evaluate(day(29)))
    assert events[0].payload.dlt is False


def test_the_evaluation_closes_once():
    _events, state = run(given(treated()), evaluate(day(29)))
    assert refused(state, evaluate(day(30))).rule == "dlt-evaluation-closed-once"


def test_an_untreated_subject_has_no_window():
    assert refused(given(registered()), evaluate(day(28))).rule == "dlt-needs-an-infusion"
    assert refused(given(), evaluate(day(28), "MSK-0999")).status == 404


def test_an_ae_that_worsened_after_its_adjudication_holds_the_evaluation():
    # grade 3 CRS on day 2, improved within 72 h, adjudicated not a DLT; then grade 4 on day 10
    _events, state = run(
        given(treated()), report(), grade_crs(day(2), hypotension="one-vasopressor"),
    )
    _events, state = run(state, improved(day(3)), adjudicate(day(4), verdict="not-dlt"))
    _events, state = run(state, grade_crs(day(10), hypotension="multiple-vasopressors"))
    error = refused(state, evaluate(day(29)))
    assert error.rule == "dlt-adjudications-pending"
