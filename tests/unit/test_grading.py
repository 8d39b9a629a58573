"""CRS and ICANS grading: every row of the ASTCT tables in DOMAIN.md section 3.

Source: Lee DW et al., ASTCT Consensus Grading for Cytokine Release Syndrome and Neurologic
Toxicity Associated with Immune Effector Cells, Biol Blood Marrow Transplant 2019 (ASTCT 2019).
Expected grades are read off the consensus tables, never from running the code.

Given an observation at the bedside, When it is graded, Then the grade and the domain(s) that
set it are those of the consensus.
"""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from services.safety.grading import (
    CrsObservation,
    Grade,
    IcansObservation,
    grade_crs,
    grade_icans,
)

FEVER_C = 38.6
NO_FEVER_C = 37.2


def crs(temperature_c=FEVER_C, **findings) -> Grade:
    return grade_crs(CrsObservation(temperature_c=temperature_c, **findings))


def icans(ice_score=10, **findings) -> Grade:
    return grade_icans(IcansObservation(ice_score=ice_score, **findings))


# ---------------------------------------------------------------- CRS


def test_fever_without_hypotension_or_hypoxia_is_grade_1_crs():
    assert crs() == Grade(scale="ASTCT-CRS", grade=1, determined_by=("fever",))


@pytest.mark.parametrize(
    ("hypotension", "expected"),
    [
        ("none", 1),
        ("no-vasopressor", 2),
        ("one-vasopressor", 3),  # with or without vasopressin
        ("multiple-vasopressors", 4),  # vasopressin excluded
    ],
)
def test_crs_graded_by_hypotension_alone(hypotension, expected):
    grade = crs(hypotension=hypotension, hypoxia="none")
    assert grade.grade == expected
    assert grade.determined_by == (("fever",) if expected == 1 else ("hypotension",))


@pytest.mark.parametrize(
    ("hypoxia", "expected"),
    [
        ("none", 1),
        ("low-flow", 2),  # nasal cannula <= 6 L/min or blow-by
        ("high-flow", 3),  # > 6 L/min, facemask, non-rebreather or Venturi
        ("positive-pressure", 4),  # CPAP, BiPAP, intubation, mechanical ventilation
    ],
)
def test_crs_graded_by_hypoxia_alone(hypoxia, expected):
    grade = crs(hypotension="none", hypoxia=hypoxia)
    assert grade.grade == expected
    assert grade.determined_by == (("fever",) if expected == 1 else ("hypoxia",))


@pytest.mark.parametrize(
    ("hypotension", "hypoxia", "expected", "determined_by"),
    [
        ("no-vasopressor", "low-flow", 2, ("hypotension", "hypoxia")),
        ("no-vasopressor", "high-flow", 3, ("hypoxia",)),
        ("no-vasopressor", "positive-pressure", 4, ("hypoxia",)),
        ("one-vasopressor", "low-flow", 3, ("hypotension",)),
        ("one-vasopressor", "high-flow", 3, ("hypotension", "hypoxia")),
        ("one-vasopressor", "positive-pressure", 4, ("hypoxia",)),
        ("multiple-vasopressors", "low-flow", 4, ("hypotension",)),
        ("multiple-vasopressors", "high-flow", 4, ("hypotension",)),
        ("multiple-vasopressors", "positive-pressure", 4, ("hypotension", "hypoxia")),
    ],
)
def test_the_more_severe_of_hypotension_and_hypoxia_sets_the_crs_grade(
    hypotension, hypoxia, expected, determined_by
):
    assert crs(hypotension=hypotension, hypoxia=hypoxia) == Grade(
        scale="ASTCT-CRS", grade=expected, determined_by=determined_by
    )


@pytest.mark.parametrize(
    ("temperature_c", "expected"),
    [(38.0, 1), (37.9, 0), (40.5, 1), (36.5, 0)],
)
def test_fever_means_at_least_38_0_celsius(temperature_c, expected):
    assert crs(temperature_c).grade == expected


@pytest.mark.parametrize(
    ("hypotension", "hypoxia"),
    [
        ("none", "none"),
        ("no-vasopressor", "none"),
        ("none", "low-flow"),
        ("one-vasopressor", "high-flow"),
        ("multiple-vasopressors", "positive-pressure"),
    ],
)
def test_without_fever_there_is_no_crs_whatever_the_hypotension_or_hypoxia(hypotension, hypoxia):
    grade = crs(NO_FEVER_C, hypotension=hypotension, hypoxia=hypoxia)
    assert grade == Grade(scale="ASTCT-CRS", grade=0, determined_by=("fever",))


@pytest.mark.parametrize(
    ("hypotension", "hypoxia", "expected"),
    [
        ("none", "none", 1),
        ("no-vasopressor", "none", 2),
        ("none", "low-flow", 2),
        ("one-vasopressor", "none", 3),
        ("none", "high-flow", 3),
        ("multiple-vasopressors", "none", 4),
        ("none", "positive-pressure", 4),
        ("no-vasopressor", "positive-pressure", 4),
    ],
)
def test_fever_masked_by_tocilizumab_or_antipyretics_is_not_required_to_grade_crs(
    hypotension, hypoxia, expected
):
    grade = crs(NO_FEVER_C, fever_masked=True, hypotension=hypotension, hypoxia=hypoxia)
    assert grade.grade == expected


@pytest.mark.parametrize(
    ("temperature_c", "fever_masked", "hypotension", "hypoxia"),
    [
        (FEVER_C, False, "none", "none"),
        (FEVER_C, False, "multiple-vasopressors", "positive-pressure"),
        (NO_FEVER_C, True, "one-vasopressor", "none"),
        # Project default: a death attributed to CRS is grade 5 even if the last temperature
        # recorded was below 38.0 C; the attribution says CRS was present.
        (NO_FEVER_C, False, "none", "none"),
    ],
)
def test_death_due_to_crs_is_grade_5(temperature_c, fever_masked, hypotension, hypoxia):
    grade = crs(
        temperature_c,
        fever_masked=fever_masked,
        hypotension=hypotension,
        hypoxia=hypoxia,
        death=True,
    )
    assert grade == Grade(scale="ASTCT-CRS", grade=5, determined_by=("death",))


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature_c": math.nan},
        {"temperature_c": math.inf},
        {"temperature_c": 24.9},
        {"temperature_c": 45.1},
        {"temperature_c": FEVER_C, "hypotension": "two-vasopressors"},
        {"temperature_c": FEVER_C, "hypoxia": "room-air"},
        {"temperature_c": FEVER_C, "grade": 3},
        {},
    ],
    ids=["nan", "inf", "below-25", "above-45", "hypotension", "hypoxia", "extra", "missing"],
)
def test_an_implausible_or_unknown_crs_observation_is_refused(fields):
    with pytest.raises(ValidationError):
        CrsObservation(**fields)


def test_a_crs_observation_cannot_be_changed_once_recorded():
    observation = CrsObservation(temperature_c=FEVER_C)
    with pytest.raises(ValidationError):
        observation.hypoxia = "high-flow"


# ---------------------------------------------------------------- ICANS


def test_ice_score_10_with_no_other_finding_is_no_icans():
    assert icans(10) == Grade(scale="ASTCT-ICANS", grade=0, determined_by=())


@pytest.mark.parametrize(
    ("ice_score", "expected"),
    [
        (10, 0),
        (9, 1),
        (8, 1),
        (7, 1),
        (6, 2),
        (5, 2),
        (4, 2),
        (3, 2),
        (2, 3),
        (1, 3),
        (0, 3),  # awake but unable to perform the ICE assessment (e.g. global aphasia)
    ],
)
def test_icans_graded_by_ice_score_alone(ice_score, expected):
    grade = icans(ice_score)
    assert grade.grade == expected
    assert grade.determined_by == (("ice_score",) if expected else ())


@pytest.mark.parametrize(
    ("consciousness", "expected"),
    [("normal", 0), ("spontaneous", 1), ("voice", 2), ("touch", 3), ("unrousable", 4)],
)
def test_icans_graded_by_depressed_consciousness_alone(consciousness, expected):
    grade = icans(10, consciousness=consciousness)
    assert grade.grade == expected
    assert grade.determined_by == (("consciousness",) if expected else ())


def test_ice_score_0_because_the_patient_cannot_be_roused_is_grade_4():
    grade = icans(0, consciousness="unrousable")
    assert grade == Grade(scale="ASTCT-ICANS", grade=4, determined_by=("consciousness",))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("seizure", "none", 0),
        ("seizure", "resolving", 3),  # clinical, resolving rapidly, or EEG, with intervention
        ("seizure", "prolonged", 4),  # > 5 min, or repeated without return to baseline
        ("motor", "none", 0),
        ("motor", "deep-focal-weakness", 4),  # hemiparesis, paraparesis
        ("icp", "none", 0),
        ("icp", "focal-edema", 3),
        ("icp", "diffuse-edema", 4),  # or posturing, CN VI palsy, papilloedema, Cushing's triad
    ],
)
def test_icans_graded_by_seizure_motor_or_intracranial_pressure_alone(field, value, expected):
    grade = icans(10, **{field: value})
    assert grade.grade == expected
    assert grade.determined_by == ((field,) if expected else ())


@pytest.mark.parametrize(
    ("observation", "expected", "determined_by"),
    [
        ({"ice_score": 8, "consciousness": "voice"}, 2, ("consciousness",)),
        ({"ice_score": 4, "consciousness": "spontaneous"}, 2, ("ice_score",)),
        ({"ice_score": 5, "seizure": "resolving"}, 3, ("seizure",)),
        ({"ice_score": 1, "icp": "focal-edema"}, 3, ("ice_score", "icp")),
        ({"ice_score": 9, "icp": "diffuse-edema"}, 4, ("icp",)),
        ({"ice_score": 6, "motor": "deep-focal-weakness"}, 4, ("motor",)),
        ({"ice_score": 2, "seizure": "prolonged", "consciousness": "touch"}, 4, ("seizure",)),
        (
            {
                "ice_score": 2,
                "consciousness": "touch",
                "seizure": "resolving",
                "icp": "focal-edema",
            },
            3,
            ("ice_score", "consciousness", "seizure", "icp"),
        ),
        (
            {
                "ice_score": 0,
                "consciousness": "unrousable",
                "seizure": "prolonged",
                "motor": "deep-focal-weakness",
                "icp": "diffuse-edema",
            },
            4,
            ("consciousness", "seizure", "motor", "icp"),
        ),
    ],
)
def test_the_most_severe_domain_sets_the_icans_grade(observation, expected, determined_by):
    assert grade_icans(IcansObservation(**observation)) == Grade(
        scale="ASTCT-ICANS", grade=expected, determined_by=determined_by
    )


@pytest.mark.parametrize(
    "findings",
    [
        {"ice_score": 10},
        {"ice_score": 0, "consciousness": "unrousable", "icp": "diffuse-edema"},
    ],
)
def test_death_due_to_icans_is_grade_5(findings):
    grade = grade_icans(IcansObservation(**findings, death=True))
    assert grade == Grade(scale="ASTCT-ICANS", grade=5, determined_by=("death",))


@pytest.mark.parametrize(
    "fields",
    [
        {"ice_score": 11},
        {"ice_score": -1},
        {"ice_score": 10, "consciousness": "drowsy"},
        {"ice_score": 10, "seizure": "status"},
        {"ice_score": 10, "motor": "tremor"},
        {"ice_score": 10, "icp": "papilledema"},
        {"ice_score": 10, "cytokines": "high"},
        {},
    ],
    ids=["ice-11", "ice-negative", "consciousness", "seizure", "motor", "icp", "extra", "missing"],
)
def test_an_unknown_icans_observation_is_refused(fields):
    with pytest.raises(ValidationError):
        IcansObservation(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"scale": "CTCAE", "grade": 1, "determined_by": ()},
        {"scale": "ASTCT-CRS", "grade": 6, "determined_by": ()},
        {"scale": "ASTCT-CRS", "grade": -1, "determined_by": ()},
    ],
)
def test_a_grade_is_on_an_astct_scale_from_0_to_5(fields):
    with pytest.raises(ValidationError):
        Grade(**fields)
