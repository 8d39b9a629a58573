"""Enrollment: cohorts opened by the dose-escalation review, subjects registered and enrolled."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from events.registry import EventPayload, event_type

CONTEXT = "enrollment"

SubjectId = Annotated[
    str,
    Field(
        pattern=r"^[A-Z0-9]{2,10}-[0-9]{3,6}$",
        description="Pseudonymous subject code such as 'MSK-0007'; never a name or record number",
    ),
]
CohortId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Route = Literal["intraperitoneal", "intravenous"]


@event_type("CohortOpened", version=1, context=CONTEXT)
class CohortOpened(EventPayload):
    cohort_id: CohortId
    dose_level: str = Field(min_length=1, max_length=16)
    dose_cells_per_kg: float = Field(gt=0, allow_inf_nan=False)
    route: Route
    capacity: int = Field(ge=1, le=18)


@event_type("SubjectRegistered", version=1, context=CONTEXT)
class SubjectRegistered(EventPayload):
    subject_id: SubjectId
    site_id: str = Field(min_length=1, max_length=32)


@event_type("SubjectEnrolled", version=1, context=CONTEXT)
class SubjectEnrolled(EventPayload):
    subject_id: SubjectId
    cohort_id: CohortId
    slot: int = Field(ge=1)


@event_type("SubjectWaitlisted", version=1, context=CONTEXT)
class SubjectWaitlisted(EventPayload):
    subject_id: SubjectId
    cohort_id: CohortId
    position: int = Field(ge=1)


# ---------------------------------------------------------------- contract (read by other contexts)


@event_type("EligibilityReconfirmed", version=1, context=CONTEXT)
class EligibilityReconfirmed(EventPayload):
    """After successful manufacturing, before conditioning: the subject is still eligible."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"subject_id": "MSK-0007", "lot_id": "LOT-0007-A"}]}
    )
    subject_id: SubjectId
    lot_id: str = Field(pattern=r"^LOT-[A-Z0-9-]{3,32}$")


@event_type("SubjectWithdrawn", version=1, context=CONTEXT)
class SubjectWithdrawn(EventPayload):
    """The subject left the study; the reason is also the envelope's reason."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"subject_id": "MSK-0007", "reason_code": "consent-withdrawn"}]
        }
    )
    subject_id: SubjectId
    reason_code: str = Field(min_length=1, max_length=64)
