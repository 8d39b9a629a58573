"""Where protocols differ: the "suspected" attribution threshold and the stopping rule's grade
and attribution come from the trial file (issue 11, item 12, safety part).

Sources: 21 CFR 312.32(a) (a suspected adverse reaction: a reasonable possibility that the
product caused it; the project's default reads that as at least "possible", DOMAIN.md section
3) and 312.32(c)(1) (only a suspected case qualifies for an IND safety report); DOMAIN.md
section 3, stopping rules (default: any grade 5 event at least possibly related). A protocol
may count only probable and definite as suspected, or pause on a grade 4 event.
"""

from __future__ import annotations

import pytest

from events.safety import EnrollmentPaused
from services.errors import RuleViolated
from services.safety.decider import make_decider
from trial.config import TrialConfig

from .test_safety_givens import (
    AE,
    SUBJECT,
    TRIAL,
    day,
    determine,
    given,
    report,
    treated,
)


def trial_with(**changes) -> TrialConfig:
    data = TRIAL.model_dump()
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value}
    return TrialConfig.model_validate(data)


def decide_all(trial: TrialConfig, state, *commands):
    decider = make_decider(trial)
    produced = []
    for command in commands:
        events = decider.decide(command, state)
        for new in events:
            state = decider.evolve(state, new.payload)
        produced.extend(events)
    return produced, state


def test_the_shipped_trial_counts_possible_as_suspected_and_pauses_on_related_grade_5():
    assert TRIAL.reporting.suspected_from == "possible"
    assert (TRIAL.stopping_rule.min_grade, TRIAL.stopping_rule.min_attribution) == (5, "possible")
    assert {"reporting.suspected_from", "stopping_rule"} <= set(TRIAL.defaults_chosen)


def test_a_trial_file_without_the_keys_gets_the_documented_defaults():
    data = TRIAL.model_dump()
    del data["stopping_rule"]
    del data["reporting"]["suspected_from"]
    trial = TrialConfig.model_validate(data)
    assert trial.reporting.suspected_from == "possible"
    assert (trial.stopping_rule.min_grade, trial.stopping_rule.min_attribution) == (5, "possible")


SUSAR = dict(grade=3, serious_criteria=("hospitalisation",), expected=False)


def test_a_possibly_related_case_qualifies_under_the_default_threshold():
    events, _state = decide_all(
        TRIAL, given(treated()), report(attribution="possible", **SUSAR), determine(day(3))
    )
    assert type(events[-1].payload).__name__ == "ExpeditedReportDetermined"


def test_a_protocol_counting_only_probable_as_suspected_refuses_a_possible_case():
    strict = trial_with(reporting={"suspected_from": "probable"})
    _events, state = decide_all(strict, given(treated()), report(attribution="possible", **SUSAR))

    with pytest.raises(RuleViolated) as refused:
        make_decider(strict).decide(determine(day(3)), state)

    assert refused.value.rule == "case-must-qualify"
    assert refused.value.details["suspected"] is False


def test_a_protocol_counting_only_probable_still_reports_a_probable_case():
    strict = trial_with(reporting={"suspected_from": "probable"})
    events, _state = decide_all(
        strict, given(treated()), report(attribution="probable", **SUSAR), determine(day(3))
    )
    assert [d.report for d in events[-1].payload.reports_due] == ["15-day"]


def test_a_protocol_pausing_on_grade_4_probable_pauses_on_a_grade_4_probable_event():
    grade4 = trial_with(stopping_rule={"min_grade": 4, "min_attribution": "probable"})
    events, state = decide_all(
        grade4, given(treated()), report(grade=4, attribution="probable", expected=False)
    )
    assert events[-1].payload == EnrollmentPaused(
        ae_id=AE, subject_id=SUBJECT, rule="grade4-or-higher-related"
    )
    assert state.enrollment_paused


@pytest.mark.parametrize(
    ("grade", "attribution", "serious"),
    [(4, "possible", ()), (3, "definite", ())],
)
def test_below_the_configured_grade_or_attribution_nothing_pauses(grade, attribution, serious):
    grade4 = trial_with(stopping_rule={"min_grade": 4, "min_attribution": "probable"})
    events, state = decide_all(
        grade4,
        given(treated()),
        report(grade=grade, attribution=attribution, serious_criteria=serious),
    )
    assert [type(e.payload).__name__ for e in events] == ["AdverseEventReported"]
    assert not state.enrollment_paused
