"""The infused dose and the dosing commands and routes.

Sources: DOMAIN.md section 1: the dose a patient receives is cells/kg x body weight at the time
of dosing; the product's actual cell count is recorded and checked against the target within a
tolerance (``infused_dose_tolerance_percent``: 20% in the trial file, the limit itself inside).
Command names: the trial file's ``permissions``.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.dosing.decider import COMMANDS, RecordInfusion, make_decider
from services.dosing.routes import SERVICE
from services.errors import RuleViolated

from .test_dosing_facts import (
    DECIDER,
    LOT,
    READY_TO_INFUSE,
    SUBJECT,
    TRIAL,
    cohort_opened,
    given,
    infuse,
    refused,
)

# ---------------------------------------------------------------- the dose

# (case, cohort cells/kg, weight kg, cells infused, accepted); tolerance 20% (trial file).
DOSES = [
    ("exactly the target, DL1 70 kg", 1e6, 70.0, 7e7, True),
    ("at the upper limit +20%", 1e6, 70.0, 8.4e7, True),
    ("at the lower limit -20%", 1e6, 70.0, 5.6e7, True),
    ("just inside the upper limit", 1e6, 70.0, 8.39e7, True),
    ("just inside the lower limit", 1e6, 70.0, 5.61e7, True),
    ("just outside the upper limit", 1e6, 70.0, 8.41e7, False),
    ("just outside the lower limit", 1e6, 70.0, 5.59e7, False),
    ("the dose of a 100 kg person given at 70 kg", 1e6, 70.0, 1e8, False),
    ("DL4 3e7/kg at 62.5 kg: 1.875e9, upper limit 2.25e9", 3e7, 62.5, 2.25e9, True),
    ("DL4 3e7/kg at 62.5 kg, just over", 3e7, 62.5, 2.251e9, False),
    ("DL-1 3e5/kg at 80 kg: 2.4e7, lower limit 1.92e7", 3e5, 80.0, 1.92e7, True),
    ("DL-1 3e5/kg at 80 kg, just under", 3e5, 80.0, 1.919e7, False),
]


@pytest.mark.parametrize(
    ("cells_per_kg", "weight_kg", "cells_infused", "accepted"),
    [case[1:] for case in DOSES],
    ids=[case[0] for case in DOSES],
)
def test_the_cells_infused_are_within_tolerance_of_cells_per_kg_times_weight(
    cells_per_kg, weight_kg, cells_infused, accepted
):
    facts = [
        cohort_opened(cells_per_kg=cells_per_kg) if f == cohort_opened() else f
        for f in READY_TO_INFUSE
    ]
    state = given(*facts)
    command = infuse(weight_kg=weight_kg, cells_infused=cells_infused)

    if accepted:
        (event,) = DECIDER.decide(command, state)
        assert event.payload.cells_infused == cells_infused
        assert event.payload.target_cells_per_kg == cells_per_kg
        assert event.payload.weight_kg == weight_kg
    else:
        error = refused(command, state)
        assert error.rule == "infused-dose-within-tolerance"
        assert error.details["target_cells"] == pytest.approx(cells_per_kg * weight_kg)
        assert error.details["tolerance_percent"] == 20


def test_a_refused_dose_names_the_target_and_the_deviation():
    error = refused(infuse(cells_infused=8.41e7), given(*READY_TO_INFUSE))

    assert error.message.startswith(
        "8.41e+07 CAR T cells differ by 20.1% from the target 7e+07 "
        "(1e+06 cells/kg x 70 kg, cohort DL1-IP); at most 20% allowed"
    )


def test_the_tolerance_comes_from_the_trial_file():
    # 10% of 7 x 10^7 is 7 x 10^6: 7.7 x 10^7 is at the limit, 7.71 x 10^7 beyond it
    strict = make_decider(TRIAL.model_copy(update={"infused_dose_tolerance_percent": 10}))
    state = given(*READY_TO_INFUSE)

    (event,) = strict.decide(infuse(cells_infused=7.7e7), state)
    assert event.payload.cells_infused == 7.7e7
    with pytest.raises(RuleViolated, match="at most 10% allowed"):
        strict.decide(infuse(cells_infused=7.71e7), state)


# ---------------------------------------------------------------- commands and routes

VALID = {
    "subject_id": SUBJECT,
    "lot_id": LOT,
    "weight_kg": 70.0,
    "cells_infused": 7e7,
    "route": "intraperitoneal",
    "occurred_at": "2025-04-07T10:00:00Z",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weight_kg", 0),
        ("weight_kg", 401),
        ("weight_kg", float("nan")),
        ("cells_infused", 0),
        ("cells_infused", "inf"),
        ("route", "oral"),
        ("subject_id", "John Smith"),
        ("lot_id", "0007-A"),
        ("occurred_at", "2025-04-07T10:00:00"),
        ("cohort_id", "DL1-IP"),
    ],
)
def test_an_invalid_infusion_command_is_refused_before_any_rule(field, value):
    with pytest.raises(ValidationError, match=field):
        RecordInfusion.model_validate({**VALID, field: value})


def test_the_commands_are_the_ones_the_trial_file_permits():
    assert set(COMMANDS) == {
        "record-conditioning-day",
        "verify-bedside-coi",
        "record-bedside-identity-mismatch",
        "record-infusion",
    }
    assert {route.command: route.model for route in SERVICE.routes} == COMMANDS
    for name in COMMANDS:
        assert TRIAL.roles_for(name), f"the trial file permits nobody to {name}"
    assert TRIAL.roles_for("record-infusion") == {"investigator"}


def test_the_dosing_service_follows_enrollment_manufacturing_and_safety():
    assert SERVICE.context == "dosing"
    assert SERVICE.upstream == ("enrollment", "manufacturing", "safety")
    assert all(route.path.startswith("/dosing/") for route in SERVICE.routes)
