"""The infusion (day 0) and everything that must hold before it.

Sources: DOMAIN.md section 1 (dose = cells/kg x body weight at dosing; the product's actual
cell count is checked against the target within a tolerance: 20% in the trial file), 2.3-2.4
(a lot is given released, conditionally released, or out of specification only on an
exceptional release; a late failure after a conditional release blocks administration), 2.5
(before infusion: eligibility re-check, conditioning days recorded, bedside check by two
people), 2.6 (the infusion is day 0 and opens the DLT window). Route: the cohort's (NCT06623396
is given intraperitoneally).

Unless said otherwise: MSK-0007 weighs 70 kg at dosing in cohort DL1-IP (1 x 10^6 cells/kg,
intraperitoneal), so the target is 7 x 10^7 cells and 5.6 to 8.4 x 10^7 are within 20%.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from events.dosing import InfusionRecorded
from services.decider import NewEvent
from services.dosing.state import evolve
from services.errors import NotFound, RuleViolated

from .test_dosing_facts import (
    DECIDER,
    DOCTOR,
    INFUSION_DAY,
    LOT,
    NURSE,
    OTHER_LOT,
    OTHER_SUBJECT,
    READY_TO_INFUSE,
    SUBJECT,
    checked,
    cohort_opened,
    conditioning_day,
    conditioning_time,
    enrolled,
    exceptionally_released,
    given,
    infuse,
    infused,
    on_day,
    out_of_specification,
    reconfirmed,
    refused,
    released,
    thawed,
    withdrawn,
    without,
)

# ---------------------------------------------------------------- the infusion


def test_with_every_precondition_the_infusion_is_recorded_as_day_zero():
    # Given everything before day 0 is done
    state = given(*READY_TO_INFUSE)

    # When 7 x 10^7 CAR T cells are given intraperitoneally to MSK-0007 (70 kg)
    events = DECIDER.decide(infuse(), state)

    # Then InfusionRecorded, at the infusion time, which opens the DLT window
    assert events == [
        NewEvent(
            f"subject-{SUBJECT}",
            InfusionRecorded(
                subject_id=SUBJECT,
                lot_id=LOT,
                cohort_id="DL1-IP",
                dose_level="DL1",
                target_cells_per_kg=1e6,
                weight_kg=70.0,
                cells_infused=7e7,
                route="intraperitoneal",
                infused_at=INFUSION_DAY,
            ),
            INFUSION_DAY,
        )
    ]


def test_a_subject_is_infused_once():
    state = given(*READY_TO_INFUSE)
    (event,) = DECIDER.decide(infuse(), state)
    state = evolve(state, event.payload)

    error = refused(infuse(occurred_at=INFUSION_DAY + timedelta(hours=1)), state)

    assert error.rule == "one-infusion-per-subject"


# ---------------------------------------------------------------- each missing precondition

# (case, facts, error class, rule, message): one precondition missing at a time.
PRECONDITIONS = [
    (
        "subject not enrolled",
        without(READY_TO_INFUSE, enrolled()),
        NotFound,
        "subject-must-be-enrolled",
        "subject MSK-0007 is not enrolled in a cohort; no infusion can be recorded",
    ),
    (
        "subject withdrawn",
        [*READY_TO_INFUSE, withdrawn()],
        RuleViolated,
        "subject-must-not-be-withdrawn",
        "subject MSK-0007 was withdrawn from the study; no infusion can be recorded",
    ),
    (
        "subject already infused",
        [*READY_TO_INFUSE, infused()],
        RuleViolated,
        "one-infusion-per-subject",
        "subject MSK-0007 was already infused with lot LOT-0007-A; no infusion can be recorded",
    ),
    (
        "cohort not open",
        without(READY_TO_INFUSE, cohort_opened()),
        NotFound,
        "cohort-must-be-open",
        "cohort DL1-IP of subject MSK-0007 is not open",
    ),
    (
        "lot never released",
        without(READY_TO_INFUSE, released()),
        RuleViolated,
        "lot-must-be-released",
        "lot LOT-0007-A is not released (last manufacturing event: LotThawed); "
        "it cannot be infused",
    ),
    (
        "lot out of specification at QC",
        [*without(READY_TO_INFUSE, released()), out_of_specification()],
        RuleViolated,
        "lot-must-be-released",
        "lot LOT-0007-A is out of specification (viability) with no exceptional release; "
        "it cannot be infused",
    ),
    (
        "late positive sterility after a conditional release",
        [
            *without(READY_TO_INFUSE, released()),
            released(conditional=True),
            out_of_specification(failed=("sterility",), after_release=True),
        ],
        RuleViolated,
        "lot-must-be-released",
        "lot LOT-0007-A is out of specification (sterility) after its release with no "
        "exceptional release; it cannot be infused",
    ),
    (
        "lot not thawed",
        without(READY_TO_INFUSE, thawed()),
        RuleViolated,
        "lot-must-be-thawed",
        "lot LOT-0007-A has not been thawed; it cannot be infused",
    ),
    (
        "eligibility not re-confirmed",
        without(READY_TO_INFUSE, reconfirmed()),
        RuleViolated,
        "eligibility-must-be-reconfirmed",
        "eligibility of subject MSK-0007 has not been re-confirmed after the manufacture of "
        "lot LOT-0007-A; no infusion can be recorded",
    ),
    (
        "no conditioning",
        without(READY_TO_INFUSE, *(conditioning_day(d) for d in (1, 2, 3))),
        RuleViolated,
        "conditioning-must-be-complete",
        "subject MSK-0007 has 0 of 3 conditioning days recorded; no infusion can be recorded",
    ),
    (
        "conditioning day 3 missing",
        without(READY_TO_INFUSE, conditioning_day(3)),
        RuleViolated,
        "conditioning-must-be-complete",
        "subject MSK-0007 has 2 of 3 conditioning days recorded; no infusion can be recorded",
    ),
    (
        "no bedside check",
        without(READY_TO_INFUSE, checked(NURSE), checked(DOCTOR)),
        RuleViolated,
        "bedside-coi-by-two-people",
        "lot LOT-0007-A was checked at the bedside by nobody; two different people must "
        "check it; it cannot be infused",
    ),
    (
        "bedside check by one person",
        without(READY_TO_INFUSE, checked(DOCTOR)),
        RuleViolated,
        "bedside-coi-by-two-people",
        "lot LOT-0007-A was checked at the bedside by nurse-lee; two different people must "
        "check it; it cannot be infused",
    ),
    (
        "bedside check twice by the same person",
        [
            *without(READY_TO_INFUSE, checked(DOCTOR)),
            checked(NURSE, at=on_day(0, -10)),
        ],
        RuleViolated,
        "bedside-coi-by-two-people",
        "lot LOT-0007-A was checked at the bedside by nurse-lee and nurse-lee; two different "
        "people must check it; it cannot be infused",
    ),
]


@pytest.mark.parametrize(
    ("facts", "error", "rule", "message"),
    [case[1:] for case in PRECONDITIONS],
    ids=[case[0] for case in PRECONDITIONS],
)
def test_the_infusion_is_refused_when_a_precondition_is_missing(facts, error, rule, message):
    # Given every precondition but one; When the infusion is recorded; Then it is refused,
    # naming the rule and the values, and nothing is emitted
    refusal = refused(infuse(), given(*facts), error)

    assert refusal.rule == rule
    assert refusal.message == message
    assert refusal.status == (404 if error is NotFound else 409)


def test_a_late_positive_sterility_blocks_a_lot_already_thawed_and_checked():
    # Given a conditionally released lot, conditioning done, thawed and checked at the bedside
    state = given(
        *without(READY_TO_INFUSE, released()),
        released(conditional=True),
    )
    assert DECIDER.decide(infuse(), state)

    # When the sterility culture turns positive after release
    state = evolve(state, out_of_specification(failed=("sterility",), after_release=True))

    # Then the product cannot be given
    error = refused(infuse(), state)
    assert error.rule == "lot-must-be-released"
    assert error.details == {
        "lot_id": LOT,
        "state": "out-of-specification",
        "failed_tests": ["sterility"],
    }


@pytest.mark.parametrize(
    "release",
    [
        [released(conditional=True)],
        [out_of_specification(), exceptionally_released()],
        [
            released(conditional=True),
            out_of_specification(failed=("sterility",), after_release=True),
            exceptionally_released(),
        ],
    ],
    ids=[
        "released conditionally, negative to date",
        "out of specification, exceptionally released",
        "late failure, then exceptionally released",
    ],
)
def test_a_conditional_or_exceptional_release_may_be_infused(release):
    state = given(*without(READY_TO_INFUSE, released()), *release)

    (event,) = DECIDER.decide(infuse(), state)

    assert event.payload.lot_id == LOT


def test_the_lot_of_another_subject_is_refused():
    state = given(*READY_TO_INFUSE, released(OTHER_LOT, OTHER_SUBJECT, "COI-MSK-0008-01"))

    error = refused(infuse(lot_id=OTHER_LOT), state)

    assert error.rule == "lot-must-belong-to-subject"
    assert error.details == {
        "lot_id": OTHER_LOT,
        "lot_subject_id": OTHER_SUBJECT,
        "subject_id": SUBJECT,
    }


def test_the_lot_infused_is_the_lot_conditioning_was_given_for():
    # A second lot of the same subject, released, re-confirmed, thawed and checked, but the
    # conditioning was given for the first one.
    second = "LOT-0007-B"
    state = given(
        *READY_TO_INFUSE,
        released(second, SUBJECT, "COI-MSK-0007-02"),
        reconfirmed(lot_id=second),
        thawed(second),
        checked(NURSE, lot_id=second, coi_id="COI-MSK-0007-02"),
        checked(DOCTOR, lot_id=second, coi_id="COI-MSK-0007-02"),
    )

    error = refused(infuse(lot_id=second), state)

    assert error.rule == "conditioning-must-be-complete"
    assert error.details["conditioning_lot"] == LOT


def test_the_bedside_checks_of_another_lot_do_not_count():
    state = given(
        *without(READY_TO_INFUSE, checked(NURSE), checked(DOCTOR)),
        checked(NURSE, lot_id="LOT-0007-B", coi_id="COI-MSK-0007-02"),
        checked(DOCTOR, lot_id="LOT-0007-B", coi_id="COI-MSK-0007-02"),
    )

    assert refused(infuse(), state).rule == "bedside-coi-by-two-people"


# ---------------------------------------------------------------- in time order


@pytest.mark.parametrize(
    "infused_at",
    [conditioning_time(3), conditioning_time(2)],
    ids=["at the time of the last conditioning day", "before it"],
)
def test_the_infusion_comes_after_the_last_conditioning_day(infused_at):
    error = refused(infuse(occurred_at=infused_at), given(*READY_TO_INFUSE))

    assert error.rule == "infusion-after-conditioning"
    assert error.details["last_conditioning_day_at"] == "2025-04-04T10:00:00+00:00"


def test_a_bedside_check_made_after_the_infusion_time_does_not_count():
    # The doctor's check was at 9:40; an infusion recorded at 9:35 had only one check before it
    error = refused(infuse(occurred_at=on_day(0, -25)), given(*READY_TO_INFUSE))

    assert error.rule == "bedside-coi-before-infusion"
    assert error.details["verified_by"] == ["nurse-lee", "dr-ortega"]


def test_an_infusion_at_the_time_of_the_second_check_is_accepted():
    (event,) = DECIDER.decide(infuse(occurred_at=on_day(0, -20)), given(*READY_TO_INFUSE))

    assert event.payload.infused_at == on_day(0, -20)


# ---------------------------------------------------------------- route


def test_the_route_is_the_cohorts():
    error = refused(infuse(route="intravenous"), given(*READY_TO_INFUSE))

    assert error.rule == "route-must-match-cohort"
    assert error.message == (
        "cohort DL1-IP is given intraperitoneal; the intravenous route cannot be recorded"
    )


def test_an_intravenous_cohort_is_infused_intravenously():
    facts = [
        cohort_opened("DL1-IV", route="intravenous") if f == cohort_opened() else f
        for f in READY_TO_INFUSE
    ]
    facts = [enrolled(cohort_id="DL1-IV") if f == enrolled() else f for f in facts]

    (event,) = DECIDER.decide(infuse(route="intravenous"), given(*facts))

    assert (event.payload.cohort_id, event.payload.route) == ("DL1-IV", "intravenous")
