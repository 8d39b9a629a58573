"""Givens shared by the safety tests (no tests here): the trial, a subject enrolled in DL1-IP
and infused on Monday 2 March 2026 at 10:30 UTC (day 0 of the DLT window), and command
builders whose every time is chosen here, never read from a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events.dosing import InfusionRecorded
from events.enrollment import SubjectEnrolled, SubjectRegistered
from events.registry import EventPayload
from services.decider import NewEvent
from services.safety.commands import (
    AdjudicateDlt,
    Command,
    DetermineExpeditedReport,
    GradeCrs,
    GradeIcans,
    RecordAeResolution,
    RecordSafetyReview,
    RegradeAdverseEvent,
    ReportAdverseEvent,
    SubmitExpeditedReport,
)
from services.safety.decider import make_decider
from services.safety.state import SafetyState, fold
from trial.config import load_trial

TRIAL = load_trial()
DECIDER = make_decider(TRIAL)
SUBJECT = "MSK-0007"
AE = "AE-0007-01"
INFUSED_AT = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)


def day(n: float, hours: float = 0) -> datetime:
    """``n`` days (and ``hours``) after the infusion."""
    return INFUSED_AT + timedelta(days=n, hours=hours)


def registered(subject_id: str = SUBJECT) -> SubjectRegistered:
    return SubjectRegistered(subject_id=subject_id, site_id="SITE-01")


def enrolled(subject_id: str = SUBJECT) -> SubjectEnrolled:
    return SubjectEnrolled(subject_id=subject_id, cohort_id="DL1-IP", slot=1)


def infused(subject_id: str = SUBJECT, at: datetime = INFUSED_AT) -> InfusionRecorded:
    return InfusionRecorded(
        subject_id=subject_id,
        lot_id="LOT-0007-A",
        cohort_id="DL1-IP",
        dose_level="DL1",
        target_cells_per_kg=1e6,
        weight_kg=70.0,
        cells_infused=7.0e7,
        received_cells_per_kg=1e6,
        counted_dose_level="DL1",
        route="intraperitoneal",
        infused_at=at,
    )


def treated(subject_id: str = SUBJECT) -> list[EventPayload]:
    return [registered(subject_id), enrolled(subject_id), infused(subject_id)]


def given(*facts: EventPayload | list[EventPayload]) -> SafetyState:
    flat: list[EventPayload] = []
    for fact in facts:
        flat.extend(fact if isinstance(fact, list) else [fact])
    return fold(flat)


def run(state: SafetyState, *commands: Command) -> tuple[list[NewEvent], SafetyState]:
    """Decide and evolve each command in turn, as the service does; return all new events."""
    produced: list[NewEvent] = []
    for command in commands:
        events = DECIDER.decide(command, state)
        for new in events:
            state = DECIDER.evolve(state, new.payload)
        produced.extend(events)
    return produced, state


def reported(**fields) -> SafetyState:
    """A treated subject with the AE of ``report(**fields)`` reported."""
    _events, state = run(given(treated()), report(**fields))
    return state


def payloads(events: list[NewEvent]) -> list[EventPayload]:
    return [new.payload for new in events]


def names(events: list[NewEvent]) -> list[str]:
    return [type(new.payload).__name__ for new in events]


# ---------------------------------------------------------------- commands


def report(ae_id: str = AE, **fields) -> ReportAdverseEvent:
    values = {
        "ae_id": ae_id,
        "subject_id": SUBJECT,
        "term": "Cytokine release syndrome",
        "grade": 2,
        "onset_at": day(1),
        "serious_criteria": (),
        "attribution": "probable",
        "expected": True,
        "sponsor_received_at": day(1, hours=4),
        "occurred_at": day(1, hours=5),
    }
    return ReportAdverseEvent(**{**values, **fields})


def fatal_report(ae_id: str = AE, attribution="possible", **fields) -> ReportAdverseEvent:
    return report(
        ae_id,
        grade=5,
        serious_criteria=("death",),
        attribution=attribution,
        expected=False,
        **fields,
    )


def grade_crs(at: datetime, ae_id: str = AE, **observation) -> GradeCrs:
    observed = {"temperature_c": 39.0, **observation}
    return GradeCrs.model_validate({"ae_id": ae_id, "observation": observed, "occurred_at": at})


def grade_icans(at: datetime, ae_id: str = AE, **observation) -> GradeIcans:
    observed = {"ice_score": 10, **observation}
    return GradeIcans.model_validate({"ae_id": ae_id, "observation": observed, "occurred_at": at})


def regrade(at: datetime, ae_id: str = AE, reason="source document review", **values):
    return RegradeAdverseEvent(ae_id=ae_id, reason=reason, occurred_at=at, **values)


def improved(at: datetime, ae_id: str = AE, outcome="grade-2-or-less", **fields):
    return RecordAeResolution(ae_id=ae_id, outcome=outcome, occurred_at=at, **fields)


def adjudicate(at: datetime, verdict="dlt", ae_id: str = AE, **fields) -> AdjudicateDlt:
    return AdjudicateDlt(ae_id=ae_id, verdict=verdict, occurred_at=at, **fields)


def determine(at: datetime, ae_id: str = AE, **fields) -> DetermineExpeditedReport:
    return DetermineExpeditedReport(ae_id=ae_id, occurred_at=at, **fields)


def submit(at: datetime, report_name: str, ae_id: str = AE) -> SubmitExpeditedReport:
    return SubmitExpeditedReport(
        ae_id=ae_id, report=report_name, reference="IND-SR-2026-004", occurred_at=at
    )


def review(at: datetime, *ae_ids: str, review_id="SR-2026-01", allows_resumption=True):
    return RecordSafetyReview(
        review_id=review_id,
        reviewed_ae_ids=ae_ids or (AE,),
        allows_resumption=allows_resumption,
        summary="Reviewed by the safety committee",
        occurred_at=at,
    )
