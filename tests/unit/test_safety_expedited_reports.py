"""Expedited (IND safety) reports through the safety decider: determination and submission.

Sources: 21 CFR 312.32(c)(1)-(2) and (d), ICH E2A (the clock's own table is in
test_safety_reporting_clock.py). The AE of these tests: the sponsor received it on 3 March
2026 (day 1 after the infusion, 14:30 UTC).
"""

from __future__ import annotations

from datetime import date

import pytest

from events.safety import ExpeditedReportDetermined, ExpeditedReportSubmitted, ReportDue
from services.errors import NotFound, RuleViolated

from .test_safety_givens import (
    AE,
    DECIDER,
    SUBJECT,
    day,
    determine,
    fatal_report,
    given,
    regrade,
    report,
    run,
    submit,
    treated,
)

SERIOUS_UNEXPECTED = dict(serious_criteria=("hospitalisation",), expected=False)


def susar():
    _events, state = run(given(treated()), report(**SERIOUS_UNEXPECTED))
    return state


def fatal_susar():
    _events, state = run(given(treated()), fatal_report())
    return state


def test_determining_a_serious_unexpected_suspected_reaction_starts_the_15_day_clock():
    # When the safety officer determines on 5 March that the case qualifies
    (event,) = DECIDER.decide(determine(day(3)), susar())

    # Then the 15-day report is due on 20 March
    assert event.payload == ExpeditedReportDetermined(
        ae_id=AE,
        subject_id=SUBJECT,
        basis="initial",
        determined_at=day(3),
        information_received_at=day(1, hours=4),
        reports_due=(
            ReportDue(report="15-day", day_zero=date(2026, 3, 5), due_on=date(2026, 3, 20)),
        ),
    )


def test_a_late_determination_of_a_fatal_case_keeps_day_0_of_the_7_day_report():
    # Given a fatal case received on 3 March, When it is determined only on 12 March
    (event,) = DECIDER.decide(determine(day(10)), fatal_susar())

    # Then the 7-day report stays due on 10 March (already overdue), the complete report on
    # 18 March, and the 15-day report runs from 12 March
    assert [(d.report, d.day_zero, d.due_on) for d in event.payload.reports_due] == [
        ("7-day", date(2026, 3, 3), date(2026, 3, 10)),
        ("7-day-complete", date(2026, 3, 3), date(2026, 3, 18)),
        ("15-day", date(2026, 3, 12), date(2026, 3, 27)),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        dict(serious_criteria=(), expected=False),
        dict(serious_criteria=("hospitalisation",), expected=True),
        dict(serious_criteria=("hospitalisation",), expected=False, attribution="unlikely"),
    ],
    ids=["not serious", "expected", "not suspected"],
)
def test_a_case_that_does_not_qualify_is_not_determined(fields):
    _events, state = run(given(treated()), report(**fields))

    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(determine(day(3)), state)

    assert refused.value.rule == "case-must-qualify"


def test_the_initial_determination_is_made_once():
    _events, state = run(susar(), determine(day(3)))

    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(determine(day(4)), state)

    assert refused.value.rule == "expedited-determination-once"


def test_a_determination_before_the_sponsor_received_the_case_is_refused():
    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(determine(day(1, hours=3)), susar())

    assert refused.value.rule == "determination-after-receipt"


def test_new_information_puts_a_follow_up_on_a_15_day_clock():
    _events, state = run(susar(), determine(day(3)))

    # When new information received on 10 March is determined to need a follow-up
    events, after = run(
        state,
        determine(day(9), follow_up_information_received_at=day(8, hours=2)),
        determine(day(12), follow_up_information_received_at=day(12)),
    )

    # Then follow-ups 1 and 2 are due 15 days after their information
    assert [e.payload.basis for e in events] == ["follow-up-1", "follow-up-2"]
    assert [(d.report, d.due_on) for d in after.adverse_events[AE].follow_ups] == [
        ("follow-up-1", date(2026, 3, 25)),
        ("follow-up-2", date(2026, 3, 29)),
    ]


def test_a_follow_up_needs_an_initial_determination():
    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(determine(day(9), follow_up_information_received_at=day(8)), susar())

    assert refused.value.rule == "follow-up-needs-an-initial-determination"


def test_submitting_a_due_report_records_its_deadline():
    _events, state = run(susar(), determine(day(3)))

    (event,) = DECIDER.decide(submit(day(10), "15-day"), state)

    assert event.payload == ExpeditedReportSubmitted(
        ae_id=AE,
        subject_id=SUBJECT,
        report="15-day",
        submitted_at=day(10),
        due_on=date(2026, 3, 20),
        reference="IND-SR-2026-004",
    )


def test_the_7_day_report_of_a_fatal_case_may_go_before_the_determination():
    events, _state = run(fatal_susar(), submit(day(4), "7-day"), submit(day(9), "7-day-complete"))

    assert [(e.payload.report, e.payload.due_on) for e in events] == [
        ("7-day", date(2026, 3, 10)),
        ("7-day-complete", date(2026, 3, 18)),
    ]


ILLEGAL_SUBMISSIONS = [
    ("15-day before the determination", susar, [], "15-day", "report-must-be-due"),
    ("7-day of a non-fatal case", susar, [determine(day(3))], "7-day", "report-must-be-due"),
    ("follow-up never determined", susar, [determine(day(3))], "follow-up-1", "report-must-be-due"),
    (
        "submitted twice",
        susar,
        [determine(day(3)), submit(day(5), "15-day")],
        "15-day",
        "report-submitted-once",
    ),
    (
        "complete report before the 7-day report",
        fatal_susar,
        [],
        "7-day-complete",
        "complete-report-follows-the-7-day-report",
    ),
]


@pytest.mark.parametrize(
    ("case", "before", "report_name", "rule"),
    [pytest.param(c, b, r, rule, id=name) for name, c, b, r, rule in ILLEGAL_SUBMISSIONS],
)
def test_an_illegal_submission_is_refused(case, before, report_name, rule):
    _events, state = run(case(), *before)

    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(submit(day(6), report_name), state)

    assert refused.value.rule == rule


def test_an_expedited_report_of_an_unknown_ae_is_refused():
    with pytest.raises(NotFound):
        DECIDER.decide(submit(day(6), "15-day"), given(treated()))
    with pytest.raises(NotFound):
        DECIDER.decide(determine(day(6)), given(treated()))


def test_a_regrade_to_fatal_puts_the_7_day_report_on_the_clock_from_the_original_receipt():
    # A late assessment never moves day 0 (the sponsor's initial receipt, 3 March).
    _events, state = run(
        susar(),
        regrade(day(4), grade=5, serious_criteria=("death",), reason="died on day 4"),
    )

    (event,) = DECIDER.decide(submit(day(5), "7-day"), state)

    assert event.payload.due_on == date(2026, 3, 10)
