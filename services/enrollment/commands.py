"""What may be asked of the enrollment service: one command model per request, validated at
the edge (shape and units only; every rule that needs the trial file or the state is in the
decider)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from events.enrollment import (
    CohortId,
    RecommendationId,
    Route,
    ScreenFailureCode,
    SubjectId,
)
from events.manufacturing import LotId
from services.fields import FreeText, Reason, SiteId

WithdrawalCode = Literal[
    "consent-withdrawn",
    "adverse-event",
    "disease-progression",
    "manufacturing-failure",
    "no-longer-eligible",
    "investigator-decision",
    "lost-to-follow-up",
    "death",
    "other",
]
FiniteValue = Annotated[float, Field(allow_inf_nan=False)]
LabName = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]
AgentName = Annotated[str, FreeText(1, 64)]
"""The drug's generic name, e.g. 'nivolumab'."""


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime


class _NeedsTextForOther(Command):
    """A reason code of ``other`` says nothing by itself: the free-text reason is required."""

    @model_validator(mode="after")
    def _other_needs_a_reason(self) -> Self:
        if getattr(self, "reason_code", None) == "other" and not getattr(self, "reason", None):
            raise ValueError("reason is required when reason_code is 'other'")
        return self


# ---------------------------------------------------------------- subjects and screening


class RegisterSubject(Command):
    subject_id: SubjectId
    site_id: SiteId


class RecordPrescreening(Command):
    subject_id: SubjectId
    msln_ihc_percent: float = Field(ge=0, le=100, allow_inf_nan=False)


class RecordConsent(Command):
    subject_id: SubjectId
    form_version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    signed_at: AwareDatetime

    @model_validator(mode="after")
    def _signed_before_it_is_recorded(self) -> Self:
        if self.signed_at > self.occurred_at:
            raise ValueError("signed_at is after occurred_at: a consent is recorded once signed")
        return self


class AssessEligibility(Command):
    """The screening evidence, one field per criterion (DOMAIN.md section 1)."""

    subject_id: SubjectId
    peritoneal_carcinomatosis_by: tuple[Literal["imaging", "cytology"], ...] = Field(
        max_length=2, description="how peritoneal carcinomatosis was shown; empty: not shown"
    )
    prior_lines: int = Field(ge=0, le=30, description="prior lines for advanced disease")
    recist_lesion: Literal["measurable", "evaluable", "none"]
    age_years: int = Field(ge=0, le=130)
    ecog: int = Field(ge=0, le=5)
    labs: dict[LabName, FiniteValue] = Field(description="lab name (as in the trial file) -> value")
    active_infection: bool
    screening_started_at: AwareDatetime = Field(
        description="when the first screening procedure was done: consent must precede it"
    )

    @model_validator(mode="after")
    def _screening_before_its_assessment(self) -> Self:
        if self.screening_started_at > self.occurred_at:
            raise ValueError("screening_started_at is after occurred_at")
        return self


class RecordPriorTherapy(Command):
    """A prior (or bridging) therapy and the calendar day of its last dose (in the trial's time
    zone), for the washout before leukapheresis and infusion (``services.enrollment.washout``)."""

    subject_id: SubjectId
    therapy_class: str = Field(
        pattern=r"^[a-z][a-z0-9-]{0,47}$", description="a class of the trial file's washout"
    )
    agent: AgentName | None = None
    last_dose_on: date


class RecordScreenFailure(_NeedsTextForOther):
    subject_id: SubjectId
    reason_code: ScreenFailureCode
    reason: Reason | None = None


# ---------------------------------------------------------------- cohorts


class OpenCohort(Command):
    """The dose-escalation review's decision. Dose and route come from the trial file: when
    the body gives them they must match; capacity defaults to the design's cohort size."""

    cohort_id: CohortId
    dose_level: str = Field(min_length=1, max_length=16)
    dose_cells_per_kg: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    route: Route | None = None
    capacity: int | None = Field(default=None, ge=1, le=18)
    recommendation_id: RecommendationId | None = None
    reason: Reason | None = Field(
        default=None, description="why the decision departs from the recommendation"
    )


class ExpandCohort(Command):
    cohort_id: CohortId
    additional_slots: int = Field(ge=1, le=18)
    recommendation_id: RecommendationId | None = None
    reason: Reason | None = None


class CloseCohort(Command):
    cohort_id: CohortId
    reason: Reason


# ---------------------------------------------------------------- slots


class EnrollSubject(Command):
    subject_id: SubjectId
    cohort_id: CohortId
    waitlist_if_full: bool = False
    reason: Reason | None = Field(
        default=None, description="why the slot goes to this subject and not the first in line"
    )


class WithdrawSubject(_NeedsTextForOther):
    subject_id: SubjectId
    reason_code: WithdrawalCode
    reason: Reason | None = None


class ReconfirmEligibility(Command):
    subject_id: SubjectId
    lot_id: LotId


COMMANDS: dict[str, type[Command]] = {
    "register-subject": RegisterSubject,
    "record-prescreening": RecordPrescreening,
    "record-consent": RecordConsent,
    "assess-eligibility": AssessEligibility,
    "record-screen-failure": RecordScreenFailure,
    "record-prior-therapy": RecordPriorTherapy,
    "open-cohort": OpenCohort,
    "close-cohort": CloseCohort,
    "enroll-subject": EnrollSubject,
    "withdraw-subject": WithdrawSubject,
    "reconfirm-eligibility": ReconfirmEligibility,
}
"""Command name in the trial file's ``permissions`` -> its model. ``ExpandCohort`` is issued
under ``open-cohort``'s permission (the trial file has no ``expand-cohort``)."""
