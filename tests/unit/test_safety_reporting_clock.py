"""The expedited-reporting clock, table-driven; every date computed by hand from the rule.

Sources: 21 CFR 312.32(c)(2) (unexpected fatal or life-threatening suspected adverse reaction:
7 calendar days from the sponsor's initial receipt), ICH E2A (then as complete a report as
possible within 8 additional calendar days), 21 CFR 312.32(c)(1) (serious and unexpected
suspected adverse reaction: 15 calendar days from the sponsor's determination that it
qualifies; FDA's 2012 guidance: the 7-day report is in addition to the 15-day report),
21 CFR 312.32(d) (follow-up: 15 calendar days from the new information). Day 0 is the date of
the receipt or determination; the report is due on day 0 + N.

Given a case, When its clock is computed, Then the reports due and their last day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from events.safety import ReportDue
from services.safety.reporting import SafetyCase, follow_up_due, reports_due

from .test_safety_givens import TRIAL

RULES = TRIAL.reporting
ZONE = TRIAL.zone()  # the sponsor's calendar: New York (every time in CLOCK is the same day there)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def case(received: str, determined: str | None = None, **overrides) -> SafetyCase:
    values = {
        "serious_criteria": ("death",),
        "attribution": "possible",
        "expected": False,
        "sponsor_received_at": at(received),
        "suspected_from": RULES.suspected_from,
        "determined_at": at(determined) if determined else None,
    }
    return SafetyCase(**{**values, **overrides})


def due(*rows: tuple[str, str, str]) -> tuple[ReportDue, ...]:
    return tuple(
        ReportDue(report=r, day_zero=date.fromisoformat(d0), due_on=date.fromisoformat(d))
        for r, d0, d in rows
    )


def test_the_shipped_deadlines_are_those_of_the_regulations():
    assert RULES.fatal_or_life_threatening_days == 7
    assert RULES.complete_report_after_initial_days == 8
    assert RULES.serious_unexpected_days == 15
    assert RULES.follow_up_days == 15


CLOCK = [
    (
        "fatal, received 2 March, not yet determined: 7-day on 9 March, complete on 17 March",
        case("2026-03-02T09:00"),
        due(("7-day", "2026-03-02", "2026-03-09"), ("7-day-complete", "2026-03-02", "2026-03-17")),
    ),
    (
        "fatal, determined 4 March: the 15-day report runs from the determination (19 March)",
        case("2026-03-02T09:00", "2026-03-04T16:00"),
        due(
            ("7-day", "2026-03-02", "2026-03-09"),
            ("7-day-complete", "2026-03-02", "2026-03-17"),
            ("15-day", "2026-03-04", "2026-03-19"),
        ),
    ),
    (
        "fatal, determined late on 12 March: day 0 of the 7-day report stays 2 March",
        case("2026-03-02T09:00", "2026-03-12T09:00"),
        due(
            ("7-day", "2026-03-02", "2026-03-09"),
            ("7-day-complete", "2026-03-02", "2026-03-17"),
            ("15-day", "2026-03-12", "2026-03-27"),
        ),
    ),
    (
        "life-threatening, received 28 December: due across the new year",
        case("2026-12-28T23:00", serious_criteria=("life-threatening", "hospitalisation")),
        due(("7-day", "2026-12-28", "2027-01-04"), ("7-day-complete", "2026-12-28", "2027-01-12")),
    ),
    (
        "fatal, received 25 February 2026 (28-day February)",
        case("2026-02-25T10:00"),
        due(("7-day", "2026-02-25", "2026-03-04"), ("7-day-complete", "2026-02-25", "2026-03-12")),
    ),
    (
        "fatal, received 25 February 2028 (leap year)",
        case("2028-02-25T10:00"),
        due(("7-day", "2028-02-25", "2028-03-03"), ("7-day-complete", "2028-02-25", "2028-03-11")),
    ),
    (
        "serious (hospitalisation), unexpected, probable, determined 5 March: 15-day on 20 March",
        case(
            "2026-03-02T09:00",
            "2026-03-05T11:00",
            serious_criteria=("hospitalisation",),
            attribution="probable",
        ),
        due(("15-day", "2026-03-05", "2026-03-20")),
    ),
    (
        "serious and unexpected, not yet determined: nothing on the clock yet",
        case("2026-03-02T09:00", serious_criteria=("important-medical-event",)),
        (),
    ),
    ("fatal but expected: not reportable", case("2026-03-02T09:00", expected=True), ()),
    (
        "fatal but unlikely related: not suspected",
        case("2026-03-02T09:00", attribution="unlikely"),
        (),
    ),
    ("unexpected, related, not serious", case("2026-03-02T09:00", serious_criteria=()), ()),
]


@pytest.mark.parametrize(
    ("the_case", "expected"), [pytest.param(c, e, id=name) for name, c, e in CLOCK]
)
def test_expedited_reporting_clock(the_case, expected):
    assert reports_due(the_case, RULES, ZONE) == expected


def test_the_same_receipt_written_with_any_utc_offset_has_the_same_day_0():
    # Given the sponsor received the information at 23:30 in New York on 2 March (EST, -05:00),
    # which is 04:30 UTC on 3 March
    new_york = datetime(2026, 3, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    for received in (new_york, new_york.astimezone(UTC)):
        # Then day 0 is 2 March in the sponsor's calendar and the 7-day report is due on 9 March
        (seven, _complete) = reports_due(
            case("2026-03-02T00:00", sponsor_received_at=received), RULES, ZONE
        )
        assert (seven.day_zero, seven.due_on) == (date(2026, 3, 2), date(2026, 3, 9))


def test_a_determination_at_20_00_est_on_24_december_is_due_on_8_january():
    # 20:00 EST on 24 December is 01:00 UTC on 25 December; the sponsor's calendar says the
    # 24th, and 24 December + 15 calendar days is 8 January (21 CFR 312.32(c)(1))
    determined = datetime(2026, 12, 25, 1, 0, tzinfo=UTC)
    the_case = case(
        "2026-12-23T15:00",
        serious_criteria=("hospitalisation",),
        determined_at=determined,
    )
    assert reports_due(the_case, RULES, ZONE) == due(("15-day", "2026-12-24", "2027-01-08"))


def test_a_follow_up_received_late_in_the_evening_counts_from_that_day_in_new_york():
    # 22:00 EDT on 1 April is 02:00 UTC on 2 April: day 0 is 1 April, due 16 April
    received = datetime(2026, 4, 2, 2, 0, tzinfo=UTC)
    assert follow_up_due(1, received, RULES, ZONE).due_on == date(2026, 4, 16)


@pytest.mark.parametrize(
    ("number", "received", "due_on"),
    [(1, "2026-04-01T10:00", "2026-04-16"), (2, "2026-04-20T08:00", "2026-05-05")],
)
def test_a_follow_up_is_due_15_days_after_the_new_information(number, received, due_on):
    assert follow_up_due(number, at(received), RULES, ZONE) == ReportDue(
        report=f"follow-up-{number}",
        day_zero=date.fromisoformat(received[:10]),
        due_on=date.fromisoformat(due_on),
    )


def test_a_trial_with_other_deadlines_is_honoured():
    rules = RULES.model_copy(update={"fatal_or_life_threatening_days": 5})

    (seven, complete) = reports_due(case("2026-03-02T09:00"), rules, ZONE)

    assert (seven.due_on, complete.due_on) == (date(2026, 3, 7), date(2026, 3, 15))
