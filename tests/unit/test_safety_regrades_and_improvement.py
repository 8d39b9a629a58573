"""Regrades, corrections and improvement of adverse events.

Sources: DESIGN.md section 2 (an event is never edited: a correction is a new event referencing
the original, here with its reason and the previous and new values); DOMAIN.md section 3 (the
DLT rule needs the time an AE improved to grade <= 2 or resolved); CTCAE v5 (grade 5 is death
related to the AE, so it does not resolve). Every refused command emits nothing.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.safety import AdverseEventImproved, AdverseEventRegraded, Assessment
from services.errors import NotFound, RuleViolated
from services.safety.commands import RegradeAdverseEvent

from .test_safety_givens import (
    AE,
    DECIDER,
    SUBJECT,
    day,
    grade_crs,
    improved,
    names,
    regrade,
    reported,
    run,
)

# ---------------------------------------------------------------- regrade / correction


def test_a_regrade_is_a_new_event_with_previous_and_new_values_and_the_original_stays():
    # Given a grade 2 CRS reported
    state = reported()
    original = state.adverse_events[AE]

    # When the investigator regrades it to 3, serious (hospitalisation), from day 2
    events, after = run(
        state,
        regrade(day(3), grade=3, serious_criteria=("hospitalisation",), effective_at=day(2)),
    )

    # Then one AdverseEventRegraded carries both; the report itself is untouched
    assert [e.payload for e in events] == [
        AdverseEventRegraded(
            ae_id=AE,
            subject_id=SUBJECT,
            effective_at=day(2),
            previous=Assessment(
                grade=2, serious_criteria=(), attribution="probable", expected=True
            ),
            new=Assessment(
                grade=3,
                serious_criteria=("hospitalisation",),
                attribution="probable",
                expected=True,
            ),
        )
    ]
    assert state.adverse_events[AE] == original
    assert (after.adverse_events[AE].grade, after.adverse_events[AE].severe_since) == (3, day(2))


def test_a_correction_without_an_effective_time_applies_from_the_onset():
    (event,) = DECIDER.decide(regrade(day(3), grade=3), reported())

    assert event.payload.effective_at == day(1)


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_regrade_requires_a_reason(reason):
    with pytest.raises(ValidationError, match="reason"):
        RegradeAdverseEvent(ae_id=AE, reason=reason, grade=3, occurred_at=day(3))


def test_the_regrade_command_declares_its_reason():
    assert RegradeAdverseEvent.model_fields["reason"].is_required()


@pytest.mark.parametrize(
    ("values", "rule", "error"),
    [
        (dict(grade=2), "regrade-must-change-something", RuleViolated),
        (
            dict(attribution="probable", expected=True),
            "regrade-must-change-something",
            RuleViolated,
        ),
        (dict(grade=5), "death-is-grade-5", RuleViolated),
        (dict(grade=3, effective_at=day(0)), "effective-after-onset", RuleViolated),
        (dict(grade=3, effective_at=day(4)), "time-not-in-the-future", RuleViolated),
        (dict(grade=3, ae_id="AE-0007-99"), "ae-must-be-reported", NotFound),
    ],
)
def test_an_illegal_regrade_is_refused(values, rule, error):
    with pytest.raises(error) as refused:
        DECIDER.decide(regrade(day(3), **values), reported())

    assert refused.value.rule == rule


# ---------------------------------------------------------------- improvement / resolution


def test_an_improvement_to_grade_2_or_less_is_recorded_with_its_time():
    (event,) = DECIDER.decide(improved(day(4), improved_at=day(3, hours=6)), reported(grade=3))

    assert event.payload == AdverseEventImproved(
        ae_id=AE, subject_id=SUBJECT, outcome="grade-2-or-less", improved_at=day(3, hours=6)
    )


def test_a_grade_3_ae_improves_then_resolves():
    events, state = run(reported(grade=3), improved(day(3)), improved(day(6), outcome="resolved"))

    assert names(events) == ["AdverseEventImproved", "AdverseEventImproved"]
    ae = state.adverse_events[AE]
    assert (ae.improved_at, ae.resolved_at) == (day(3), day(6))


ILLEGAL_RESOLUTIONS = [
    (
        "unknown AE",
        reported(),
        improved(day(3), ae_id="AE-0007-99"),
        NotFound,
        "ae-must-be-reported",
    ),
    (
        "grade 2 cannot improve to grade 2",
        reported(),
        improved(day(3)),
        RuleViolated,
        "improvement-needs-grade-3-or-more",
    ),
    (
        "improved twice",
        run(reported(grade=3), improved(day(3)))[1],
        improved(day(4)),
        RuleViolated,
        "ae-improved-once",
    ),
    (
        "resolved twice",
        run(reported(), improved(day(3), outcome="resolved"))[1],
        improved(day(4), outcome="resolved"),
        RuleViolated,
        "ae-resolved",
    ),
    (
        "graded after resolution",
        run(reported(), improved(day(3), outcome="resolved"))[1],
        grade_crs(day(4)),
        RuleViolated,
        "ae-resolved",
    ),
    (
        "a fatal AE does not resolve",
        reported(grade=5, serious_criteria=("death",)),
        improved(day(3), outcome="resolved"),
        RuleViolated,
        "ae-fatal",
    ),
    (
        "improved before onset",
        reported(grade=3),
        improved(day(3), improved_at=day(0)),
        RuleViolated,
        "improved-after-onset",
    ),
    (
        "improved before it became severe",
        run(reported(), grade_crs(day(3), hypoxia="high-flow"))[1],
        improved(day(4), improved_at=day(2)),
        RuleViolated,
        "improved-at-after-severe",
    ),
    (
        "improved in the future",
        reported(grade=3),
        improved(day(3), improved_at=day(4)),
        RuleViolated,
        "time-not-in-the-future",
    ),
]


@pytest.mark.parametrize(
    ("state", "command", "error", "rule"),
    [pytest.param(s, c, e, r, id=name) for name, s, c, e, r in ILLEGAL_RESOLUTIONS],
)
def test_an_illegal_improvement_or_observation_is_refused(state, command, error, rule):
    with pytest.raises(error) as refused:
        DECIDER.decide(command, state)

    assert refused.value.rule == rule
