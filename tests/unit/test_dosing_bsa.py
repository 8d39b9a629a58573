"""Body-surface area and conditioning doses.

Sources: Mosteller RD, N Engl J Med 1987;317:1098: BSA (m^2) = sqrt(height_cm x weight_kg / 3600).
DOMAIN.md section 1 (NCT06623396): fludarabine 30 mg/m^2/day and cyclophosphamide
300 mg/m^2/day. Expected values below are worked by hand from the formula, e.g. 180 cm x 80 kg =
14400, / 3600 = 4, sqrt = 2.0 m^2, so 60 mg fludarabine and 600 mg cyclophosphamide.
"""

from __future__ import annotations

import pytest

from services.dosing.bsa import (
    conditioning_doses,
    deviation_percent,
    mosteller_bsa_m2,
    within_tolerance,
)

# (height cm, weight kg, height x weight / 3600, BSA m^2)
MOSTELLER = [
    (180, 80, 4.0, 2.0),
    (160, 90, 4.0, 2.0),
    (150, 54, 2.25, 1.5),
    (162, 50, 2.25, 1.5),
    (196, 81, 4.41, 2.1),
    (144, 25, 1.0, 1.0),
    (170, 70, 3.30556, 1.81812),  # 1.81812^2 = 3.30556
    (175, 60, 2.91667, 1.70783),  # 1.70783^2 = 2.91668
]


@pytest.mark.parametrize(
    ("height_cm", "weight_kg", "product_over_3600", "bsa_m2"),
    MOSTELLER,
    ids=[f"{h}cm-{w}kg" for h, w, _, _ in MOSTELLER],
)
def test_mosteller_body_surface_area(height_cm, weight_kg, product_over_3600, bsa_m2):
    assert height_cm * weight_kg / 3600 == pytest.approx(product_over_3600, rel=1e-5)
    assert mosteller_bsa_m2(height_cm, weight_kg) == pytest.approx(bsa_m2, rel=1e-5)


@pytest.mark.parametrize(("height_cm", "weight_kg"), [(0, 70), (170, 0), (-170, 70)])
def test_a_body_surface_area_needs_a_positive_height_and_weight(height_cm, weight_kg):
    with pytest.raises(ValueError, match="must be positive"):
        mosteller_bsa_m2(height_cm, weight_kg)


# (BSA m^2, fludarabine mg = 30 x BSA, cyclophosphamide mg = 300 x BSA)
DAILY_DOSES = [
    (2.0, 60.0, 600.0),
    (1.5, 45.0, 450.0),
    (2.1, 63.0, 630.0),
    (1.0, 30.0, 300.0),
    (1.81812, 54.5436, 545.436),
]


@pytest.mark.parametrize(("bsa_m2", "fludarabine_mg", "cyclophosphamide_mg"), DAILY_DOSES)
def test_the_trial_conditioning_doses_per_day(bsa_m2, fludarabine_mg, cyclophosphamide_mg):
    doses = conditioning_doses(bsa_m2, 30, 300)

    assert doses.fludarabine_mg == pytest.approx(fludarabine_mg)
    assert doses.cyclophosphamide_mg == pytest.approx(cyclophosphamide_mg)


def test_the_doses_follow_the_configured_mg_per_m2():
    doses = conditioning_doses(2.0, 25, 250)

    assert (doses.fludarabine_mg, doses.cyclophosphamide_mg) == (50.0, 500.0)


# (actual, target, tolerance %, accepted): the limit itself is inside.
TOLERANCE = [
    (60.0, 60.0, 10, True),
    (66.0, 60.0, 10, True),
    (54.0, 60.0, 10, True),
    (65.9, 60.0, 10, True),
    (66.1, 60.0, 10, False),
    (53.9, 60.0, 10, False),
    (8.4e7, 7e7, 20, True),
    (5.6e7, 7e7, 20, True),
    (8.41e7, 7e7, 20, False),
    (5.59e7, 7e7, 20, False),
    (0.1 + 0.2, 0.25, 20, True),  # 0.30000000000000004 is 20% above 0.25: float noise only
    (7e7, 7e7, 0, True),
    (7.000001e7, 7e7, 0, False),
]


@pytest.mark.parametrize(("actual", "target", "tolerance", "accepted"), TOLERANCE)
def test_a_dose_within_tolerance_is_accepted_up_to_the_limit(actual, target, tolerance, accepted):
    assert within_tolerance(actual, target, tolerance) is accepted


@pytest.mark.parametrize(
    ("actual", "target", "percent"), [(66, 60, 10), (54, 60, 10), (8.4e7, 7e7, 20), (7e7, 7e7, 0)]
)
def test_the_deviation_is_a_percentage_of_the_target(actual, target, percent):
    assert deviation_percent(actual, target) == pytest.approx(percent)
