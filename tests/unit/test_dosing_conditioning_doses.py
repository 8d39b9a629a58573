"""Conditioning doses computed from the body-surface area, as the decider checks them.

Sources: DOMAIN.md section 1 (fludarabine 30 mg/m^2/day, cyclophosphamide 300 mg/m^2/day, from
the trial file); Mosteller, N Engl J Med 1987;317:1098 (BSA = sqrt(height_cm x weight_kg /
3600)); the given dose within 10% of the computed one, the project's default after the
Hematology/Oncology Pharmacy Association's dose-rounding position (Fahrenbruch et al., J Oncol
Pract 2018), the limit itself inside. 180 cm x 80 kg: 14400 / 3600 = 4, BSA 2.0 m^2, so 60 mg
fludarabine (54 to 66 mg) and 600 mg cyclophosphamide (540 to 660 mg).
"""

from __future__ import annotations

import pytest

from events.dosing import ConditioningDayRecorded
from services.dosing.decider import DosingRules, decide, make_decider

from .test_dosing_facts import (
    DECIDER,
    LOT,
    PRODUCT_AVAILABLE,
    SUBJECT,
    TRIAL,
    conditioning_time,
    given,
    record_day,
    refused,
)

# ---------------------------------------------------------------- doses from the BSA

# BSA 2.0 m^2: 60 mg fludarabine (54 to 66 mg within 10%), 600 mg cyclophosphamide (540 to 660).
DOSES = [
    ("exact", 60.0, 600.0, None),
    ("fludarabine at the upper limit", 66.0, 600.0, None),
    ("fludarabine at the lower limit", 54.0, 600.0, None),
    ("fludarabine just inside", 65.9, 600.0, None),
    ("fludarabine just above", 66.1, 600.0, "fludarabine"),
    ("fludarabine just below", 53.9, 600.0, "fludarabine"),
    ("cyclophosphamide at the upper limit", 60.0, 660.0, None),
    ("cyclophosphamide at the lower limit", 60.0, 540.0, None),
    ("cyclophosphamide just above", 60.0, 661.0, "cyclophosphamide"),
    ("cyclophosphamide just below", 60.0, 539.0, "cyclophosphamide"),
    ("the two drugs swapped", 600.0, 60.0, "fludarabine"),
]


@pytest.mark.parametrize(
    ("fludarabine_mg", "cyclophosphamide_mg", "refused_drug"),
    [case[1:] for case in DOSES],
    ids=[case[0] for case in DOSES],
)
def test_each_drug_is_within_ten_percent_of_its_bsa_dose(
    fludarabine_mg, cyclophosphamide_mg, refused_drug
):
    state = given(*PRODUCT_AVAILABLE)
    command = record_day(1, fludarabine_mg=fludarabine_mg, cyclophosphamide_mg=cyclophosphamide_mg)

    if refused_drug is None:
        (event,) = DECIDER.decide(command, state)
        assert event.payload.fludarabine_mg == fludarabine_mg
        assert event.payload.cyclophosphamide_mg == cyclophosphamide_mg
    else:
        error = refused(command, state)
        assert error.rule == "conditioning-dose-within-tolerance"
        assert error.details["drug"] == refused_drug
        assert error.details["bsa_m2"] == 2.0
        assert error.details["tolerance_percent"] == 10


def test_a_refused_dose_names_the_computation():
    error = refused(record_day(1, fludarabine_mg=70.0), given(*PRODUCT_AVAILABLE))

    assert error.message == (
        "fludarabine 70 mg differs by 16.7% from the computed 60.0 mg "
        "(30 mg/m^2 x BSA 2.00 m^2 for 180 cm, 80 kg); at most 10% allowed"
    )


@pytest.mark.parametrize(
    ("height_cm", "weight_kg", "fludarabine_mg", "cyclophosphamide_mg"),
    [(150, 54, 45.0, 450.0), (196, 81, 63.0, 630.0), (170, 70, 54.5, 545.0)],
    ids=["1.5 m^2", "2.1 m^2", "1.818 m^2, rounded to the nearest mg"],
)
def test_the_dose_follows_the_measured_height_and_weight(
    height_cm, weight_kg, fludarabine_mg, cyclophosphamide_mg
):
    command = record_day(
        1,
        height_cm=height_cm,
        weight_kg=weight_kg,
        fludarabine_mg=fludarabine_mg,
        cyclophosphamide_mg=cyclophosphamide_mg,
    )

    (event,) = DECIDER.decide(command, given(*PRODUCT_AVAILABLE))

    assert (event.payload.height_cm, event.payload.weight_kg) == (height_cm, weight_kg)


def test_a_dose_for_the_wrong_body_size_is_refused():
    # 60 mg is right for 2.0 m^2 but 33% too much for 150 cm x 54 kg (1.5 m^2, 45 mg).
    command = record_day(1, height_cm=150, weight_kg=54)

    error = refused(command, given(*PRODUCT_AVAILABLE))

    assert error.details["computed_mg"] == 45.0
    assert error.details["bsa_m2"] == 1.5


def test_the_mg_per_m2_come_from_the_trial_file():
    rules = DosingRules(
        fludarabine_mg_per_m2=25,
        cyclophosphamide_mg_per_m2=250,
        conditioning_days=3,
        conditioning_dose_tolerance_percent=10,
        infused_dose_tolerance_percent=20,
    )
    state = given(*PRODUCT_AVAILABLE)

    (event,) = decide(
        record_day(1, fludarabine_mg=50.0, cyclophosphamide_mg=500.0), state, rules=rules
    )

    assert event.payload == ConditioningDayRecorded(
        subject_id=SUBJECT,
        lot_id=LOT,
        day=1,
        height_cm=180.0,
        weight_kg=80.0,
        fludarabine_mg=50.0,
        cyclophosphamide_mg=500.0,
        given_at=conditioning_time(1),
    )
    rules = DosingRules.of(TRIAL)
    assert (rules.fludarabine_mg_per_m2, rules.cyclophosphamide_mg_per_m2) == (30, 300)
    assert (rules.conditioning_days, rules.conditioning_dose_tolerance_percent) == (3, 10.0)
    assert rules.infused_dose_tolerance_percent == 20


def test_the_tolerance_comes_from_the_trial_file():
    # 64 mg fludarabine is 6.7% above 60 mg: inside the shipped 10%, outside a trial's 5%.
    strict = make_decider(TRIAL.model_copy(update={
        "conditioning": TRIAL.conditioning.model_copy(update={"dose_tolerance_percent": 5})
    }))
    state = given(*PRODUCT_AVAILABLE)
    command = record_day(1, fludarabine_mg=64.0)

    assert DECIDER.decide(command, state)
    error = refused(command, state, decider=strict)
    assert error.rule == "conditioning-dose-within-tolerance"
    assert "at most 5%" in error.message
