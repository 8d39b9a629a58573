"""Dosing: conditioning, the bedside chain-of-identity check, the infusion.

The classes in the "contract" section are read by other contexts (safety follows this topic):
keep their names and fields.
"""

from __future__ import annotations

from pydantic import AwareDatetime, ConfigDict, Field

from events.enrollment import CohortId, SubjectId
from events.manufacturing import LotId
from events.registry import EventPayload, event_type

CONTEXT = "dosing"


# ---------------------------------------------------------------- contract (read by safety)


@event_type("InfusionRecorded", version=1, context=CONTEXT)
class InfusionRecorded(EventPayload):
    """Day 0: the product was given. ``infused_at`` (also the envelope's ``occurred_at``) opens
    the subject's DLT window; it is in the payload because deciders that follow this topic
    (safety) fold payloads only."""

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
