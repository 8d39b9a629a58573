"""Conditioning (lymphodepletion), recorded one day at a time.

Sources: DOMAIN.md section 1 (fludarabine 30 mg/m^2/day and cyclophosphamide 300 mg/m^2/day
for 3 days, values from the trial file), Mosteller (N Engl J Med 1987;317:1098) for the
body-surface area, DOMAIN.md 2.2 (conditioning starts only once the released product's
availability is confirmed) and the sibling trial's sequence (NCT04577326: eligibility
re-checked after manufacturing, then conditioning). The doses themselves are checked in
test_dosing_conditioning_doses.py.

Every person here is 180 cm and 80 kg unless said otherwise: BSA = sqrt(180 x 80 / 3600) =
2.0 m^2, so 60 mg fludarabine and 600 mg cyclophosphamide a day.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.decider import NewEvent
from services.dosing.decider import (
    make_decider,
)
from services.dosing.state import evolve
from services.errors import NotFound, RuleViolated

from .test_dosing_facts import (
    DECIDER,
    ENROLLED,
    LOT,
    OTHER_LOT,
    OTHER_SUBJECT,
    PRODUCT_AVAILABLE,
    SUBJECT,
    TRIAL,
    conditioning_day,
    conditioning_time,
    enrolled,
    exceptionally_released,
    given,
    infused,
    out_of_specification,
    reconfirmed,
    record_day,
    refused,
    released,
    withdrawn,
    without,
)

# ---------------------------------------------------------------- the happy path


def test_day_one_is_recorded_once_the_product_is_available_and_eligibility_reconfirmed():
    # Given MSK-0007 enrolled, lot LOT-0007-A released, eligibility re-confirmed for it
    state = given(*PRODUCT_AVAILABLE)

    # When day 1 is given: 60 mg fludarabine, 600 mg cyclophosphamide for 2.0 m^2
    events = DECIDER.decide(record_day(1), state)

    # Then the day is recorded on the subject's stream, at its business time
    assert events == [NewEvent(f"subject-{SUBJECT}", conditioning_day(1), conditioning_time(1))]


def test_three_days_in_order_complete_the_trial_regimen():
    state = given(*PRODUCT_AVAILABLE)
    recorded = []

    for day in (1, 2, 3):
        (event,) = DECIDER.decide(record_day(day), state)
        state = evolve(state, event.payload)
        recorded.append(event.payload)

    assert recorded == [conditioning_day(1), conditioning_day(2), conditioning_day(3)]
    assert state.subjects[SUBJECT].conditioning_days == (1, 2, 3)


@pytest.mark.parametrize(
    "product",
    [
        [released(conditional=True)],
        [out_of_specification(), exceptionally_released()],
    ],
    ids=["released conditionally", "out of specification, exceptionally released"],
)
def test_conditioning_may_start_on_a_conditional_or_exceptional_release(product):
    state = given(*ENROLLED, *product, reconfirmed())

    (event,) = DECIDER.decide(record_day(1), state)

    assert event.payload.day == 1


def test_a_late_failure_after_day_one_does_not_refuse_recording_the_days_given():
    # The availability check gates the start; days 2 and 3 record what was given. The late
    # failure then blocks the infusion (test_dosing_infusion.py).
    state = given(
        *ENROLLED,
        released(conditional=True),
        reconfirmed(),
        conditioning_day(1),
        out_of_specification(failed=("sterility",), after_release=True),
    )

    (event,) = DECIDER.decide(record_day(2), state)

    assert event.payload.day == 2


# ---------------------------------------------------------------- days in order, never twice

DAY_ORDER = [
    ("day 2 before day 1", [], 2, "conditioning-days-in-order", 1),
    ("day 1 twice", [1], 1, "conditioning-days-in-order", 2),
    ("day 3 skipping day 2", [1], 3, "conditioning-days-in-order", 2),
    ("day 2 twice", [1, 2], 2, "conditioning-days-in-order", 3),
    ("day 4 of a 3-day regimen", [1, 2, 3], 4, "conditioning-days-configured", None),
    ("day 4 before day 2", [1], 4, "conditioning-days-configured", None),
]


@pytest.mark.parametrize(
    ("done", "day", "rule", "expected_day"),
    [case[1:] for case in DAY_ORDER],
    ids=[case[0] for case in DAY_ORDER],
)
def test_days_are_recorded_in_order_never_twice_and_never_beyond_the_regimen(
    done, day, rule, expected_day
):
    state = given(*PRODUCT_AVAILABLE, *(conditioning_day(d) for d in done))

    error = refused(record_day(day), state)

    assert error.rule == rule
    assert error.details["day"] == day
    if expected_day is not None:
        assert error.details["expected_day"] == expected_day
        assert f"day {expected_day}, not day {day}" in error.message
    else:
        assert error.details["configured_days"] == 3


def test_the_number_of_days_comes_from_the_trial_file():
    four_days = TRIAL.model_copy(
        update={"conditioning": TRIAL.conditioning.model_copy(update={"days": 4})}
    )
    state = given(*PRODUCT_AVAILABLE, *(conditioning_day(d) for d in (1, 2, 3)))

    (event,) = make_decider(four_days).decide(record_day(4), state)

    assert event.payload.day == 4


def test_every_day_is_for_the_lot_conditioning_started_for():
    state = given(
        *PRODUCT_AVAILABLE,
        released(OTHER_LOT, SUBJECT, "COI-MSK-0007-02"),
        reconfirmed(lot_id=OTHER_LOT),
        conditioning_day(1),
    )

    error = refused(record_day(2, lot_id=OTHER_LOT), state)

    assert error.rule == "conditioning-for-one-lot"
    assert error.details == {
        "subject_id": SUBJECT,
        "lot_id": OTHER_LOT,
        "conditioning_lot": LOT,
    }


# ---------------------------------------------------------------- preconditions of day 1

DAY_ONE_PRECONDITIONS = [
    (
        "subject not enrolled",
        without(PRODUCT_AVAILABLE, enrolled()),
        NotFound,
        "subject-must-be-enrolled",
        "subject MSK-0007 is not enrolled in a cohort; conditioning cannot be recorded",
    ),
    (
        "subject withdrawn",
        [*PRODUCT_AVAILABLE, withdrawn()],
        RuleViolated,
        "subject-must-not-be-withdrawn",
        "subject MSK-0007 was withdrawn from the study; conditioning cannot be recorded",
    ),
    (
        "subject already infused",
        [*PRODUCT_AVAILABLE, infused()],
        RuleViolated,
        "one-infusion-per-subject",
        "subject MSK-0007 was already infused with lot LOT-0007-A; conditioning cannot be recorded",
    ),
    (
        "lot not released",
        without(PRODUCT_AVAILABLE, released()),
        RuleViolated,
        "lot-must-be-released",
        "lot LOT-0007-A is not released (last manufacturing event: none on record); "
        "conditioning cannot start",
    ),
    (
        "lot out of specification",
        [*without(PRODUCT_AVAILABLE, released()), out_of_specification()],
        RuleViolated,
        "lot-must-be-released",
        "lot LOT-0007-A is out of specification (viability) with no exceptional release; "
        "conditioning cannot start",
    ),
    (
        "late positive sterility after a conditional release",
        [
            *without(PRODUCT_AVAILABLE, released()),
            released(conditional=True),
            out_of_specification(failed=("sterility",), after_release=True),
        ],
        RuleViolated,
        "lot-must-be-released",
        "lot LOT-0007-A is out of specification (sterility) after its release with no "
        "exceptional release; conditioning cannot start",
    ),
    (
        "eligibility not re-confirmed",
        without(PRODUCT_AVAILABLE, reconfirmed()),
        RuleViolated,
        "eligibility-must-be-reconfirmed",
        "eligibility of subject MSK-0007 has not been re-confirmed after the manufacture of "
        "lot LOT-0007-A; conditioning cannot start",
    ),
    (
        "eligibility re-confirmed for another lot only",
        [*without(PRODUCT_AVAILABLE, reconfirmed()), reconfirmed(lot_id="LOT-0007-B")],
        RuleViolated,
        "eligibility-must-be-reconfirmed",
        "eligibility of subject MSK-0007 has not been re-confirmed after the manufacture of "
        "lot LOT-0007-A; conditioning cannot start",
    ),
]


@pytest.mark.parametrize(
    ("facts", "error", "rule", "message"),
    [case[1:] for case in DAY_ONE_PRECONDITIONS],
    ids=[case[0] for case in DAY_ONE_PRECONDITIONS],
)
def test_day_one_is_refused_when_a_precondition_is_missing(facts, error, rule, message):
    refusal = refused(record_day(1), given(*facts), error)

    assert refusal.rule == rule
    assert refusal.message == message


def test_the_product_of_another_subject_is_refused():
    state = given(
        *PRODUCT_AVAILABLE,
        released(OTHER_LOT, OTHER_SUBJECT, "COI-MSK-0008-01"),
        reconfirmed(lot_id=OTHER_LOT),
    )

    error = refused(record_day(1, lot_id=OTHER_LOT), state)

    assert error.rule == "lot-must-belong-to-subject"
    assert error.message == "lot LOT-0008-A was made for subject MSK-0008, not for subject MSK-0007"


# ---------------------------------------------------------------- days in time order


@pytest.mark.parametrize(
    "given_at",
    [conditioning_time(1), conditioning_time(1) - timedelta(hours=1)],
    ids=["same time as day 1", "before day 1"],
)
def test_a_day_is_given_after_the_day_before(given_at):
    state = given(*PRODUCT_AVAILABLE, conditioning_day(1))

    error = refused(record_day(2, occurred_at=given_at), state)

    assert error.rule == "conditioning-days-in-order"
    assert error.details["previous_day"] == 1
    assert error.details["previous_given_at"] == "2025-04-02T10:00:00+00:00"
