"""Safety: adverse events, grading, DLT adjudication, expedited reports, the stopping rule.

The classes in the "contract" section are read by other contexts (enrollment follows this
topic to refuse enrollment while paused): keep their names and fields.

Sources (DOMAIN.md section 3): CTCAE v5 grades 1-5; seriousness by 21 CFR 312.32 / ICH E2A;
attribution unrelated..definite ("suspected adverse reaction" = at least possible); CRS and
ICANS by the ASTCT consensus (Lee et al., BBMT 2019). Times that a rule needs later (onset,
the sponsor's receipt, an improvement, a determination) are in the payloads, because the
decider folds payloads only; the envelope's ``occurred_at`` is when the fact was recorded.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field

from events.enrollment import CohortId, SubjectId
from events.envelope import Frozen
from events.manufacturing import LotId
from events.registry import EventPayload, event_type, upcaster

CONTEXT = "safety"

AeId = Annotated[
    str,
    Field(pattern=r"^AE-[A-Z0-9][A-Z0-9-]{1,31}$", description="Adverse event id, e.g. AE-0007-01"),
]
CtcaeGrade = Annotated[int, Field(ge=1, le=5, description="CTCAE v5: 1 mild .. 5 death")]
AstctGrade = Annotated[int, Field(ge=0, le=5, description="ASTCT: 0 = no CRS / no ICANS")]
Term = Annotated[str, Field(min_length=2, max_length=120, description="CTCAE v5 term")]
Text = Annotated[str, Field(min_length=1, max_length=2000)]

SeriousnessCriterion = Literal[
    "death",
    "life-threatening",
    "hospitalisation",
    "disability",
    "congenital-anomaly",
    "important-medical-event",
]
"""21 CFR 312.32(a) / ICH E2A: an AE is serious when it meets at least one of these:
death; life-threatening; inpatient hospitalisation or its prolongation; persistent or
significant disability; congenital anomaly; an important medical event."""

Attribution = Literal["unrelated", "unlikely", "possible", "probable", "definite"]
ATTRIBUTION_ORDER: tuple[Attribution, ...] = (
    "unrelated",
    "unlikely",
    "possible",
    "probable",
    "definite",
)
SpecialInterest = Literal["serositis"]
Verdict = Literal["dlt", "not-dlt"]
ImprovementOutcome = Literal["grade-2-or-less", "resolved"]
ReportName = Annotated[
    str,
    Field(
        pattern=r"^(7-day|7-day-complete|15-day|follow-up-[1-9][0-9]{0,2})$",
        description="7-day (21 CFR 312.32(c)(2)), 7-day-complete (ICH E2A, 8 more days), "
        "15-day (21 CFR 312.32(c)(1)), follow-up-N (21 CFR 312.32(d))",
    ),
]
ReviewId = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]

STOPPING_RULE_GRADE5_RELATED = "grade5-related"


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


# ---------------------------------------------------------------- adverse events


CTCAE_VERSION = "5.0"
"""The CTCAE version this trial grades with (DOMAIN.md section 3)."""


@event_type("AdverseEventReported", version=2, context=CONTEXT)
class AdverseEventReported(EventPayload):
    """An adverse event as first reported. ``serious_criteria`` is empty for a non-serious AE;
    ``sponsor_received_at`` is the sponsor's initial receipt of the information (day 0 of the
    7-day clock); ``haematological`` and ``conditioning_lab_effect`` (an expected laboratory
    effect of lymphodepletion) take the AE out of the "other grade >= 3" DLT criterion.

    Version 2 names the CTCAE version the grade is on (``ctcae_version``), so that a grade can
    still be read right once a trial moves to a later CTCAE; version 1 events were all graded
    on CTCAE v5.0 and are upcast to say so."""

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
                    "ctcae_version": "5.0",
                }
            ]
        }
    )
    ae_id: AeId
    subject_id: SubjectId
    term: Term
    grade: CtcaeGrade
    ctcae_version: str = Field(pattern=r"^[0-9]+\.[0-9]+$")
    onset_at: AwareDatetime
    serious_criteria: tuple[SeriousnessCriterion, ...]
    attribution: Attribution
    expected: bool
    sponsor_received_at: AwareDatetime
    special_interest: SpecialInterest | None
    haematological: bool
    conditioning_lab_effect: bool


@upcaster("AdverseEventReported", from_version=1)
def _ae_reported_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Every version 1 report predates the field and was graded on CTCAE v5.0.
    return {**payload, "ctcae_version": "5.0"}


class CrsFindings(Frozen):
    """The bedside findings a CRS grade came from (ASTCT 2019), as recorded."""

    temperature_c: float = Field(ge=25.0, le=45.0, allow_inf_nan=False)
    fever_masked: bool
    hypotension: Literal["none", "no-vasopressor", "one-vasopressor", "multiple-vasopressors"]
    hypoxia: Literal["none", "low-flow", "high-flow", "positive-pressure"]
    death: bool


class IcansFindings(Frozen):
    """The ICANS domains an ICANS grade came from (ASTCT 2019, adults), as recorded."""

    ice_score: int = Field(ge=0, le=10)
    consciousness: Literal["normal", "spontaneous", "voice", "touch", "unrousable"]
    seizure: Literal["none", "resolving", "prolonged"]
    motor: Literal["none", "deep-focal-weakness"]
    icp: Literal["none", "focal-edema", "diffuse-edema"]
    death: bool


@event_type("CrsGraded", version=1, context=CONTEXT)
class CrsGraded(EventPayload):
    """A CRS observation and the ASTCT grade it gave (with the domains that set it)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ae_id": "AE-0007-02",
                    "subject_id": "MSK-0007",
                    "observed_at": "2026-03-04T06:00:00Z",
                    "observation": {
                        "temperature_c": 39.1,
                        "fever_masked": False,
                        "hypotension": "one-vasopressor",
                        "hypoxia": "low-flow",
                        "death": False,
                    },
                    "grade": 3,
                    "determined_by": ["hypotension"],
                }
            ]
        }
    )
    ae_id: AeId
    subject_id: SubjectId
    observed_at: AwareDatetime
    observation: CrsFindings
    grade: AstctGrade
    determined_by: tuple[str, ...]


@event_type("IcansGraded", version=1, context=CONTEXT)
class IcansGraded(EventPayload):
    """An ICANS assessment and the ASTCT grade it gave (with the domains that set it)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ae_id": "AE-0007-03",
                    "subject_id": "MSK-0007",
                    "observed_at": "2026-03-06T06:00:00Z",
                    "observation": {
                        "ice_score": 5,
                        "consciousness": "voice",
                        "seizure": "none",
                        "motor": "none",
                        "icp": "none",
                        "death": False,
                    },
                    "grade": 2,
                    "determined_by": ["ice_score", "consciousness"],
                }
            ]
        }
    )
    ae_id: AeId
    subject_id: SubjectId
    observed_at: AwareDatetime
    observation: IcansFindings
    grade: AstctGrade
    determined_by: tuple[str, ...]


class Assessment(Frozen):
    """The assessed values of an AE that a regrade may change."""

    grade: CtcaeGrade
    serious_criteria: tuple[SeriousnessCriterion, ...]
    attribution: Attribution
    expected: bool


@event_type("AdverseEventRegraded", version=1, context=CONTEXT)
class AdverseEventRegraded(EventPayload):
    """A correction or a change of an AE's assessment; the original report is never edited.
    The reason is the envelope's ``reason``. ``effective_at`` is when the new values began
    (the onset for a correction of the original report)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ae_id": "AE-0007-01",
                    "subject_id": "MSK-0007",
                    "effective_at": "2026-03-05T08:00:00Z",
                    "previous": {
                        "grade": 3,
                        "serious_criteria": ["hospitalisation"],
                        "attribution": "probable",
                        "expected": False,
                    },
                    "new": {
                        "grade": 2,
                        "serious_criteria": ["hospitalisation"],
                        "attribution": "probable",
                        "expected": False,
                    },
                }
            ]
        }
    )
    ae_id: AeId
    subject_id: SubjectId
    effective_at: AwareDatetime
    previous: Assessment
    new: Assessment


@event_type("AdverseEventImproved", version=1, context=CONTEXT)
class AdverseEventImproved(EventPayload):
    """The AE improved to grade <= 2, or resolved, at ``improved_at``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ae_id": "AE-0007-02",
                    "subject_id": "MSK-0007",
                    "outcome": "grade-2-or-less",
                    "improved_at": "2026-03-06T06:00:00Z",
                }
            ]
        }
    )
    ae_id: AeId
    subject_id: SubjectId
    outcome: ImprovementOutcome
    improved_at: AwareDatetime


# ---------------------------------------------------------------- dose-limiting toxicity


@event_type("DltAdjudicated", version=1, context=CONTEXT)
class DltAdjudicated(EventPayload):
    """An investigator adjudicated whether an AE is a dose-limiting toxicity. ``rule_verdict``,
    ``rule_criterion`` and ``rule_findings`` are what the trial's configured DLT rule said and
    why; ``verdict`` is the investigator's, with ``departure_reason`` when it differs."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ae_id": "AE-0007-02",
                    "subject_id": "MSK-0007",
                    "cohort_id": "DL1-IP",
                    "dose_level": "DL1",
                    "adjudicated_at": "2026-03-09T12:00:00Z",
                    "rule_verdict": "dlt",
                    "rule_criterion": "crs-icans-grade3-not-improved",
                    "rule_findings": [
                        "attribution probable is at least possible",
                        "onset on day 2 after infusion, inside the DLT window (day 0 to 28)",
                        "grade 3 CRS not improved to grade <= 2 within 72 h",
                    ],
                    "verdict": "dlt",
                    "departure_reason": None,
                }
            ]
        }
    )
    ae_id: AeId
    subject_id: SubjectId
    cohort_id: CohortId
    dose_level: str = Field(min_length=1, max_length=16)
    adjudicated_at: AwareDatetime
    rule_verdict: Verdict
    rule_criterion: str = Field(min_length=1)
    rule_findings: tuple[str, ...]
    verdict: Verdict
    departure_reason: Text | None


@event_type("DltEvaluationCompleted", version=1, context=CONTEXT)
class DltEvaluationCompleted(EventPayload):
    """The subject is DLT-evaluable (DOMAIN.md section 3): followed through the DLT window, or
    earlier with a DLT. ``dlt_ae_ids`` are the AEs adjudicated as DLTs; the dose-escalation
    design counts this subject at ``dose_level`` with ``dlt``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "MSK-0007",
                    "cohort_id": "DL1-IP",
                    "dose_level": "DL1",
                    "evaluated_at": "2026-03-31T12:00:00Z",
                    "window_days": 28,
                    "dlt": True,
                    "dlt_ae_ids": ["AE-0007-02"],
                }
            ]
        }
    )
    subject_id: SubjectId
    cohort_id: CohortId
    dose_level: str = Field(min_length=1, max_length=16)
    evaluated_at: AwareDatetime
    window_days: int = Field(ge=1)
    dlt: bool
    dlt_ae_ids: tuple[AeId, ...]


# ---------------------------------------------------------------- expedited reporting


class ReportDue(Frozen):
    """One expedited report on the clock: its day 0 and the last calendar day to submit."""

    report: ReportName
    day_zero: date
    due_on: date


@event_type("ExpeditedReportDetermined", version=1, context=CONTEXT)
class ExpeditedReportDetermined(EventPayload):
    """A safety officer determined that a case qualifies for expedited reporting (``basis``
    "initial", day 0 of the 15-day clock) or that new information needs a follow-up report
    (``basis`` "follow-up-N", day 0 = ``information_received_at``). ``reports_due`` are the
    deadlines it put on the clock under the trial's reporting rules."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ae_id": "AE-0007-01",
                    "subject_id": "MSK-0007",
                    "basis": "initial",
                    "determined_at": "2026-03-06T10:00:00Z",
                    "information_received_at": "2026-03-05T15:00:00Z",
                    "reports_due": [
                        {"report": "15-day", "day_zero": "2026-03-06", "due_on": "2026-03-21"}
                    ],
                }
            ]
        }
    )
    ae_id: AeId
    subject_id: SubjectId
    basis: str = Field(pattern=r"^(initial|follow-up-[1-9][0-9]{0,2})$")
    determined_at: AwareDatetime
    information_received_at: AwareDatetime
    reports_due: tuple[ReportDue, ...]


@event_type("ExpeditedReportSubmitted", version=1, context=CONTEXT)
class ExpeditedReportSubmitted(EventPayload):
    """A safety officer submitted an expedited report; ``reference`` is the sponsor's report
    number (e.g. the IND safety report's)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ae_id": "AE-0007-01",
                    "subject_id": "MSK-0007",
                    "report": "15-day",
                    "submitted_at": "2026-03-12T16:00:00Z",
                    "due_on": "2026-03-21",
                    "reference": "IND-SR-2026-004",
                }
            ]
        }
    )
    ae_id: AeId
    subject_id: SubjectId
    report: ReportName
    submitted_at: AwareDatetime
    due_on: date
    reference: str = Field(min_length=1, max_length=64)


# ---------------------------------------------------------------- safety review


@event_type("SafetyReviewRecorded", version=1, context=CONTEXT)
class SafetyReviewRecorded(EventPayload):
    """A documented safety review of the listed AEs and whether it allows enrollment to go on
    (``EnrollmentResumed`` follows when enrollment was paused and it does)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "review_id": "SR-2026-01",
                    "reviewed_ae_ids": ["AE-0007-01"],
                    "allows_resumption": True,
                    "summary": "Death attributed to disease progression on review",
                    "reviewed_at": "2026-03-20T14:00:00Z",
                }
            ]
        }
    )
    review_id: ReviewId
    reviewed_ae_ids: tuple[AeId, ...]
    allows_resumption: bool
    summary: Text
    reviewed_at: AwareDatetime


# ---------------------------------------------------------------- late out-of-specification result

LateOosAssessment = Literal["no-adverse-event", "adverse-event-reported"]
"""The investigator's safety assessment of a subject given a lot that turned out of
specification after the infusion: no adverse event follows, or the AEs reported for it."""


@event_type("LateOosFollowUpRecorded", version=1, context=CONTEXT)
class LateOosFollowUpRecorded(EventPayload):
    """The investigator was notified that a lot already infused turned out of specification
    (DOMAIN.md section 2.4: a late result after infusion becomes a safety event with notice to
    the investigator) and recorded the safety assessment of the subject. ``failed_tests`` are
    the late failures this follow-up covers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "LOT-0007-A",
                    "subject_id": "MSK-0007",
                    "failed_tests": ["sterility"],
                    "investigator_notified_at": "2026-03-09T15:00:00Z",
                    "assessment": "adverse-event-reported",
                    "ae_ids": ["AE-0007-02"],
                    "summary": "Fever on day 6; blood cultures drawn, antibiotics started",
                }
            ]
        }
    )
    lot_id: LotId
    subject_id: SubjectId
    failed_tests: tuple[str, ...] = Field(min_length=1)
    investigator_notified_at: AwareDatetime
    assessment: LateOosAssessment
    ae_ids: tuple[AeId, ...] = ()
    summary: Text
