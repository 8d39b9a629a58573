"""What the enrollment service knows: cohorts and their slots, each subject's path through
screening, the trial-wide waiting list, and the upstream facts it follows (lots released by
manufacturing, infusions given by dosing, the safety stopping rule).

Upstream facts are kept apart from the subjects they concern, because on a restart the
service evolves upstream events before its own history: nothing here may depend on the order
of events from different topics.

Its maps and sets are persistent (services/persistent.py): an event changes one entry in
O(log n) and shares the rest, so folding a long history costs the same per event at its end
as at its start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from events.dosing import InfusionRecorded
from events.enrollment import (
    CohortClosed,
    CohortExpanded,
    CohortOpened,
    ConsentRecorded,
    EligibilityAssessed,
    EligibilityReconfirmed,
    PrescreeningRecorded,
    SlotReleased,
    SubjectEnrolled,
    SubjectRegistered,
    SubjectScreenFailed,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from events.manufacturing import ExceptionalReleaseApproved, LotOutOfSpecification, LotReleased
from events.registry import EventPayload
from events.safety import EnrollmentPaused, EnrollmentResumed
from services.persistent import PMap, PQueue, PSet, add, put

LotStatus = Literal["released", "out-of-specification", "exceptionally-released"]


@dataclass(frozen=True, slots=True)
class Cohort:
    cohort_id: str
    dose_level: str
    capacity: int
    open: bool = True
    slots: tuple[tuple[int, str], ...] = ()
    """(slot number, subject) for every slot held, in slot order."""

    @property
    def enrolled(self) -> tuple[str, ...]:
        return tuple(subject for _slot, subject in self.slots)

    def free_slot(self) -> int | None:
        """The lowest slot number not held, so a released slot is filled first."""
        held = {slot for slot, _subject in self.slots}
        return next((n for n in range(1, self.capacity + 1) if n not in held), None)

    def committed(self) -> int:
        """Slots counted against the trial's maximum: all of an open cohort's, only the held
        ones of a closed cohort (closing gives the free ones up)."""
        return self.capacity if self.open else len(self.slots)


@dataclass(frozen=True, slots=True)
class Consent:
    form_version: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class Subject:
    subject_id: str
    msln_ihc_percent: float | None = None
    consents: tuple[Consent, ...] = ()
    eligible: bool = False
    screen_failed: str | None = None
    """The screen failure's reason code."""
    withdrawn: str | None = None
    """The withdrawal's reason code."""
    cohort_id: str | None = None
    slot: int | None = None
    reconfirmed_lots: tuple[str, ...] = ()

    @property
    def first_consent(self) -> Consent | None:
        return self.consents[0] if self.consents else None

    @property
    def holds_slot(self) -> bool:
        return self.slot is not None


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    subject_id: str
    status: LotStatus
    failed_tests: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pause:
    ae_id: str
    subject_id: str
    rule: str


@dataclass(frozen=True, slots=True)
class EnrollmentState:
    cohorts: Mapping[str, Cohort] = field(default_factory=PMap)
    subjects: Mapping[str, Subject] = field(default_factory=PMap)
    waiting: Sequence[str] = PQueue()
    """The trial-wide waiting list, first come first: subject ids in order of arrival."""
    lots: Mapping[str, Lot] = field(default_factory=PMap)
    infused: AbstractSet[str] = PSet()
    pause: Pause | None = None

    def committed_slots(self) -> int:
        return sum(cohort.committed() for cohort in self.cohorts.values())


initial_state = EnrollmentState()


def eligible(assessment: EligibilityAssessed) -> bool:
    """The screening verdict: eligible only when every criterion assessed is met (DOMAIN.md
    section 1; a criterion not met is a screen failure). The service's state, the patient
    timeline's rows and the board's screening list all read it here."""
    return all(c.met for c in assessment.criteria)


def evolve(state: EnrollmentState, event: EventPayload) -> EnrollmentState:
    match event:
        # ------------------------------------------------------------ cohorts
        case CohortOpened():
            cohort = Cohort(event.cohort_id, event.dose_level, event.capacity)
            return _cohort(state, cohort)
        case CohortExpanded():
            cohort = state.cohorts[event.cohort_id]
            return _cohort(
                state, replace(cohort, capacity=cohort.capacity + event.additional_slots, open=True)
            )
        case CohortClosed():
            return _cohort(state, replace(state.cohorts[event.cohort_id], open=False))
        # ------------------------------------------------------------ subjects
        case SubjectRegistered():
            return _subject(state, Subject(event.subject_id))
        case PrescreeningRecorded():
            return _update(state, event.subject_id, msln_ihc_percent=event.msln_ihc_percent)
        case ConsentRecorded():
            subject = _get(state, event.subject_id)
            consent = Consent(event.form_version, event.signed_at)
            return _subject(state, replace(subject, consents=(*subject.consents, consent)))
        case EligibilityAssessed():
            return _update(state, event.subject_id, eligible=eligible(event))
        case SubjectScreenFailed():
            state = _update(state, event.subject_id, screen_failed=event.reason_code)
            return _off_waiting_list(state, event.subject_id)
        case SubjectWaitlisted():
            return replace(state, waiting=PQueue(state.waiting).append(event.subject_id))
        case SubjectEnrolled():
            cohort = state.cohorts[event.cohort_id]
            slots = tuple(sorted((*cohort.slots, (event.slot, event.subject_id))))
            state = _cohort(state, replace(cohort, slots=slots))
            state = _update(state, event.subject_id, cohort_id=event.cohort_id, slot=event.slot)
            return _off_waiting_list(state, event.subject_id)
        case SlotReleased():
            cohort = state.cohorts[event.cohort_id]
            slots = tuple(s for s in cohort.slots if s != (event.slot, event.subject_id))
            state = _cohort(state, replace(cohort, slots=slots))
            return _update(state, event.subject_id, slot=None)
        case SubjectWithdrawn():
            state = _update(state, event.subject_id, withdrawn=event.reason_code)
            return _off_waiting_list(state, event.subject_id)
        case EligibilityReconfirmed():
            subject = _get(state, event.subject_id)
            lots = (*subject.reconfirmed_lots, event.lot_id)
            return _subject(state, replace(subject, reconfirmed_lots=lots))
        # ------------------------------------------------------------ upstream: manufacturing
        case LotReleased():
            return _lot(state, Lot(event.lot_id, event.subject_id, "released"))
        case LotOutOfSpecification():
            lot = Lot(event.lot_id, event.subject_id, "out-of-specification", event.failed_tests)
            return _lot(state, lot)
        case ExceptionalReleaseApproved():
            return _lot(state, Lot(event.lot_id, event.subject_id, "exceptionally-released"))
        # ------------------------------------------------------------ upstream: dosing, safety
        case InfusionRecorded():
            return replace(state, infused=add(state.infused, event.subject_id))
        case EnrollmentPaused():
            return replace(state, pause=Pause(event.ae_id, event.subject_id, event.rule))
        case EnrollmentResumed():
            return replace(state, pause=None)
    return state


def fold(events: list[EventPayload], state: EnrollmentState = initial_state) -> EnrollmentState:
    for event in events:
        state = evolve(state, event)
    return state


def _get(state: EnrollmentState, subject_id: str) -> Subject:
    return state.subjects.get(subject_id) or Subject(subject_id)


def _subject(state: EnrollmentState, subject: Subject) -> EnrollmentState:
    return replace(state, subjects=put(state.subjects, subject.subject_id, subject))


def _update(state: EnrollmentState, subject_id: str, **changes: Any) -> EnrollmentState:
    return _subject(state, replace(_get(state, subject_id), **changes))


def _cohort(state: EnrollmentState, cohort: Cohort) -> EnrollmentState:
    return replace(state, cohorts=put(state.cohorts, cohort.cohort_id, cohort))


def _lot(state: EnrollmentState, lot: Lot) -> EnrollmentState:
    return replace(state, lots=put(state.lots, lot.lot_id, lot))


def _off_waiting_list(state: EnrollmentState, subject_id: str) -> EnrollmentState:
    if subject_id not in state.waiting:
        return state
    return replace(state, waiting=PQueue(state.waiting).remove(subject_id))
