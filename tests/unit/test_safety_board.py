"""The safety board shows what the safety service decided (issue 11, decision 26).

Sources: 21 CFR 312.32(a) (death is a seriousness criterion), 21 CFR 312.32(c)(2) (an
unexpected fatal suspected adverse reaction: 7 calendar days from the sponsor's receipt), ICH
E2A (the complete report 8 calendar days later), 21 CFR 312.32(c)(1) (15 calendar days from the
determination); ASTCT 2019 (grade 5 CRS is death due to CRS). Every date below is computed by
hand from those rules, in the sponsor's calendar (New York).

The AE of these tests: grade 3 CRS, not serious when reported, unexpected and probably related;
the sponsor received it on 3 March 2026 at 14:30 UTC (10:30 in New York).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from events.dosing import InfusionRecorded
from projections.base import fold as fold_projection
from projections.catalog import build
from services.decider import NewEvent
from services.safety.expedited import aggregate_review, awaiting_determination, due_for

from .builders import history
from .test_safety_givens import (
    AE,
    SUBJECT,
    TRIAL,
    day,
    determine,
    enrolled,
    given,
    grade_crs,
    infused,
    registered,
    report,
    run,
)

BOARD = build(TRIAL)["safety"]


def board_at(new_events: list[NewEvent], as_of: datetime) -> dict:
    return BOARD.document(fold_projection(BOARD, history(new_events)), as_of)


def infusion_event() -> NewEvent:
    payload: InfusionRecorded = infused()
    return NewEvent(f"infusion-{SUBJECT}", payload, payload.infused_at)


def grade_3_crs_then_death_then_determination():
    """Grade 3 CRS reported on day 1; death due to CRS observed on day 2; the safety officer
    determines on day 3 (5 March) that the case qualifies."""
    state = given(registered(), enrolled(), infused())
    events, state = run(
        state,
        report(grade=3, serious_criteria=(), expected=False, attribution="probable"),
        grade_crs(day(2), death=True),
        determine(day(3)),
    )
    return [infusion_event(), *events], state


def test_a_grade_5_observation_makes_the_case_fatal_on_the_board_as_in_the_service():
    events, state = grade_3_crs_then_death_then_determination()
    expected = [
        ("7-day", date(2026, 3, 3), date(2026, 3, 10)),
        ("7-day-complete", date(2026, 3, 3), date(2026, 3, 18)),
        ("15-day", date(2026, 3, 5), date(2026, 3, 20)),
    ]
    # The service requires the three reports
    due = due_for(state.adverse_events[AE], TRIAL.reporting, TRIAL.zone())
    assert [(d.report, d.day_zero, d.due_on) for d in due] == expected

    # And on day 20 after the infusion (22 March) the board shows the same three, overdue
    doc = board_at(events, day(20))
    shown = [
        (r["report"], date.fromisoformat(r["day_zero"]), date.fromisoformat(r["due_on"]),
         r["status"])
        for r in doc["expedited_reports"]
    ]
    assert shown == [(*row, "overdue") for row in expected]
    assert doc["overdue_reports"] == 3
    assert doc["adverse_events"]["serious"] == 1
    assert doc["adverse_events"]["by_seriousness_criterion"] == {"death": 1}
    assert doc["adverse_events"]["by_worst_grade"] == {"5": 1}
    # The stopping rule fired (grade 5, probably related) and the board says so
    assert (doc["enrollment_paused"], doc["paused_by"]) == (True, [AE])


def test_before_its_deadlines_the_fatal_case_is_due_on_the_board():
    events, _state = grade_3_crs_then_death_then_determination()
    doc = board_at(events, datetime(2026, 3, 9, 12, tzinfo=UTC))
    assert [(r["report"], r["status"], r["days_left"]) for r in doc["expedited_reports"]] == [
        ("7-day", "due", 1),
        ("7-day-complete", "due", 9),
        ("15-day", "due", 11),
    ]


# ---------------------------------------------------------------- determination due (item 10)
# Source: 21 CFR 312.32(b) (the sponsor must promptly review the information) and (c)(1) (the
# 15-day clock runs from the determination that a serious, unexpected, suspected case
# qualifies): such a case is visible from the moment it is recorded, before any clock runs.


def hospitalised_susar() -> list[NewEvent]:
    """Serious (hospitalisation), unexpected, probably related; received on 3 March."""
    events, _state = run(
        given(registered(), enrolled(), infused()),
        report(grade=3, serious_criteria=("hospitalisation",), expected=False),
    )
    return [infusion_event(), *events]


def test_a_serious_unexpected_suspected_case_shows_a_determination_due_from_its_report():
    doc = board_at(hospitalised_susar(), datetime(2026, 3, 6, 15, tzinfo=UTC))

    assert [(d["ae_id"], d["days_waiting"]) for d in doc["determinations_due"]] == [(AE, 3)]
    assert doc["expedited_reports"] == []  # no clock runs before the determination


def test_the_determination_due_item_ends_when_the_determination_is_recorded():
    state = given(registered(), enrolled(), infused())
    first, state = run(state, report(grade=3, serious_criteria=("hospitalisation",),
                                     expected=False))
    assert [ae.ae_id for ae in awaiting_determination(state, TRIAL.reporting)] == [AE]
    then, state = run(state, determine(day(3)))

    assert awaiting_determination(state, TRIAL.reporting) == ()
    doc = board_at([infusion_event(), *first, *then], day(4))
    assert doc["determinations_due"] == []
    assert [(r["report"], r["due_on"]) for r in doc["expedited_reports"]] == [
        ("15-day", "2026-03-20")
    ]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(dict(serious_criteria=("hospitalisation",), expected=True), id="expected"),
        pytest.param(dict(serious_criteria=(), expected=False), id="not serious"),
        pytest.param(
            dict(serious_criteria=("hospitalisation",), expected=False, attribution="unlikely"),
            id="not suspected",
        ),
    ],
)
def test_a_case_that_does_not_qualify_awaits_no_determination(fields):
    events, _state = run(given(registered(), enrolled(), infused()), report(grade=3, **fields))
    doc = board_at([infusion_event(), *events], day(4))
    assert doc["determinations_due"] == []


# ---------------------------------------------------------------- aggregate review (item 6)
# Source: 21 CFR 312.32(c)(1)(iv): the sponsor reports a clinically important increase in the
# rate of serious suspected adverse reactions over the rate listed in the protocol or the
# investigator's brochure; such (expected) reactions get no individual report, so they are
# counted per term for that review.


def test_serious_expected_suspected_reactions_are_counted_per_term_without_a_report():
    state = given(registered(), enrolled(), infused(),
                  registered("MSK-0008"), enrolled("MSK-0008"), infused("MSK-0008"))
    hospitalised = dict(grade=3, serious_criteria=("hospitalisation",), expected=True)
    events, state = run(
        state,
        report("AE-0007-01", term="Cytokine release syndrome", **hospitalised),
        report("AE-0007-02", term="Febrile neutropenia", **hospitalised, attribution="unlikely"),
        report("AE-0008-01", subject_id="MSK-0008", term="cytokine-release  syndrome",
               **hospitalised),
        report("AE-0008-02", subject_id="MSK-0008", term="Cytokine release syndrome", grade=2),
    )

    # The service's state and the board list the same two CRS cases; the unlikely-related and
    # the non-serious ones are not counted
    review = aggregate_review(state, TRIAL.reporting)
    assert {term: [ae.ae_id for ae in aes] for term, aes in review.items()} == {
        "cytokine release syndrome": ["AE-0007-01", "AE-0008-01"]
    }
    doc = board_at([infusion_event(), *events], day(4))
    assert doc["aggregate_review"] == [
        {
            "term": "cytokine release syndrome",
            "count": 2,
            "subjects": 2,
            "ae_ids": ["AE-0007-01", "AE-0008-01"],
        }
    ]
    # And none of them is on the expedited clock or awaits a determination
    assert doc["expedited_reports"] == [] and doc["determinations_due"] == []


def test_an_unexpected_serious_suspected_case_is_reported_not_aggregated():
    doc = board_at(hospitalised_susar(), day(4))
    assert doc["aggregate_review"] == []


def test_a_case_that_becomes_fatal_awaits_its_determination_from_the_observation():
    # Grade 3 CRS, not serious when reported: nothing awaits a determination
    state = given(registered(), enrolled(), infused())
    first, state = run(state, report(grade=3, serious_criteria=(), expected=False))
    assert board_at([infusion_event(), *first], day(2))["determinations_due"] == []
    # Death due to CRS observed on day 2 makes it serious (death): from then on it is due
    then, state = run(state, grade_crs(day(2), death=True))
    doc = board_at([infusion_event(), *first, *then], day(2, hours=1))
    assert [d["ae_id"] for d in doc["determinations_due"]] == [AE]
    assert [a.ae_id for a in awaiting_determination(state, TRIAL.reporting)] == [AE]
