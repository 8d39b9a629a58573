"""Manufacturing and chain of identity: apheresis, custody, the lot's states, QC and release.

The classes in the "contract" section are read by other contexts (dosing follows this topic):
keep their names and fields.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from events.enrollment import SubjectId
from events.registry import EventPayload, event_type

CONTEXT = "manufacturing"

LotId = Annotated[str, Field(pattern=r"^LOT-[A-Z0-9-]{3,32}$")]
CoiId = Annotated[str, Field(min_length=6, max_length=64, description="chain-of-identity id")]


# ---------------------------------------------------------------- contract (read by dosing)


@event_type("LotReleased", version=1, context=CONTEXT)
class LotReleased(EventPayload):
    """QC met the specifications; ``conditional`` while sterility or mycoplasma is "negative to
    date"."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "LOT-0007-A",
                    "subject_id": "MSK-0007",
                    "coi_id": "COI-MSK-0007-01",
                    "total_car_t_cells": 2.1e9,
                    "conditional": True,
                }
            ]
        }
    )
    lot_id: LotId
    subject_id: SubjectId
    coi_id: CoiId
    total_car_t_cells: float = Field(gt=0, allow_inf_nan=False)
    conditional: bool


@event_type("LotOutOfSpecification", version=1, context=CONTEXT)
class LotOutOfSpecification(EventPayload):
    """A QC result failed its specification; ``after_release`` when a pending test turned late."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "LOT-0007-A",
                    "subject_id": "MSK-0007",
                    "failed_tests": ["viability"],
                    "after_release": False,
                }
            ]
        }
    )
    lot_id: LotId
    subject_id: SubjectId
    failed_tests: tuple[str, ...] = Field(min_length=1)
    after_release: bool


@event_type("ExceptionalReleaseApproved", version=1, context=CONTEXT)
class ExceptionalReleaseApproved(EventPayload):
    """An out-of-specification lot may be infused: both the investigator and the sponsor decided."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "LOT-0007-A",
                    "subject_id": "MSK-0007",
                    "investigator_id": "dr-ortega",
                    "sponsor_id": "sponsor-mm-1",
                }
            ]
        }
    )
    lot_id: LotId
    subject_id: SubjectId
    investigator_id: str = Field(min_length=1)
    sponsor_id: str = Field(min_length=1)


@event_type("LotThawed", version=1, context=CONTEXT)
class LotThawed(EventPayload):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"lot_id": "LOT-0007-A", "subject_id": "MSK-0007"}]}
    )
    lot_id: LotId
    subject_id: SubjectId
