"""The weight the lot was made for, the weight at infusion, and the cells the lot released.

Sources: DOMAIN.md section 1 (the dose is cells/kg x body weight at the time of dosing; the
product's actual cell count is recorded and checked): manufacturing targets cells/kg x the
weight at collection (ApheresisCollected), dosing checks cells/kg x the weight at infusion; a
weight more than the trial file's 10% away from the weight at collection needs a reason (the
project's default), and no more cells are given than the lot released, up to the trial file's
10% for the imprecision of two counts (the project's default).

MSK-0007 weighed 70 kg at collection; 63 and 77 kg are 10% away.
"""

from __future__ import annotations

import pytest

from events.manufacturing import ApheresisCollected, LotReleased, QcResultRecorded
from services.dosing.decider import make_decider

from .test_dosing_facts import (
    COI,
    DECIDER,
    LOT,
    READY_TO_INFUSE,
    SUBJECT,
    TRIAL,
    exceptionally_released,
    given,
    infuse,
    out_of_specification,
    refused,
    released,
    without,
)


def collected(weight_kg: float = 70.0) -> ApheresisCollected:
    return ApheresisCollected(
        lot_id=LOT,
        subject_id=SUBJECT,
        coi_id=COI,
        din="A9999251234569",
        collection_site="MSK Apheresis Unit",
        volume_ml=250.0,
        total_nucleated_cells=1.2e10,
        cd3_cells=6.0e9,
        weight_kg=weight_kg,
    )


def released_with(cells: float) -> LotReleased:
    return released().model_copy(update={"total_car_t_cells": cells})


COLLECTED_AT_70 = [collected(70.0), *READY_TO_INFUSE]


# ---------------------------------------------------------------- weight


@pytest.mark.parametrize("weight_kg", [63.0, 70.0, 77.0])
def test_a_weight_within_ten_percent_of_the_collection_weight_needs_no_reason(weight_kg):
    command = infuse(weight_kg=weight_kg, cells_infused=weight_kg * 1e6)

    [event] = DECIDER.decide(command, given(*COLLECTED_AT_70))

    assert event.payload.weight_kg == weight_kg


@pytest.mark.parametrize("weight_kg", [62.9, 77.1, 55.0])
def test_a_weight_more_than_ten_percent_away_without_a_reason_is_refused(weight_kg):
    command = infuse(weight_kg=weight_kg, cells_infused=weight_kg * 1e6)

    refusal = refused(command, given(*COLLECTED_AT_70))

    assert refusal.rule == "weight-change-needs-reason"
    assert refusal.details["weight_at_collection_kg"] == 70.0
    assert refusal.details["weight_kg"] == weight_kg
    assert refusal.details["tolerance_percent"] == 10


def test_with_a_reason_the_changed_weight_is_accepted_and_the_dose_follows_it():
    command = infuse(
        weight_kg=60.0, cells_infused=6.0e7, reason="weight loss since collection confirmed"
    )

    [event] = DECIDER.decide(command, given(*COLLECTED_AT_70))

    assert (event.payload.weight_kg, event.payload.received_cells_per_kg) == (60.0, 1e6)


def test_the_weight_tolerance_comes_from_the_trial_file():
    infusion = TRIAL.infusion.model_copy(update={"weight_change_tolerance_percent": 5})
    strict = make_decider(TRIAL.model_copy(update={"infusion": infusion}))

    command = infuse(weight_kg=74.0, cells_infused=7.4e7)  # 5.7% more than at collection

    refusal = refused(command, given(*COLLECTED_AT_70), decider=strict)

    assert refusal.rule == "weight-change-needs-reason"


def test_the_collection_weight_is_the_one_the_lot_was_collected_at():
    state = given(collected(80.0), *READY_TO_INFUSE)

    assert state.lots[LOT].weight_at_collection_kg == 80.0
    assert refused(infuse(), state).rule == "weight-change-needs-reason"  # 70 kg is 12.5% less


# ---------------------------------------------------------------- cells released


def test_no_more_cells_are_given_than_the_lot_released_beyond_the_counting_tolerance():
    # 7 x 10^7 released; 7.7 x 10^7 is 10% more, 7.71 x 10^7 beyond
    facts = [released_with(7e7) if f == released() else f for f in READY_TO_INFUSE]

    [event] = DECIDER.decide(infuse(cells_infused=7.7e7), given(*facts))
    assert event.payload.cells_infused == 7.7e7

    refusal = refused(infuse(cells_infused=7.71e7), given(*facts))
    assert refusal.rule == "cells-infused-within-released"
    assert refusal.details["released_cells"] == 7e7
    assert refusal.details["tolerance_percent"] == 10


def test_an_exceptionally_released_lot_counts_its_cells_from_the_cell_dose_test():
    counted = QcResultRecorded(
        lot_id=LOT, subject_id=SUBJECT, test="cell_dose", value=4.0e7, outcome=None
    )
    facts = [
        *without(READY_TO_INFUSE, released()),
        counted,
        out_of_specification(failed=("cell_dose",)),
        exceptionally_released(),
    ]

    state = given(*facts)
    assert state.lots[LOT].released_cells == 4.0e7
    assert refused(infuse(cells_infused=4.9e7), state).rule == "cells-infused-within-released"
    [event] = DECIDER.decide(infuse(cells_infused=4.0e7), state)
    assert event.payload.counted_dose_level == "DL-1"
