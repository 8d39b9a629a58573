"""The washout holds the leukapheresis (manufacturing) and the infusion (dosing), both following
enrollment's ``PriorTherapyRecorded`` (issue 11 item 5).

Source: the shipped trial file's ``washout`` (the project's defaults): checkpoint inhibitors 28
days before leukapheresis, chemotherapy 14 days before infusion, systemic steroids 3 days before
infusion; calendar days in America/New_York (EST, UTC-5, until 9 March 2025; EDT, UTC-4, after).
The manufacturing givens collect at 2025-03-03 09:00 UTC (3 March in New York); the dosing
givens infuse at 2025-04-07 10:00 UTC (7 April in New York).
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime

import pytest

from events.dosing import InfusionRecorded
from events.enrollment import PriorTherapyRecorded
from events.manufacturing import ApheresisCollected
from services.errors import RuleViolated

from . import test_dosing_facts as dosing
from . import test_manufacturing_givens as manufacturing

S = "MSK-0007"


def prior(therapy_class: str, last_dose_on: date) -> PriorTherapyRecorded:
    return PriorTherapyRecorded(subject_id=S, therapy_class=therapy_class,
                                last_dose_on=last_dose_on)


# ---------------------------------------------------------------- before leukapheresis


def enrolled_with(*priors: PriorTherapyRecorded):
    state = manufacturing.enrolled()
    for event in priors:
        state = manufacturing.DECIDER.evolve(state, event)
    return state


def test_apheresis_28_days_after_the_last_checkpoint_inhibitor_dose_is_collected():
    state = enrolled_with(prior("checkpoint-inhibitor", date(2025, 2, 3)))
    [event] = manufacturing.decide(manufacturing.apheresis(), state)
    assert isinstance(event.payload, ApheresisCollected)


def test_apheresis_27_days_after_a_checkpoint_inhibitor_is_refused_and_nothing_is_appended():
    state = enrolled_with(prior("checkpoint-inhibitor", date(2025, 2, 4)))
    before = copy.deepcopy(state)
    with pytest.raises(RuleViolated) as refused:
        manufacturing.decide(manufacturing.apheresis(), state)
    assert state == before
    error = refused.value
    assert error.rule == "washout-complete"
    assert error.details["milestone"] == "leukapheresis"
    assert error.details["violations"] == [
        {"therapy_class": "checkpoint-inhibitor", "last_dose_on": "2025-02-04",
         "days_since": 27, "required_days": 28, "earliest_on": "2025-03-04"}]


def test_a_late_evening_apheresis_counts_the_day_it_is_in_new_york_not_in_utc():
    state = enrolled_with(prior("checkpoint-inhibitor", date(2025, 2, 4)))
    # 22:30 EST on 3 March; in UTC already 4 March, which would be day 28
    evening = manufacturing.apheresis(occurred_at=datetime(2025, 3, 4, 3, 30, tzinfo=UTC))
    with pytest.raises(RuleViolated) as refused:
        manufacturing.decide(evening, state)
    assert refused.value.details["on"] == "2025-03-03"


def test_the_leukapheresis_washout_of_another_subject_does_not_hold_this_one():
    other = PriorTherapyRecorded(subject_id="MSK-0008", therapy_class="chemotherapy",
                                 last_dose_on=date(2025, 3, 2))
    assert manufacturing.decide(manufacturing.apheresis(), enrolled_with(other))


# ---------------------------------------------------------------- before infusion


def test_bridging_chemotherapy_14_days_before_the_infusion_allows_it():
    state = dosing.given(*dosing.READY_TO_INFUSE, prior("chemotherapy", date(2025, 3, 24)))
    [event] = dosing.DECIDER.decide(dosing.infuse(), state)
    assert isinstance(event.payload, InfusionRecorded)


def test_bridging_chemotherapy_13_days_before_the_infusion_refuses_it():
    state = dosing.given(*dosing.READY_TO_INFUSE, prior("chemotherapy", date(2025, 3, 25)))
    error = dosing.refused(dosing.infuse(), state)
    assert error.rule == "washout-complete"
    assert error.details["milestone"] == "infusion"
    assert error.details["violations"][0]["earliest_on"] == "2025-04-08"


def test_a_late_evening_infusion_counts_the_day_it_is_in_new_york():
    state = dosing.given(*dosing.READY_TO_INFUSE, prior("chemotherapy", date(2025, 3, 25)))
    # 22:00 EDT on 7 April, 02:00 UTC on 8 April (day 14 in UTC, day 13 in New York)
    error = dosing.refused(dosing.infuse(occurred_at=datetime(2025, 4, 8, 2, tzinfo=UTC)), state)
    assert (error.rule, error.details["on"]) == ("washout-complete", "2025-04-07")


@pytest.mark.parametrize(("last_dose_on", "allowed"), [
    (date(2025, 4, 4), True),   # 3 days
    (date(2025, 4, 5), False),  # 2 days
])
def test_systemic_steroids_need_three_days_before_the_infusion(last_dose_on, allowed):
    state = dosing.given(*dosing.READY_TO_INFUSE, prior("systemic-steroid", last_dose_on))
    if allowed:
        assert dosing.DECIDER.decide(dosing.infuse(), state)
    else:
        assert dosing.refused(dosing.infuse(), state).rule == "washout-complete"


def test_a_steroid_course_seven_days_before_collection_does_not_hold_an_infusion_weeks_later():
    # 7 days is the leukapheresis washout; the infusion needs 3, long passed
    state = dosing.given(*dosing.READY_TO_INFUSE, prior("systemic-steroid", date(2025, 2, 24)))
    assert dosing.DECIDER.decide(dosing.infuse(), state)
