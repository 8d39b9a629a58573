"""The calendar of dosing: conditioning days, the infusion's window after conditioning and after
thaw.

Sources: DOMAIN.md section 1 (conditioning "for 3 days before the infusion": days, not doses);
the trial file's time zone (America/New_York, the sponsor's), in which calendar days are
counted; its window of 2 to 14 days between the last conditioning day and the infusion (the
project's default, from the tisagenlecleucel US prescribing information, section 2: infuse 2
to 14 days after completion of lymphodepleting chemotherapy); and its 120 minutes from thaw to
infusion (the project's default, from the lisocabtagene maraleucel US prescribing information:
infuse within 2 hours of thawing).

New York is UTC-4 in April 2025 (daylight saving time).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.dosing.decider import make_decider

from .test_dosing_facts import (
    CONDITIONED,
    DECIDER,
    DOCTOR,
    LOT,
    NURSE,
    PRODUCT_AVAILABLE,
    READY_TO_INFUSE,
    SUBJECT,
    TRIAL,
    checked,
    conditioning_day,
    conditioning_time,
    given,
    infuse,
    record_day,
    refused,
    thawed,
)

LAST_DAY = conditioning_time(3)
"""Day 3 of conditioning: 2025-04-04 10:00 UTC, 06:00 in New York."""


def day_one_at(moment: datetime):
    return conditioning_day(1).model_copy(update={"given_at": moment})


# ---------------------------------------------------------------- conditioning days


def test_a_second_conditioning_day_minutes_after_the_first_is_refused():
    state = given(*PRODUCT_AVAILABLE, conditioning_day(1))

    refusal = refused(
        record_day(2, occurred_at=conditioning_time(1) + timedelta(minutes=10)), state
    )

    assert refusal.rule == "conditioning-days-on-calendar-days"
    assert refusal.details["calendar_day"] == refusal.details["previous_calendar_day"]
    assert refusal.details["time_zone"] == "America/New_York"


def test_late_the_same_evening_is_still_the_same_calendar_day():
    # day 1 at 10:00 in New York, day 2 at 22:00 in New York: already the next day in UTC
    day_one = datetime(2025, 4, 1, 14, 0, tzinfo=UTC)
    state = given(*PRODUCT_AVAILABLE, day_one_at(day_one))

    refusal = refused(record_day(2, occurred_at=datetime(2025, 4, 2, 2, 0, tzinfo=UTC)), state)

    assert refusal.rule == "conditioning-days-on-calendar-days"
    assert refusal.details["calendar_day"] == "2025-04-01"


def test_the_next_morning_in_new_york_is_the_next_calendar_day_even_on_the_same_utc_date():
    # day 1 at 23:30 in New York (03:30 UTC on 2 April), day 2 at 09:00 on 2 April in New York
    state = given(*PRODUCT_AVAILABLE, day_one_at(datetime(2025, 4, 2, 3, 30, tzinfo=UTC)))

    [event] = DECIDER.decide(
        record_day(2, occurred_at=datetime(2025, 4, 2, 13, 0, tzinfo=UTC)), state
    )

    assert event.payload.day == 2


def test_the_calendar_is_the_trial_file_time_zone():
    in_utc = make_decider(TRIAL.model_copy(update={"time_zone": "UTC"}))
    day_one = datetime(2025, 4, 1, 14, 0, tzinfo=UTC)
    state = given(*PRODUCT_AVAILABLE, day_one_at(day_one))

    [event] = in_utc.decide(
        record_day(2, occurred_at=datetime(2025, 4, 2, 2, 0, tzinfo=UTC)), state
    )

    assert event.payload.day == 2


# ---------------------------------------------------------------- infusion after conditioning


def ready_for_infusion_at(moment: datetime):
    """Everything done, the bedside checks half an hour and twenty minutes before ``moment``."""
    return given(
        *CONDITIONED,
        thawed(),
        checked(NURSE, at=moment - timedelta(minutes=30)),
        checked(DOCTOR, at=moment - timedelta(minutes=20)),
    )


# (infusion time, calendar days after the last conditioning day in New York, accepted)
WINDOW = [
    (LAST_DAY + timedelta(days=1), 1, False),
    (datetime(2025, 4, 6, 3, 0, tzinfo=UTC), 1, False),  # 5 April 23:00 in New York
    (LAST_DAY + timedelta(days=2), 2, True),
    (LAST_DAY + timedelta(days=3), 3, True),
    (LAST_DAY + timedelta(days=14, hours=13), 14, True),  # 23:00 in New York on day 14
    (LAST_DAY + timedelta(days=15), 15, False),
]


@pytest.mark.parametrize(("infused_at", "days", "accepted"), WINDOW)
def test_the_infusion_is_given_2_to_14_calendar_days_after_the_last_conditioning_day(
    infused_at, days, accepted
):
    state = ready_for_infusion_at(infused_at)
    command = infuse(occurred_at=infused_at)

    if accepted:
        [event] = DECIDER.decide(command, state)
        assert event.payload.infused_at == infused_at
    else:
        refusal = refused(command, state)
        assert refusal.rule == "infusion-window-after-conditioning"
        assert refusal.details["days_after_last_conditioning_day"] == days
        assert (refusal.details["min_days"], refusal.details["max_days"]) == (2, 14)


def test_the_window_comes_from_the_trial_file():
    conditioning = TRIAL.conditioning.model_copy(update={"infusion_max_days_after_last_day": 3})
    tight = make_decider(TRIAL.model_copy(update={"conditioning": conditioning}))
    infused_at = LAST_DAY + timedelta(days=4)

    refusal = refused(
        infuse(occurred_at=infused_at), ready_for_infusion_at(infused_at), decider=tight
    )

    assert refusal.details["max_days"] == 3


# ---------------------------------------------------------------- thaw to infusion


def thawed_at(moment: datetime):
    state = given(*READY_TO_INFUSE)
    lot = replace(state.lots[LOT], thawed_at=moment)
    return replace(state, lots={**state.lots, LOT: lot})


INFUSED_AT = infuse().occurred_at


@pytest.mark.parametrize(
    ("minutes_before", "accepted"),
    [(90, True), (120, True), (121, False), (-5, False)],
    ids=["90 min", "exactly 2 h", "2 h 1 min", "before the thaw"],
)
def test_the_infusion_starts_within_two_hours_of_the_thaw(minutes_before, accepted):
    state = thawed_at(INFUSED_AT - timedelta(minutes=minutes_before))

    if accepted:
        [event] = DECIDER.decide(infuse(), state)
        assert event.payload.event_type == "InfusionRecorded"
    else:
        refusal = refused(infuse(), state)
        assert refusal.rule == "infusion-within-thaw-limit"
        assert refusal.details["max_minutes"] == 120
        assert refusal.details["minutes_after_thaw"] == minutes_before


def test_the_thaw_manufacturing_records_starts_the_clock_for_dosing():
    """Through the events: the thaw's fact carries its time (LotThawed v2)."""
    from events.manufacturing import LotThawed

    late = INFUSED_AT - timedelta(hours=3)
    ready = [e for e in READY_TO_INFUSE if not isinstance(e, LotThawed)]
    state = given(*ready, LotThawed(lot_id=LOT, subject_id=SUBJECT, thawed_at=late))

    refusal = refused(infuse(), state)

    assert refusal.rule == "infusion-within-thaw-limit"
    assert refusal.details["minutes_after_thaw"] == 180


def test_a_thaw_without_a_recorded_time_is_not_timed():
    assert given(*READY_TO_INFUSE).lots[LOT].thawed_at is None
    [event] = DECIDER.decide(infuse(), given(*READY_TO_INFUSE))

    assert event.payload.event_type == "InfusionRecorded"


# ---------------------------------------------------------------- the trial file's numbers


def test_the_shipped_trial_file_names_the_window_and_the_thaw_limit_as_project_defaults():
    assert TRIAL.conditioning.infusion_min_days_after_last_day == 2
    assert TRIAL.conditioning.infusion_max_days_after_last_day == 14
    assert TRIAL.infusion.thaw_to_infusion_max_minutes == 120
    for key in (
        "conditioning.infusion_min_days_after_last_day",
        "conditioning.infusion_max_days_after_last_day",
        "infusion.thaw_to_infusion_max_minutes",
    ):
        assert "Project default" in TRIAL.defaults_chosen[key]


def test_a_window_that_ends_before_it_starts_is_refused_by_the_trial_file():
    with pytest.raises(ValueError, match="infusion_min_days_after_last_day"):
        TRIAL.conditioning.model_validate(
            {
                **TRIAL.conditioning.model_dump(),
                "infusion_min_days_after_last_day": 5,
                "infusion_max_days_after_last_day": 4,
            }
        )
