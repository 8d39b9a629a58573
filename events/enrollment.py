"""Enrollment: pre-screening, consent, eligibility, cohorts opened by the dose-escalation review,
subjects enrolled into slots or a waiting list, withdrawals and the re-confirmation of
eligibility after manufacturing."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field

from events.envelope import Frozen
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
RecommendationId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
        description="The dose-escalation recommendation the review's decision followed",
    ),
]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
ScreenFailureCode = Literal[
    "msln-below-threshold",
    "criteria-not-met",
    "consent-declined",
    "subject-decision",
    "investigator-decision",
    "death",
    "lost-to-follow-up",
    "other",
]
Stage = Literal["prescreening", "screening"]


@event_type("CohortOpened", version=1, context=CONTEXT)
class CohortOpened(EventPayload):
    """The dose-escalation review opened a cohort at a dose level of the trial file.
    ``recommendation_id`` is the recommendation it followed; ``departure_reason`` why it
    departed from it (both absent only for the first cohort at the design's start level)."""

    cohort_id: CohortId
    dose_level: str = Field(min_length=1, max_length=16)
    dose_cells_per_kg: float = Field(gt=0, allow_inf_nan=False)
    route: Route
    capacity: int = Field(ge=1, le=18)
    recommendation_id: RecommendationId | None = None
    departure_reason: Reason | None = None


@event_type("SubjectRegistered", version=1, context=CONTEXT)
class SubjectRegistered(EventPayload):
    subject_id: SubjectId
    site_id: str = Field(min_length=1, max_length=32)


@event_type("SubjectEnrolled", version=1, context=CONTEXT)
class SubjectEnrolled(EventPayload):
    """The subject took ``slot`` of the cohort. ``passed_over``: subjects who were ahead on the
    waiting list and were skipped, for the reason given in the envelope."""

    subject_id: SubjectId
    cohort_id: CohortId
    slot: int = Field(ge=1)
    passed_over: tuple[SubjectId, ...] = ()


@event_type("SubjectWaitlisted", version=1, context=CONTEXT)
class SubjectWaitlisted(EventPayload):
    """The subject joined the trial-wide waiting list at ``position``; ``cohort_id`` is the
    cohort that had no slot for them (or whose free slot belonged to someone ahead)."""

    subject_id: SubjectId
    cohort_id: CohortId
    position: int = Field(ge=1)


# ---------------------------------------------------------------- screening


@event_type("PrescreeningRecorded", version=1, context=CONTEXT)
class PrescreeningRecorded(EventPayload):
    """Mesothelin immunohistochemistry: the percentage of tumour cells staining positive."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"subject_id": "MSK-0007", "msln_ihc_percent": 60.0}]}
    )
    subject_id: SubjectId
    msln_ihc_percent: float = Field(ge=0, le=100, allow_inf_nan=False)


@event_type("ConsentRecorded", version=1, context=CONTEXT)
class ConsentRecorded(EventPayload):
    """The subject signed the informed consent form ``form_version`` at ``signed_at``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "MSK-0007",
                    "form_version": "ICF-v3.1",
                    "signed_at": "2026-02-02T10:15:00Z",
                }
            ]
        }
    )
    subject_id: SubjectId
    form_version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    signed_at: AwareDatetime


class CriterionResult(Frozen):
    """One eligibility criterion as assessed: what the trial required, what was found."""

    criterion: str = Field(pattern=r"^[a-z0-9][a-z0-9_:-]{0,63}$")
    met: bool
    requirement: str = Field(min_length=1, max_length=200)
    evidence: str = Field(min_length=1, max_length=200)
    value: float | None = Field(default=None, allow_inf_nan=False)


@event_type("EligibilityAssessed", version=1, context=CONTEXT)
class EligibilityAssessed(EventPayload):
    """The investigator's screening assessment, criterion by criterion, with its evidence."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "MSK-0007",
                    "criteria": [
                        {
                            "criterion": "ecog",
                            "met": True,
                            "requirement": "ECOG performance status <= 1",
                            "evidence": "ECOG 1",
                            "value": 1,
                        }
                    ],
                }
            ]
        }
    )
    subject_id: SubjectId
    criteria: tuple[CriterionResult, ...] = Field(min_length=1)


@event_type("SubjectScreenFailed", version=1, context=CONTEXT)
class SubjectScreenFailed(EventPayload):
    """The subject will not be enrolled: ``failed_criteria`` when a criterion was not met,
    empty when the failure was recorded for another reason (given in the envelope)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "MSK-0007",
                    "stage": "prescreening",
                    "reason_code": "msln-below-threshold",
                    "failed_criteria": [
                        {
                            "criterion": "msln-ihc",
                            "met": False,
                            "requirement": "MSLN IHC >= 25% of tumour cells",
                            "evidence": "10% of tumour cells",
                            "value": 10,
                        }
                    ],
                }
            ]
        }
    )
    subject_id: SubjectId
    stage: Stage
    reason_code: ScreenFailureCode
    failed_criteria: tuple[CriterionResult, ...] = ()


# ---------------------------------------------------------------- cohorts and slots


@event_type("CohortExpanded", version=1, context=CONTEXT)
class CohortExpanded(EventPayload):
    """A further review decision added slots to a cohort (3+3: "add 3 more"); a closed cohort
    opens again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cohort_id": "DL1-IP",
                    "additional_slots": 3,
                    "recommendation_id": "REC-DL1-0003",
                    "departure_reason": None,
                }
            ]
        }
    )
    cohort_id: CohortId
    additional_slots: int = Field(ge=1, le=18)
    recommendation_id: RecommendationId | None = None
    departure_reason: Reason | None = None


@event_type("CohortClosed", version=1, context=CONTEXT)
class CohortClosed(EventPayload):
    """The review closed the cohort: no further enrollment into it; its free slots are given up."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"cohort_id": "DL1-IP", "reason": "3 of 3 treated, 0 DLT: escalate"}]
        }
    )
    cohort_id: CohortId
    reason: Reason


@event_type("SlotReleased", version=1, context=CONTEXT)
class SlotReleased(EventPayload):
    """A subject withdrawn before infusion gave their slot back; it may be filled again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"subject_id": "MSK-0007", "cohort_id": "DL1-IP", "slot": 2}]
        }
    )
    subject_id: SubjectId
    cohort_id: CohortId
    slot: int = Field(ge=1)


# ---------------------------------------------------------------- contract (read by other contexts)


@event_type("EligibilityReconfirmed", version=1, context=CONTEXT)
class EligibilityReconfirmed(EventPayload):
    """After successful manufacturing, before conditioning: the subject is still eligible."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"subject_id": "MSK-0007", "lot_id": "LOT-0007-A"}]}
    )
    subject_id: SubjectId
    lot_id: str = Field(pattern=r"^LOT-[A-Z0-9-]{3,32}$")


@event_type("PriorTherapyRecorded", version=1, context=CONTEXT)
class PriorTherapyRecorded(EventPayload):
    """A prior (or bridging) therapy of the subject and the calendar day of its last dose, in the
    trial's time zone: manufacturing and dosing hold the leukapheresis and the infusion to the
    trial file's washout for its class."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "MSK-0007",
                    "therapy_class": "checkpoint-inhibitor",
                    "agent": "nivolumab",
                    "last_dose_on": "2026-01-05",
                }
            ]
        }
    )
    subject_id: SubjectId
    therapy_class: str = Field(pattern=r"^[a-z][a-z0-9-]{0,47}$")
    agent: str | None = Field(default=None, min_length=1, max_length=64)
    last_dose_on: date


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
