"""Commands of the safety service: what a site, an investigator or a safety officer asks for.

Times and ids come with the command (``occurred_at`` is when it happened at the site); the
server injects nothing here but ``occurred_at`` when the body leaves it out.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from events.enrollment import SubjectId
from events.manufacturing import LotId
from events.safety import (
    AeId,
    Attribution,
    CtcaeGrade,
    ImprovementOutcome,
    LateOosAssessment,
    ReportName,
    ReviewId,
    SeriousnessCriterion,
    Verdict,
)
from services.fields import FreeText, Reason, Reference
from services.safety.grading import CrsObservation, IcansObservation

CtcaeTerm = Annotated[str, FreeText(2, 120)]
"""A CTCAE v5 term as the site wrote it (the event type ``Term`` reads the log as it is)."""


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime


def _distinct(values: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(values)) != len(values):
        raise ValueError(f"seriousness criteria repeat: {list(values)}")
    return values


Criteria = Annotated[tuple[SeriousnessCriterion, ...], AfterValidator(_distinct)]


class ReportAdverseEvent(Command):
    """An AE as first known: CTCAE v5 term and grade, onset, seriousness (21 CFR 312.32 / ICH
    E2A; empty = not serious), attribution, expectedness, and when the sponsor first received
    the information (day 0 of the 7-day clock)."""

    ae_id: AeId
    subject_id: SubjectId
    term: CtcaeTerm
    grade: CtcaeGrade
    onset_at: AwareDatetime
    serious_criteria: Criteria = ()
    attribution: Attribution
    expected: bool
    sponsor_received_at: AwareDatetime
    special_interest: bool = Field(
        default=False,
        description="Track as an AE of special interest (serositis); serositis terms always are.",
    )
    haematological: bool = False
    conditioning_lab_effect: bool = Field(
        default=False, description="An expected laboratory effect of lymphodepleting conditioning"
    )


class GradeCrs(Command):
    """A CRS observation at ``occurred_at``, graded by the ASTCT consensus."""

    ae_id: AeId
    observation: CrsObservation


class GradeIcans(Command):
    """An ICANS assessment at ``occurred_at``, graded by the ASTCT consensus."""

    ae_id: AeId
    observation: IcansObservation


class RegradeAdverseEvent(Command):
    """A correction or a change of an AE's assessment, with its reason; omitted values stay.
    ``effective_at``: when the new values began (default: the onset, i.e. a correction)."""

    ae_id: AeId
    reason: Reason
    grade: CtcaeGrade | None = None
    serious_criteria: Criteria | None = None
    attribution: Attribution | None = None
    expected: bool | None = None
    effective_at: AwareDatetime | None = None


class RecordAeResolution(Command):
    """The AE improved to grade <= 2 or resolved at ``improved_at`` (default ``occurred_at``)."""

    ae_id: AeId
    outcome: ImprovementOutcome
    improved_at: AwareDatetime | None = None


class AdjudicateDlt(Command):
    """The investigator's verdict; ``reason`` is required when it departs from the rule's."""

    ae_id: AeId
    verdict: Verdict
    reason: Reason | None = None


class RecordDltEvaluation(Command):
    """The investigator closes the subject's DLT evaluation at ``occurred_at``."""

    subject_id: SubjectId


class DetermineExpeditedReport(Command):
    """The sponsor's determination, at ``occurred_at``, that the case qualifies for expedited
    reporting; with ``follow_up_information_received_at``, that new information received then
    needs a follow-up report."""

    ae_id: AeId
    follow_up_information_received_at: AwareDatetime | None = None


class SubmitExpeditedReport(Command):
    ae_id: AeId
    report: ReportName
    reference: Reference = Field(description="The report's number")


class RecordSafetyReview(Command):
    """A documented safety review of ``reviewed_ae_ids``; ``allows_resumption`` resumes a paused
    enrollment when every event that paused it was reviewed."""

    review_id: ReviewId
    reviewed_ae_ids: tuple[AeId, ...] = Field(min_length=1)
    allows_resumption: bool
    summary: Reason


class RecordLateOosFollowUp(Command):
    """The investigator records being notified that an infused lot turned out of specification
    after its release, and the safety assessment of the subject: no adverse event follows, or
    the AEs (already reported) that do."""

    lot_id: LotId
    investigator_notified_at: AwareDatetime
    assessment: LateOosAssessment
    ae_ids: tuple[AeId, ...] = ()
    summary: Reason


COMMANDS: dict[str, type[Command]] = {
    "report-adverse-event": ReportAdverseEvent,
    "grade-crs": GradeCrs,
    "grade-icans": GradeIcans,
    "regrade-adverse-event": RegradeAdverseEvent,
    "record-ae-resolution": RecordAeResolution,
    "adjudicate-dlt": AdjudicateDlt,
    "determine-expedited-report": DetermineExpeditedReport,
    "submit-expedited-report": SubmitExpeditedReport,
    "record-safety-review": RecordSafetyReview,
    "record-dlt-evaluation": RecordDltEvaluation,
    "record-late-oos-follow-up": RecordLateOosFollowUp,
}
