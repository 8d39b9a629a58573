"""DLT adjudication by an investigator, through the safety decider.

Source: DOMAIN.md section 3 "DLT" and the trial file's ``dlt`` (the rule's own table is in
test_safety_dlt_rule.py); DESIGN.md section 5 (the software recommends, people decide: the
investigator agrees with the rule's verdict or departs from it with a reason).
"""

from __future__ import annotations

import pytest

from events.safety import DltAdjudicated
from services.errors import NotFound, RuleViolated

from .test_safety_givens import (
    AE,
    DECIDER,
    SUBJECT,
    adjudicate,
    day,
    given,
    grade_crs,
    improved,
    registered,
    regrade,
    report,
    run,
    treated,
)


def grade_3_crs_from_day_1():
    """Grade 2 CRS from day 1 (probable), grade 3 (one vasopressor) observed on day 2."""
    _events, state = run(
        given(treated()), report(), grade_crs(day(2), hypotension="one-vasopressor")
    )
    return state


def test_grade_3_crs_not_improved_within_72_hours_is_adjudicated_a_dlt_with_the_rules_reasons():
    # Given grade 3 CRS from day 2, improved to grade 2 only 80 h later
    _events, state = run(grade_3_crs_from_day_1(), improved(day(5, hours=8)))

    # When the investigator agrees with the rule on day 6
    (event,) = DECIDER.decide(adjudicate(day(6)), state)

    # Then the adjudication records the rule's verdict, its criteria, the cohort and the dose
    assert event.stream_id == "ae-AE-0007-01"
    assert event.payload == DltAdjudicated(
        ae_id=AE,
        subject_id=SUBJECT,
        cohort_id="DL1-IP",
        dose_level="DL1",
        adjudicated_at=day(6),
        rule_verdict="dlt",
        rule_criterion="crs-icans-grade3-not-improved",
        rule_findings=(
            "attribution probable is at least possible",
            "onset on day 1 after infusion, inside the DLT window (day 0 to 28)",
            "grade 3 CRS improved to grade <= 2 only after 80 h, later than 72 h",
        ),
        verdict="dlt",
        departure_reason=None,
    )


def test_grade_3_crs_improved_within_72_hours_is_not_a_dlt():
    _events, state = run(grade_3_crs_from_day_1(), improved(day(4, hours=12)))

    (event,) = DECIDER.decide(adjudicate(day(6), verdict="not-dlt"), state)

    assert (event.payload.rule_verdict, event.payload.verdict) == ("not-dlt", "not-dlt")
    assert event.payload.rule_criterion == "crs-icans-grade3-improved"


def test_the_investigator_may_depart_from_the_rule_with_a_reason():
    _events, state = run(grade_3_crs_from_day_1(), improved(day(4)))
    reason = "CRS recurred after tocilizumab; judged dose-limiting by the review"

    (event,) = DECIDER.decide(adjudicate(day(6), verdict="dlt", reason=reason), state)

    assert (event.payload.rule_verdict, event.payload.verdict) == ("not-dlt", "dlt")
    assert event.payload.departure_reason == reason


def test_a_reason_given_while_agreeing_is_not_a_departure():
    _events, state = run(grade_3_crs_from_day_1(), improved(day(4)))

    (event,) = DECIDER.decide(adjudicate(day(6), verdict="not-dlt", reason="agreed"), state)

    assert event.payload.departure_reason is None


def test_a_departure_without_a_reason_is_refused():
    _events, state = run(grade_3_crs_from_day_1(), improved(day(4)))

    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(adjudicate(day(6), verdict="dlt"), state)

    assert refused.value.rule == "departure-needs-a-reason"
    assert refused.value.details["rule_verdict"] == "not-dlt"


def test_adjudication_waits_while_the_72_hour_clock_runs():
    # Given grade 3 CRS since day 2, not improved; When adjudicated 48 h later
    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(adjudicate(day(4)), grade_3_crs_from_day_1())

    # Then the rule has no verdict yet and says until when
    assert refused.value.rule == "dlt-verdict-pending"
    assert "has until 2026-03-07T10:30:00+00:00 (72 h)" in refused.value.message


def test_after_72_hours_without_improvement_the_rule_says_dlt():
    (event,) = DECIDER.decide(adjudicate(day(5, hours=1)), grade_3_crs_from_day_1())

    assert event.payload.rule_criterion == "crs-icans-grade3-not-improved"


def test_an_ae_is_adjudicated_once():
    _events, state = run(grade_3_crs_from_day_1(), adjudicate(day(6)))

    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(adjudicate(day(7)), state)

    assert refused.value.rule == "dlt-adjudicated-once"


def test_new_information_allows_a_new_adjudication():
    # Given a grade 3 CRS adjudicated a DLT, then corrected to grade 2 from its onset
    _events, state = run(
        grade_3_crs_from_day_1(),
        adjudicate(day(6)),
        regrade(day(7), grade=2, reason="vasopressor was given for sedation, not CRS"),
    )

    # When it is adjudicated again, Then the rule now says not a DLT
    (event,) = DECIDER.decide(adjudicate(day(8), verdict="not-dlt"), state)
    assert (event.payload.rule_criterion, event.payload.verdict) == ("below-grade", "not-dlt")


def test_a_subject_without_an_infusion_has_no_dlt_window():
    _events, state = run(
        given(registered()),
        report(onset_at=day(-2), sponsor_received_at=day(-2), occurred_at=day(-1)),
    )

    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(adjudicate(day(0)), state)

    assert refused.value.rule == "dlt-needs-an-infusion"


def test_an_unknown_ae_cannot_be_adjudicated():
    with pytest.raises(NotFound) as refused:
        DECIDER.decide(adjudicate(day(6)), given(treated()))

    assert refused.value.rule == "ae-must-be-reported"


def test_an_infusion_folded_after_the_ae_still_opens_the_window():
    # On start-up the service folds its own history before the upstream topics.
    (reported,) = DECIDER.decide(report(grade=4), given(treated()))
    state = given(reported.payload, treated())

    (event,) = DECIDER.decide(adjudicate(day(3)), state)

    assert event.payload.rule_criterion == "crs-icans-grade"
