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

from events.dosing import InfusionRecorded
from projections.base import fold as fold_projection
from projections.catalog import build
from services.decider import NewEvent
from services.safety.expedited import due_for

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
