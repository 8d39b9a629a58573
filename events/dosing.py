"""Dosing: conditioning, the bedside chain-of-identity check, the infusion.

The classes in the "contract" section are read by other contexts (safety follows this topic):
keep their names and fields.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from events.enrollment import CohortId, SubjectId
from events.manufacturing import CoiId, LotId
from events.registry import EventPayload, event_type, upcaster

CONTEXT = "dosing"


# ---------------------------------------------------------------- contract (read by safety)


@event_type("InfusionRecorded", version=2, context=CONTEXT)
class InfusionRecorded(EventPayload):
    """Day 0: the product was given. ``infused_at`` (also the envelope's ``occurred_at``) opens
    the subject's DLT window; it is in the payload because deciders that follow this topic
    (safety) fold payloads only.

    ``received_cells_per_kg`` is the dose the subject actually received (``cells_infused`` /
    ``weight_kg``). ``counted_dose_level`` is the dose level the subject counts at for dose
    escalation: the cohort's ``dose_level`` when the dose was within the trial's tolerance;
    after an exceptional release of a lot whose cells fell short, the highest configured level
    (of the cohort's route) whose cells/kg is at most the received dose, or null when the dose
    is below the lowest level (docs/decisions.md, decision 27). Version 2 added both;
    a version 1 infusion was always within tolerance and is upcast to count at its cohort's
    level."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "MSK-0007",
                    "lot_id": "LOT-0007-A",
                    "cohort_id": "DL1-IP",
                    "dose_level": "DL1",
                    "target_cells_per_kg": 1e6,
                    "weight_kg": 70.0,
                    "cells_infused": 7.1e7,
                    "route": "intraperitoneal",
                    "infused_at": "2026-03-02T10:30:00Z",
                    "received_cells_per_kg": 1.0142857e6,
                    "counted_dose_level": "DL1",
                }
            ]
        }
    )
    subject_id: SubjectId
    lot_id: LotId
    cohort_id: CohortId
    dose_level: str = Field(min_length=1, max_length=16)
    target_cells_per_kg: float = Field(gt=0, allow_inf_nan=False)
    weight_kg: float = Field(gt=0, le=400, allow_inf_nan=False)
    cells_infused: float = Field(gt=0, allow_inf_nan=False)
    route: str
    infused_at: AwareDatetime
    received_cells_per_kg: float = Field(gt=0, allow_inf_nan=False)
    counted_dose_level: str | None = Field(min_length=1, max_length=16)

    @model_validator(mode="before")
    @classmethod
    def _within_tolerance_unless_said(cls, data: Any) -> Any:
        """Written without the two version 2 fields (as every version 1 infusion was), an
        infusion is one within tolerance: it counts at its cohort's level."""
        if isinstance(data, dict):
            return _counted_at_cohort_level(data)
        return data


def _counted_at_cohort_level(payload: dict[str, Any]) -> dict[str, Any]:
    filled = dict(payload)
    if "received_cells_per_kg" not in filled:
        # Where this fails, the fields' own validation names what is wrong.
        with suppress(KeyError, TypeError, ZeroDivisionError):
            filled["received_cells_per_kg"] = filled["cells_infused"] / filled["weight_kg"]
    if "counted_dose_level" not in filled and "dose_level" in filled:
        filled["counted_dose_level"] = filled["dose_level"]
    return filled


@upcaster("InfusionRecorded", from_version=1)
def _infusion_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Version 1 refused every dose outside the tolerance: each counts at its cohort's level.
    return _counted_at_cohort_level(payload)


# ---------------------------------------------------------------- dosing's own facts


@event_type("ConditioningDayRecorded", version=2, context=CONTEXT)
class ConditioningDayRecorded(EventPayload):
    """One day of lymphodepleting conditioning was given (day 1 to the trial's configured count),
    for the product ``lot_id`` whose availability was confirmed before day 1. Height and weight
    are the measurements the body-surface-area doses were computed from. ``given_at`` (also the
    envelope's ``occurred_at``) is in the payload because the dosing decider folds payloads only
    and keeps the days, and the infusion after them, in time order. Version 2 added
    ``creatinine_clearance_ml_per_min``, the day's clearance when it was measured, from which a
    renal reduction of fludarabine was expected (null otherwise, as in every version 1 day)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "MSK-0007",
                    "lot_id": "LOT-0007-A",
                    "day": 1,
                    "height_cm": 180.0,
                    "weight_kg": 80.0,
                    "fludarabine_mg": 60.0,
                    "cyclophosphamide_mg": 600.0,
                    "given_at": "2026-02-25T09:00:00Z",
                }
            ]
        }
    )
    subject_id: SubjectId
    lot_id: LotId
    day: int = Field(ge=1, le=30)
    height_cm: float = Field(gt=0, le=272, allow_inf_nan=False)
    weight_kg: float = Field(gt=0, le=400, allow_inf_nan=False)
    fludarabine_mg: float = Field(gt=0, allow_inf_nan=False)
    cyclophosphamide_mg: float = Field(gt=0, allow_inf_nan=False)
    given_at: AwareDatetime
    creatinine_clearance_ml_per_min: float | None = Field(
        default=None, gt=0, le=300, allow_inf_nan=False
    )


@upcaster("ConditioningDayRecorded", from_version=1)
def _conditioning_day_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Version 1 days carried no creatinine clearance: none was measured for the dose.
    return {**payload, "creatinine_clearance_ml_per_min": None}


@event_type("BedsideCoiVerified", version=1, context=CONTEXT)
class BedsideCoiVerified(EventPayload):
    """One person at the bedside presented the subject id, the chain-of-identity id and the lot
    id, and all three matched the released lot. Infusion needs two such checks by two different
    people; ``verified_by`` is the user id of the person (staff, not the subject), ``verified_at``
    the time of the check (also the envelope's ``occurred_at``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "MSK-0007",
                    "lot_id": "LOT-0007-A",
                    "coi_id": "COI-MSK-0007-01",
                    "verified_by": "nurse-lee",
                    "verified_at": "2026-03-02T10:05:00Z",
                }
            ]
        }
    )
    subject_id: SubjectId
    lot_id: LotId
    coi_id: CoiId
    verified_by: str = Field(min_length=1, max_length=128)
    verified_at: AwareDatetime


@event_type("BedsideIdentityMismatchRecorded", version=1, context=CONTEXT)
class BedsideIdentityMismatchRecorded(EventPayload):
    """A deviation: at the bedside, a person presented a subject id or a chain-of-identity id
    that did not match lot ``lot_id``'s chain of identity, and the product was not given (the
    check was refused with ``bedside-coi-mismatch``). A near miss on patient identity, kept as a
    fact of the lot's subject (``subject_id``, the subject the lot was made for). The presented
    values are kept as read; the lot's own ids are not repeated. ``mismatched`` names the
    fields that differed; ``detected_by`` is the person's user id (staff), ``detected_at`` the
    time of the check (also the envelope's ``occurred_at``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "MSK-0007",
                    "lot_id": "LOT-0007-A",
                    "presented_subject_id": "MSK-0008",
                    "presented_coi_id": "COI-MSK-0007-01",
                    "mismatched": ["subject_id"],
                    "detected_by": "nurse-lee",
                    "detected_at": "2026-03-02T10:05:00Z",
                }
            ]
        }
    )
    subject_id: SubjectId
    lot_id: LotId
    presented_subject_id: SubjectId
    presented_coi_id: str = Field(min_length=1, max_length=64)
    mismatched: tuple[Literal["subject_id", "coi_id"], ...] = Field(min_length=1)
    detected_by: str = Field(min_length=1, max_length=128)
    detected_at: AwareDatetime
