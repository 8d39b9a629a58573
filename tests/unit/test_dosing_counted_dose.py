"""A lot out of specification for its cell dose is not a dead end: with an exceptional release
it is given, and the subject counts at the dose received.

Sources: DOMAIN.md section 1 (the dose is cells/kg x body weight at dosing, checked against the
target within a tolerance: 20% in the trial file), 2.3 (an out-of-specification lot may be
infused only on an exceptional release decided by the investigator and the sponsor), and the
project's rule for the counted level (docs/decisions.md, decision 27: the cohort's
level within tolerance, else the highest configured level whose cells/kg is at most the dose
received, else none). The levels are the shipped trial file's: DL-1 3 x 10^5, DL1 10^6, DL2
3 x 10^6, DL3 10^7, DL4 3 x 10^7 cells/kg, all intraperitoneal.

MSK-0007 weighs 70 kg in cohort DL1-IP: the target is 7 x 10^7 cells, 5.6 x 10^7 the least
within 20%.
"""

from __future__ import annotations

import pytest

from events.dosing import InfusionRecorded
from events.registry import read
from services.dosing.dose import Level, counted_level

from .builders import sealed
from .test_dosing_facts import (
    CONDITIONED,
    DECIDER,
    DOCTOR,
    LOT,
    NURSE,
    READY_TO_INFUSE,
    SUBJECT,
    checked,
    cohort_opened,
    enrolled,
    exceptionally_released,
    given,
    infuse,
    out_of_specification,
    reconfirmed,
    refused,
    released,
    thawed,
    without,
)

OOS_CELL_DOSE = out_of_specification(failed=("cell_dose",))
EXCEPTIONALLY_RELEASED = [
    *without(READY_TO_INFUSE, released()),
    OOS_CELL_DOSE,
    exceptionally_released(),
]
"""Ready to infuse, but the lot failed its cell dose at QC and was released exceptionally."""

# (cells infused at 70 kg, cells/kg received, the level counted), from the levels above
SHORT_DOSES = [
    (5.6e7, 8e5, "DL1"),  # at the tolerance's limit: within it, the cohort's level
    (4.9e7, 7e5, "DL-1"),  # 30% short: between DL-1 and DL1
    (2.1e7, 3e5, "DL-1"),  # exactly DL-1's cells/kg
    (1.4e7, 2e5, None),  # below the lowest level: counts at none
]


@pytest.mark.parametrize(("cells", "per_kg", "level"), SHORT_DOSES)
def test_an_exceptionally_released_short_lot_is_given_and_counts_at_the_dose_received(
    cells, per_kg, level
):
    [event] = DECIDER.decide(infuse(cells_infused=cells), given(*EXCEPTIONALLY_RELEASED))

    infusion = event.payload
    assert isinstance(infusion, InfusionRecorded)
    assert infusion.received_cells_per_kg == pytest.approx(per_kg)
    assert infusion.counted_dose_level == level
    # the cohort and its target stay what they were: the deviation is visible beside them
    assert (infusion.dose_level, infusion.target_cells_per_kg) == ("DL1", 1e6)


def test_within_tolerance_the_subject_counts_at_the_cohort_level():
    [event] = DECIDER.decide(infuse(cells_infused=6.5e7), given(*READY_TO_INFUSE))

    assert event.payload.counted_dose_level == "DL1"
    assert event.payload.received_cells_per_kg == pytest.approx(6.5e7 / 70)


def test_a_short_lot_without_exceptional_release_is_still_refused():
    refusal = refused(infuse(cells_infused=4.9e7), given(*READY_TO_INFUSE))

    assert refusal.rule == "infused-dose-within-tolerance"
    assert refusal.details["lot_release"] == "released"
    assert "no exceptional release" in refusal.message


def test_more_cells_than_the_cohort_dose_are_refused_even_on_exceptional_release():
    refusal = refused(infuse(cells_infused=9e7), given(*EXCEPTIONALLY_RELEASED))

    assert refusal.rule == "infused-dose-within-tolerance"
    assert refusal.details["target_cells"] == pytest.approx(7e7)
    assert "never given" in refusal.message


def test_a_late_failure_after_the_exceptional_release_blocks_the_short_dose():
    state = given(
        *EXCEPTIONALLY_RELEASED, out_of_specification(failed=("sterility",), after_release=True)
    )

    assert refused(infuse(cells_infused=4.9e7), state).rule == "lot-must-be-released"


def test_in_a_higher_cohort_a_short_dose_counts_at_the_level_below():
    # Cohort DL3-IP at 10^7 cells/kg: 4.2 x 10^8 cells at 70 kg are 6 x 10^6 cells/kg, 40% short
    facts = [
        cohort_opened("DL3-IP", "DL3", 1e7),
        enrolled(cohort_id="DL3-IP"),
        OOS_CELL_DOSE,
        exceptionally_released(),
        reconfirmed(),
        *[fact for fact in CONDITIONED if fact.event_type == "ConditioningDayRecorded"],
        thawed(),
        checked(NURSE),
        checked(DOCTOR),
    ]

    [event] = DECIDER.decide(infuse(cells_infused=4.2e8), given(*facts))

    assert (event.payload.dose_level, event.payload.counted_dose_level) == ("DL3", "DL2")


LEVELS = [
    Level("DL-1", 3e5, "intraperitoneal"),
    Level("DL1", 1e6, "intraperitoneal"),
    Level("DL2", 3e6, "intraperitoneal"),
    Level("IV1", 5e5, "intravenous"),
]


@pytest.mark.parametrize(
    ("per_kg", "route", "level"),
    [
        (2.99e5, "intraperitoneal", None),
        (3e5, "intraperitoneal", "DL-1"),
        (9.99e5, "intraperitoneal", "DL-1"),
        (1e6, "intraperitoneal", "DL1"),
        (2.9e6, "intraperitoneal", "DL1"),
        (6e5, "intravenous", "IV1"),  # only the cohort's route counts
        (4e5, "intravenous", None),
    ],
)
def test_the_counted_level_is_the_highest_level_reached_on_the_cohort_route(per_kg, route, level):
    assert counted_level(per_kg, route, LEVELS) == level


def test_a_version_1_infusion_is_read_as_counted_at_its_cohort_level():
    v1 = {
        "subject_id": SUBJECT,
        "lot_id": LOT,
        "cohort_id": "DL1-IP",
        "dose_level": "DL1",
        "target_cells_per_kg": 1e6,
        "weight_kg": 70.0,
        "cells_infused": 7.7e7,
        "route": "intraperitoneal",
        "infused_at": "2025-04-07T10:00:00Z",
    }
    example = InfusionRecorded.model_validate(v1)

    recorded = read(sealed(example, schema_version=1, payload=v1))

    assert InfusionRecorded.schema_version == 2
    assert recorded.payload.counted_dose_level == "DL1"
    assert recorded.payload.received_cells_per_kg == pytest.approx(1.1e6)


def test_an_infusion_may_say_it_counts_at_no_level():
    infusion = InfusionRecorded.model_validate(
        {
            **InfusionRecorded.model_json_schema()["examples"][0],
            "received_cells_per_kg": 2e5,
            "counted_dose_level": None,
        }
    )

    assert infusion.counted_dose_level is None
