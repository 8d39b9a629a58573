"""What safety knows when it decides: its own facts and those it follows from enrollment
(registered and enrolled subjects, their cohort), dosing (the infusion, day 0 of the DLT
window; which lot was infused) and manufacturing (a lot that turned out of specification after
its release, and an exceptional release that covered what was known before the infusion).

``evolve`` is total: on start-up the service folds its own history before the upstream topics,
so an AE may be folded before the subject's registration or infusion; no fact here assumes
another context's fact was seen first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from events.dosing import InfusionRecorded
from events.enrollment import SubjectEnrolled, SubjectRegistered
from events.manufacturing import ExceptionalReleaseApproved, LotOutOfSpecification
from events.registry import EventPayload
from events.safety import (
    AdverseEventImproved,
    AdverseEventRegraded,
    AdverseEventReported,
    Attribution,
    CrsGraded,
    DltAdjudicated,
    DltEvaluationCompleted,
    EnrollmentPaused,
    EnrollmentResumed,
    ExpeditedReportDetermined,
    ExpeditedReportSubmitted,
    IcansGraded,
    LateOosFollowUpRecorded,
    ReportDue,
    SafetyReviewRecorded,
    SeriousnessCriterion,
    SpecialInterest,
    Verdict,
)
from services.persistent import PMap, put

Syndrome = Literal["crs", "icans", "other"]

_CRS_TERMS = frozenset({"cytokine release syndrome", "crs"})
_ICANS_TERMS = frozenset({"immune effector cell associated neurotoxicity syndrome", "icans"})
SEROSITIS_TERMS = frozenset({"serositis", "pleuritis", "pleurisy", "pericarditis", "peritonitis"})
"""On-target, off-tumour toxicity of a mesothelin-targeted product (DOMAIN.md section 3):
mesothelin is on pleura, pericardium and peritoneum. These terms are always AEs of special
interest."""


def normalised(term: str) -> str:
    return " ".join(term.casefold().replace("-", " ").split())


def syndrome_of(term: str) -> Syndrome:
    """CRS is the CTCAE v5 term "Cytokine release syndrome"; ICANS is the ASTCT name (CTCAE v5
    has no ICANS term). Abbreviations, case and hyphens are tolerated."""
    name = normalised(term)
    if name in _CRS_TERMS:
        return "crs"
    if name in _ICANS_TERMS:
        return "icans"
    return "other"


def is_serositis(term: str) -> bool:
    return normalised(term) in SEROSITIS_TERMS


@dataclass(frozen=True, slots=True)
class Infusion:
    cohort_id: str
    dose_level: str
    infused_at: datetime


@dataclass(frozen=True, slots=True)
class Subject:
    subject_id: str
    cohort_id: str | None = None
    infusion: Infusion | None = None
    dlt_evaluated: bool = False


@dataclass(frozen=True, slots=True)
class AdverseEvent:
    ae_id: str
    subject_id: str
    term: str
    syndrome: Syndrome
    grade: int
    """The worst grade known (reported, regraded or observed)."""
    onset_at: datetime
    serious_criteria: tuple[SeriousnessCriterion, ...]
    attribution: Attribution
    expected: bool
    sponsor_received_at: datetime
    special_interest: SpecialInterest | None
    haematological: bool
    conditioning_lab_effect: bool
    severe_since: datetime | None = None
    """When the AE was first known at grade >= 3."""
    improved_at: datetime | None = None
    """When it first improved to grade <= 2 (or resolved) after being severe."""
    resolved_at: datetime | None = None
    verdict: Verdict | None = None
    reassessed_since_adjudication: bool = False
    paused_enrollment: bool = False
    determined_at: datetime | None = None
    follow_ups: tuple[ReportDue, ...] = ()
    submitted: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Lot:
    """A patient's lot as safety sees it (DOMAIN.md section 2.4: a late out-of-specification
    result after infusion becomes a safety event with notice to the investigator).

    ``late_oos_tests`` are the tests that failed after the lot's release and that no exceptional
    release covered: an exceptional release is decided on what was known, so the failures
    before it (in the lot's own stream order) are covered and the later ones are not. Dosing
    refuses a lot out of specification unless it is exceptionally released, so an uncovered
    late failure of an infused lot came after the infusion, whichever of the two topics was
    folded first."""

    lot_id: str
    subject_id: str
    infused: bool = False
    late_oos_tests: tuple[str, ...] = ()
    followed_up_tests: frozenset[str] = frozenset()

    @property
    def open_tests(self) -> tuple[str, ...]:
        return tuple(t for t in self.late_oos_tests if t not in self.followed_up_tests)

    @property
    def needs_follow_up(self) -> bool:
        """Infused, with a late failure the investigator has not yet been notified of and
        assessed."""
        return self.infused and bool(self.open_tests)


@dataclass(frozen=True, slots=True)
class SafetyState:
    subjects: Mapping[str, Subject] = field(default_factory=PMap)
    adverse_events: Mapping[str, AdverseEvent] = field(default_factory=PMap)
    lots: Mapping[str, Lot] = field(default_factory=PMap)
    pausing: tuple[str, ...] = ()
    """AEs whose stopping rule paused enrollment and that no resuming review has covered."""
    reviews: frozenset[str] = frozenset()

    @property
    def enrollment_paused(self) -> bool:
        return bool(self.pausing)


initial_state = SafetyState()


def evolve(state: SafetyState, event: EventPayload) -> SafetyState:
    match event:
        case SubjectRegistered():
            return _with_subject(state, _subject(state, event.subject_id))
        case SubjectEnrolled():
            subject = replace(_subject(state, event.subject_id), cohort_id=event.cohort_id)
            return _with_subject(state, subject)
        case InfusionRecorded():
            infusion = Infusion(event.cohort_id, event.dose_level, event.infused_at)
            subject = replace(_subject(state, event.subject_id), infusion=infusion)
            lot = replace(_lot(state, event.lot_id, event.subject_id), infused=True)
            return _with_lot(_with_subject(state, subject), lot)
        case LotOutOfSpecification(after_release=True):
            lot = _lot(state, event.lot_id, event.subject_id)
            new = tuple(t for t in event.failed_tests if t not in lot.late_oos_tests)
            late = (*lot.late_oos_tests, *new)
            return _with_lot(state, replace(lot, late_oos_tests=late))
        case ExceptionalReleaseApproved():
            lot = _lot(state, event.lot_id, event.subject_id)
            return _with_lot(state, replace(lot, late_oos_tests=()))
        case LateOosFollowUpRecorded():
            lot = _lot(state, event.lot_id, event.subject_id)
            done = lot.followed_up_tests | set(event.failed_tests)
            return _with_lot(state, replace(lot, followed_up_tests=done))
        case AdverseEventReported():
            return _with_ae(state, _reported(event))
        case DltEvaluationCompleted():
            subject = replace(_subject(state, event.subject_id), dlt_evaluated=True)
            return _with_subject(state, subject)
        case CrsGraded() | IcansGraded():
            return _with_ae(state, _graded(state.adverse_events[event.ae_id], event))
        case AdverseEventRegraded():
            return _with_ae(state, _regraded(state.adverse_events[event.ae_id], event))
        case AdverseEventImproved():
            return _with_ae(state, _improved(state.adverse_events[event.ae_id], event))
        case DltAdjudicated():
            ae = replace(
                state.adverse_events[event.ae_id],
                verdict=event.verdict,
                reassessed_since_adjudication=False,
            )
            return _with_ae(state, ae)
        case ExpeditedReportDetermined():
            return _with_ae(state, _determined(state.adverse_events[event.ae_id], event))
        case ExpeditedReportSubmitted():
            ae = state.adverse_events[event.ae_id]
            return _with_ae(state, replace(ae, submitted=ae.submitted | {event.report}))
        case EnrollmentPaused():
            ae = replace(state.adverse_events[event.ae_id], paused_enrollment=True)
            return replace(_with_ae(state, ae), pausing=(*state.pausing, event.ae_id))
        case SafetyReviewRecorded():
            return replace(state, reviews=state.reviews | {event.review_id})
        case EnrollmentResumed():
            return replace(state, pausing=())
    return state


def _reported(event: AdverseEventReported) -> AdverseEvent:
    return AdverseEvent(
        ae_id=event.ae_id,
        subject_id=event.subject_id,
        term=event.term,
        syndrome=syndrome_of(event.term),
        grade=event.grade,
        onset_at=event.onset_at,
        serious_criteria=event.serious_criteria,
        attribution=event.attribution,
        expected=event.expected,
        sponsor_received_at=event.sponsor_received_at,
        special_interest=event.special_interest,
        haematological=event.haematological,
        conditioning_lab_effect=event.conditioning_lab_effect,
        severe_since=event.onset_at if event.grade >= 3 else None,
    )


def _graded(ae: AdverseEvent, event: CrsGraded | IcansGraded) -> AdverseEvent:
    """An observation raises the worst grade; a lower one leaves it (improvement is recorded
    explicitly). Death due to CRS/ICANS makes the AE serious by the "death" criterion."""
    if event.grade <= ae.grade:
        return ae
    criteria = ae.serious_criteria
    if event.grade == 5 and "death" not in criteria:
        criteria = (*criteria, "death")
    return replace(
        ae,
        grade=event.grade,
        serious_criteria=criteria,
        severe_since=ae.severe_since or (event.observed_at if event.grade >= 3 else None),
        reassessed_since_adjudication=ae.verdict is not None,
    )


def _regraded(ae: AdverseEvent, event: AdverseEventRegraded) -> AdverseEvent:
    new = event.new
    if new.grade < 3:
        severe_since = None
    else:
        severe_since = ae.severe_since if ae.grade >= 3 else event.effective_at
    return replace(
        ae,
        grade=new.grade,
        serious_criteria=new.serious_criteria,
        attribution=new.attribution,
        expected=new.expected,
        severe_since=severe_since,
        reassessed_since_adjudication=ae.verdict is not None,
    )


def _improved(ae: AdverseEvent, event: AdverseEventImproved) -> AdverseEvent:
    improved_at = ae.improved_at or (event.improved_at if ae.grade >= 3 else None)
    resolved_at = event.improved_at if event.outcome == "resolved" else ae.resolved_at
    return replace(
        ae,
        improved_at=improved_at,
        resolved_at=resolved_at,
        reassessed_since_adjudication=ae.verdict is not None,
    )


def _determined(ae: AdverseEvent, event: ExpeditedReportDetermined) -> AdverseEvent:
    if event.basis == "initial":
        return replace(ae, determined_at=event.determined_at)
    follow_ups = tuple(d for d in event.reports_due if d.report.startswith("follow-up-"))
    return replace(ae, follow_ups=(*ae.follow_ups, *follow_ups))


def _subject(state: SafetyState, subject_id: str) -> Subject:
    return state.subjects.get(subject_id) or Subject(subject_id)


def _with_subject(state: SafetyState, subject: Subject) -> SafetyState:
    return replace(state, subjects=put(state.subjects, subject.subject_id, subject))


def _lot(state: SafetyState, lot_id: str, subject_id: str) -> Lot:
    return state.lots.get(lot_id) or Lot(lot_id, subject_id)


def _with_lot(state: SafetyState, lot: Lot) -> SafetyState:
    return replace(state, lots=put(state.lots, lot.lot_id, lot))


def _with_ae(state: SafetyState, ae: AdverseEvent) -> SafetyState:
    return replace(state, adverse_events=put(state.adverse_events, ae.ae_id, ae))


def fold(events: list[EventPayload], state: SafetyState = initial_state) -> SafetyState:
    for event in events:
        state = evolve(state, event)
    return state
