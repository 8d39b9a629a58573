"""Safety: adverse events, grading, DLT adjudication, expedited reports, the stopping rule.

The classes in the "contract" section are read by other contexts (enrollment follows this
topic to refuse enrollment while paused): keep their names and fields.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from events.enrollment import SubjectId
from events.registry import EventPayload, event_type

CONTEXT = "safety"


# ---------------------------------------------------------------- contract (read by enrollment)


@event_type("EnrollmentPaused", version=1, context=CONTEXT)
class EnrollmentPaused(EventPayload):
    """The stopping rule fired (default: a grade 5 event at least possibly related)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ae_id": "AE-0007-01", "subject_id": "MSK-0007", "rule": "grade5-related"}
            ]
        }
    )
    ae_id: str = Field(min_length=1)
    subject_id: SubjectId
    rule: str = Field(min_length=1)


@event_type("EnrollmentResumed", version=1, context=CONTEXT)
class EnrollmentResumed(EventPayload):
    """A documented safety review allowed enrollment to go on."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"review_id": "SR-2026-01", "summary": "reviewed"}]}
    )
    review_id: str = Field(min_length=1)
    summary: str = Field(min_length=1)
