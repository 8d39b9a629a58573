"""Fludarabine reduced for renal function, when the conditioning day carries the creatinine
clearance.

Sources: DOMAIN.md section 1 (fludarabine 30 mg/m^2/day); the trial file's renal bands and
floor, the project's defaults from the fludarabine phosphate US prescribing information
(CrCl 30 to below 70 mL/min: 20% less; below 30 mL/min: no fludarabine). Cyclophosphamide is
not reduced. The dose tolerance is the trial file's 10%.

180 cm and 80 kg: BSA 2.0 m^2, so fludarabine 60 mg in full, 48 mg reduced by 20% (43.2 to
52.8 mg within 10%), cyclophosphamide 600 mg.
"""

from __future__ import annotations

import pytest

from events.dosing import ConditioningDayRecorded
from events.registry import read

from .builders import sealed
from .test_dosing_facts import (
    DECIDER,
    PRODUCT_AVAILABLE,
    conditioning_day,
    given,
    record_day,
    refused,
)

STATE = given(*PRODUCT_AVAILABLE)

# (CrCl mL/min or None, fludarabine mg given, accepted)
FLUDARABINE = [
    (None, 60.0, True),  # no clearance given: the full dose
    (None, 48.0, False),
    (82.0, 60.0, True),  # normal renal function
    (70.0, 60.0, True),  # the band ends below 70
    (70.0, 48.0, False),
    (69.9, 48.0, True),
    (55.0, 48.0, True),
    (55.0, 52.8, True),  # 10% above the reduced dose
    (55.0, 53.0, False),
    (55.0, 60.0, False),  # the full dose is too much at this clearance
    (30.0, 48.0, True),  # the band starts at 30
]


@pytest.mark.parametrize(("crcl", "fludarabine_mg", "accepted"), FLUDARABINE)
def test_fludarabine_is_expected_reduced_by_20_percent_for_a_clearance_of_30_to_70(
    crcl, fludarabine_mg, accepted
):
    command = record_day(
        1, fludarabine_mg=fludarabine_mg, creatinine_clearance_ml_per_min=crcl
    )

    if accepted:
        [event] = DECIDER.decide(command, STATE)
        assert event.payload.fludarabine_mg == fludarabine_mg
        assert event.payload.creatinine_clearance_ml_per_min == crcl
    else:
        refusal = refused(command, STATE)
        assert refusal.rule == "conditioning-dose-within-tolerance"
        assert refusal.details["drug"] == "fludarabine"


def test_a_refusal_at_a_reduced_clearance_names_the_reduction():
    refusal = refused(record_day(1, creatinine_clearance_ml_per_min=55.0), STATE)

    assert refusal.details["computed_mg"] == pytest.approx(48.0)
    assert refusal.details["renal_reduction_percent"] == 20
    assert refusal.details["creatinine_clearance_ml_per_min"] == 55.0
    assert "less 20% for a CrCl of 55 mL/min" in refusal.message


def test_cyclophosphamide_is_not_reduced_for_renal_function():
    command = record_day(
        1, fludarabine_mg=48.0, cyclophosphamide_mg=480.0, creatinine_clearance_ml_per_min=55.0
    )

    refusal = refused(command, STATE)

    assert refusal.details["drug"] == "cyclophosphamide"
    assert refusal.details["computed_mg"] == pytest.approx(600.0)


def test_below_a_clearance_of_30_no_fludarabine_is_given():
    refusal = refused(
        record_day(1, fludarabine_mg=48.0, creatinine_clearance_ml_per_min=29.0), STATE
    )

    assert refusal.rule == "fludarabine-renal-function"
    assert refusal.details == {
        "subject_id": "MSK-0007",
        "creatinine_clearance_ml_per_min": 29.0,
        "min_crcl_ml_per_min": 30,
    }


def test_the_bands_come_from_the_trial_file():
    from services.dosing.decider import make_decider

    from .test_dosing_facts import TRIAL

    conditioning = TRIAL.conditioning.model_copy(
        update={
            "fludarabine_renal_reductions": (
                TRIAL.conditioning.fludarabine_renal_reductions[0].model_copy(
                    update={"reduce_percent": 50}
                ),
            )
        }
    )
    decider = make_decider(TRIAL.model_copy(update={"conditioning": conditioning}))

    [event] = decider.decide(
        record_day(1, fludarabine_mg=30.0, creatinine_clearance_ml_per_min=55.0), STATE
    )

    assert event.payload.fludarabine_mg == 30.0  # 60 mg less 50%, refused at the shipped 20%
    assert refused(
        record_day(1, fludarabine_mg=30.0, creatinine_clearance_ml_per_min=55.0), STATE
    ).rule == "conditioning-dose-within-tolerance"


def test_a_version_1_conditioning_day_is_read_with_no_clearance():
    day = conditioning_day(1)
    v1 = day.model_dump(mode="json", exclude={"creatinine_clearance_ml_per_min"})

    recorded = read(sealed(day, schema_version=1, payload=v1))

    assert ConditioningDayRecorded.schema_version == 2
    assert recorded.payload.creatinine_clearance_ml_per_min is None
    assert recorded.payload.day == 1
