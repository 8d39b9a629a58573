"""The payloads event types had before their current schema version, for their JSON Schemas.

Readers never build these: an old payload is upcast at the edge (events/registry.py) and read
as the current model. But an old version stays on the topic forever, so a downstream team must
be able to have its schema (events/schemas.py exports one per version). Each model here is the
one the type was written with at that version, as it stood in the project's history when the
next version replaced it; the upcaster beside the current model turns it into the next version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import AwareDatetime, ConfigDict, Field

from events.enrollment import CohortId, SubjectId
from events.envelope import Frozen
from events.manufacturing import LotId
from events.safety import (
    AeId,
    Attribution,
    CtcaeGrade,
    SeriousnessCriterion,
    SpecialInterest,
    Term,
)

M = TypeVar("M", bound=type[Frozen])

MODELS: dict[tuple[str, int], type[Frozen]] = {}
"""(event type, schema version) -> the payload model of that version."""


def past(name: str, version: int) -> Callable[[M], M]:
    def register(cls: M) -> M:
        MODELS[(name, version)] = cls
        return cls

    return register


@past("AdverseEventReported", 1)
class AdverseEventReportedV1(Frozen):
    """An adverse event as first reported, before the report named its CTCAE version (every
    version 1 report was graded on CTCAE v5.0; decision 12)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ae_id": "AE-0007-01",
                    "subject_id": "MSK-0007",
                    "term": "Pericarditis",
                    "grade": 3,
                    "onset_at": "2026-03-05T08:00:00Z",
                    "serious_criteria": ["hospitalisation"],
                    "attribution": "probable",
                    "expected": False,
                    "sponsor_received_at": "2026-03-05T15:00:00Z",
                    "special_interest": "serositis",
                    "haematological": False,
                    "conditioning_lab_effect": False,
                }
            ]
        }
    )
    ae_id: AeId
    subject_id: SubjectId
    term: Term
    grade: CtcaeGrade
    onset_at: AwareDatetime
    serious_criteria: tuple[SeriousnessCriterion, ...]
    attribution: Attribution
    expected: bool
    sponsor_received_at: AwareDatetime
    special_interest: SpecialInterest | None
    haematological: bool
    conditioning_lab_effect: bool


@past("InfusionRecorded", 1)
class InfusionRecordedV1(Frozen):
    """Day 0: the product was given, before the record kept the dose received and the level it
    counts at (version 1 refused every dose outside the tolerance; decision 27)."""

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


@past("ConditioningDayRecorded", 1)
class ConditioningDayRecordedV1(Frozen):
    """One day of lymphodepleting conditioning, before a day could carry the creatinine
    clearance its fludarabine dose was reduced for."""

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


@past("LotThawed", 1)
class LotThawedV1(Frozen):
    """The product thawed at the site, before the thaw recorded its time."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"lot_id": "LOT-0007-A", "subject_id": "MSK-0007"}]}
    )
    lot_id: LotId
    subject_id: SubjectId
