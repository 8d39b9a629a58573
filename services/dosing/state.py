"""What dosing knows when it decides: its own facts and those it follows from enrollment
(cohorts, enrollment, eligibility re-check, withdrawal), manufacturing (release, out of
specification, exceptional release, thaw) and safety (the stopping rule's pause and the review
that lifts it).

``evolve`` is total: an upstream event may arrive before or after another context's (enrollment
and manufacturing are separate topics, and on start-up the upstream history is folded before
dosing's own), so no fact here assumes another one was seen first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from events.dosing import BedsideCoiVerified, ConditioningDayRecorded, InfusionRecorded
from events.enrollment import (
    CohortOpened,
    EligibilityReconfirmed,
    PriorTherapyRecorded,
    SubjectEnrolled,
    SubjectWithdrawn,
)
from events.manufacturing import (
    CONTEXT as MANUFACTURING,
)
from events.manufacturing import (
    ApheresisCollected,
    ExceptionalReleaseApproved,
    LotOutOfSpecification,
    LotReleased,
    LotThawed,
    QcResultRecorded,
)
from events.registry import EventPayload
from events.safety import EnrollmentPaused, EnrollmentResumed
from services.enrollment.washout import LastDoses, with_prior_therapy
from services.persistent import PMap, put

Release = Literal[
    "not-released",
    "released",
    "conditionally-released",
    "out-of-specification",
    "exceptionally-released",
]
AVAILABLE: frozenset[str] = frozenset(
    {"released", "conditionally-released", "exceptionally-released"}
)
"""Release states in which the product may be given (DOMAIN.md 2.3-2.4): released, released
while sterility or mycoplasma is "negative to date", or out of specification with an exceptional
release decided by the investigator and the sponsor."""


@dataclass(frozen=True, slots=True)
class Cohort:
    cohort_id: str
    dose_level: str
    cells_per_kg: float
    route: str


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    subject_id: str | None = None
    coi_id: str | None = None
    release: Release = "not-released"
    failed_tests: tuple[str, ...] = ()
    failed_after_release: bool = False
    thawed: bool = False
    thawed_at: datetime | None = None
    """When the product was thawed, if the thaw's fact says (``LotThawed.thawed_at``)."""
    weight_at_collection_kg: float | None = None
    """The subject's weight at leukapheresis, on which the lot's target was computed."""
    released_cells: float | None = None
    """The lot's CAR T cell count as released (``LotReleased``), or as measured by its
    cell-dose test when it was never released (an exceptional release)."""
    last_manufacturing_event: str | None = None
    """For refusal messages only ("not released; last manufacturing event: ...")."""

    @property
    def available(self) -> bool:
        return self.release in AVAILABLE


@dataclass(frozen=True, slots=True)
class ConditioningDay:
    day: int
    given_at: datetime


@dataclass(frozen=True, slots=True)
class BedsideCheck:
    verified_by: str
    verified_at: datetime


@dataclass(frozen=True, slots=True)
class Subject:
    subject_id: str
    cohort_id: str | None = None
    withdrawn: bool = False
    reconfirmed_for_lots: tuple[str, ...] = ()
    conditioning_lot: str | None = None
    conditioning: tuple[ConditioningDay, ...] = ()
    bedside_checks: Mapping[str, tuple[BedsideCheck, ...]] = field(default_factory=dict)
    """lot id -> the checks made at the bedside for it, in order."""
    infused_lot: str | None = None

    @property
    def conditioning_days(self) -> tuple[int, ...]:
        return tuple(day.day for day in self.conditioning)

    def checked_by(self, lot_id: str) -> tuple[str, ...]:
        return tuple(check.verified_by for check in self.bedside_checks.get(lot_id, ()))


@dataclass(frozen=True, slots=True)
class Pause:
    """The stopping rule fired on ``ae_id``: enrollment and dosing wait for a safety review."""

    ae_id: str
    subject_id: str
    rule: str


@dataclass(frozen=True, slots=True)
class DosingState:
    cohorts: Mapping[str, Cohort] = field(default_factory=PMap)
    subjects: Mapping[str, Subject] = field(default_factory=PMap)
    lots: Mapping[str, Lot] = field(default_factory=PMap)
    pauses: tuple[Pause, ...] = ()
    """The stopping-rule pauses no safety review has lifted yet, in order (DOMAIN.md 3)."""
    last_doses: Mapping[str, LastDoses] = field(default_factory=PMap)
    """subject -> prior-therapy class -> latest last dose, from enrollment (for the washout)."""

    def subject(self, subject_id: str) -> Subject:
        return self.subjects.get(subject_id) or Subject(subject_id)

    def lot(self, lot_id: str) -> Lot:
        return self.lots.get(lot_id) or Lot(lot_id)


initial_state = DosingState()


def evolve(state: DosingState, event: EventPayload) -> DosingState:
    match event:
        # ------------------------------------------------------------ enrollment
        case CohortOpened():
            cohort = Cohort(event.cohort_id, event.dose_level, event.dose_cells_per_kg, event.route)
            return replace(state, cohorts=put(state.cohorts, cohort.cohort_id, cohort))
        case SubjectEnrolled():
            return _subject(state, event.subject_id, cohort_id=event.cohort_id)
        case EligibilityReconfirmed():
            subject = state.subject(event.subject_id)
            lots = (*subject.reconfirmed_for_lots, event.lot_id)
            return _subject(state, event.subject_id, reconfirmed_for_lots=lots)
        case SubjectWithdrawn():
            return _subject(state, event.subject_id, withdrawn=True)
        case PriorTherapyRecorded():
            return replace(state, last_doses=with_prior_therapy(state.last_doses, event))
        # ------------------------------------------------------------ manufacturing
        case LotReleased():
            release: Release = "conditionally-released" if event.conditional else "released"
            return _lot(
                state,
                event,
                coi_id=event.coi_id,
                release=release,
                failed_tests=(),
                failed_after_release=False,
                released_cells=event.total_car_t_cells,
            )
        case ApheresisCollected():
            lot = state.lot(event.lot_id)
            return _lot(
                state,
                event,
                coi_id=lot.coi_id or event.coi_id,
                weight_at_collection_kg=event.weight_kg,
            )
        case QcResultRecorded(test="cell_dose", value=float() as counted):
            # A released count (LotReleased) is the same measurement and comes after it.
            return _lot(state, event, released_cells=counted)
        case LotOutOfSpecification():
            return _lot(
                state,
                event,
                release="out-of-specification",
                failed_tests=tuple(event.failed_tests),
                failed_after_release=event.after_release,
            )
        case ExceptionalReleaseApproved():
            return _lot(state, event, release="exceptionally-released")
        case LotThawed():
            thawed_at = getattr(event, "thawed_at", None)
            return _lot(state, event, thawed=True, thawed_at=thawed_at)
        # ------------------------------------------------------------ safety
        case EnrollmentPaused():
            pause = Pause(event.ae_id, event.subject_id, event.rule)
            return replace(state, pauses=(*state.pauses, pause))
        case EnrollmentResumed():
            # The safety service resumes only when its review covers every pausing event.
            return replace(state, pauses=())
        # ------------------------------------------------------------ dosing
        case ConditioningDayRecorded():
            subject = state.subject(event.subject_id)
            return _subject(
                state,
                event.subject_id,
                conditioning_lot=event.lot_id,
                conditioning=(*subject.conditioning, ConditioningDay(event.day, event.given_at)),
            )
        case BedsideCoiVerified():
            subject = state.subject(event.subject_id)
            check = BedsideCheck(event.verified_by, event.verified_at)
            checks = {
                **subject.bedside_checks,
                event.lot_id: (*subject.bedside_checks.get(event.lot_id, ()), check),
            }
            return _subject(state, event.subject_id, bedside_checks=checks)
        case InfusionRecorded():
            return _subject(state, event.subject_id, infused_lot=event.lot_id)
    if event.context == MANUFACTURING:
        return _other_manufacturing_fact(state, event)
    return state


def _subject(state: DosingState, subject_id: str, **changes: Any) -> DosingState:
    subject = replace(state.subject(subject_id), **changes)
    return replace(state, subjects=put(state.subjects, subject_id, subject))


def _lot(state: DosingState, event: EventPayload, **changes: Any) -> DosingState:
    lot_id: str = event.lot_id  # type: ignore[attr-defined]
    lot = replace(
        state.lot(lot_id),
        subject_id=event.subject_id,  # type: ignore[attr-defined]
        last_manufacturing_event=event.event_type,
        **changes,
    )
    return replace(state, lots=put(state.lots, lot_id, lot))


def _other_manufacturing_fact(state: DosingState, event: EventPayload) -> DosingState:
    """Manufacturing facts outside the contract change no rule here. Those naming a lot are
    remembered by name, so a refusal can say where the lot stands ("last manufacturing event:
    QcResultRecorded"), and a chain-of-identity id they carry is kept: an out-of-specification
    lot released exceptionally never had a ``LotReleased`` to carry it."""
    lot_id = getattr(event, "lot_id", None)
    if not isinstance(lot_id, str):
        return state
    lot = state.lot(lot_id)
    subject_id = getattr(event, "subject_id", None)
    coi_id = getattr(event, "coi_id", None)
    lot = replace(
        lot,
        last_manufacturing_event=event.event_type,
        subject_id=lot.subject_id or (subject_id if isinstance(subject_id, str) else None),
        coi_id=lot.coi_id or (coi_id if isinstance(coi_id, str) else None),
    )
    return replace(state, lots=put(state.lots, lot_id, lot))


def fold(events: list[EventPayload], state: DosingState = initial_state) -> DosingState:
    for event in events:
        state = evolve(state, event)
    return state
