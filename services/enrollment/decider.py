"""Enrollment decider: cohorts, subjects and slots. Pure: no I/O, no clock.

Rules (skeleton): a cohort is opened once, by the dose-escalation review's decision; a subject
is registered once under a pseudonymous code; only a registered subject who holds no slot and
is on no waiting list may be enrolled, into an open cohort with a free slot. When the cohort
is full the command is refused, or, when the command asks for it, the subject is put at the
end of that cohort's waiting list (first come, first served).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events.enrollment import (
    CohortId,
    CohortOpened,
    Route,
    SubjectEnrolled,
    SubjectId,
    SubjectRegistered,
    SubjectWaitlisted,
)
from events.registry import EventPayload
from services.decider import NewEvent
from services.errors import NotFound, RuleViolated

# ---------------------------------------------------------------- commands


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime


class OpenCohort(Command):
    cohort_id: CohortId
    dose_level: str = Field(min_length=1, max_length=16)
    dose_cells_per_kg: float = Field(gt=0, allow_inf_nan=False)
    route: Route
    capacity: int = Field(ge=1, le=18)


class RegisterSubject(Command):
    subject_id: SubjectId
    site_id: str = Field(min_length=1, max_length=32)


class EnrollSubject(Command):
    subject_id: SubjectId
    cohort_id: CohortId
    waitlist_if_full: bool = False


# ---------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Cohort:
    cohort_id: str
    dose_level: str
    capacity: int
    enrolled: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Subject:
    subject_id: str
    cohort_id: str | None = None
    waitlisted_for: str | None = None


@dataclass(frozen=True, slots=True)
class EnrollmentState:
    cohorts: Mapping[str, Cohort] = field(default_factory=dict)
    subjects: Mapping[str, Subject] = field(default_factory=dict)


initial_state = EnrollmentState()


# ---------------------------------------------------------------- decide


def decide(command: Command, state: EnrollmentState) -> list[NewEvent]:
    match command:
        case OpenCohort():
            return _open_cohort(command, state)
        case RegisterSubject():
            return _register(command, state)
        case EnrollSubject():
            return _enroll(command, state)
    raise TypeError(f"enrollment does not handle {type(command).__name__}")


def _open_cohort(cmd: OpenCohort, state: EnrollmentState) -> list[NewEvent]:
    if cmd.cohort_id in state.cohorts:
        raise RuleViolated(
            "cohort-opened-once",
            f"cohort {cmd.cohort_id} is already open",
            cohort_id=cmd.cohort_id,
        )
    payload = CohortOpened(
        cohort_id=cmd.cohort_id,
        dose_level=cmd.dose_level,
        dose_cells_per_kg=cmd.dose_cells_per_kg,
        route=cmd.route,
        capacity=cmd.capacity,
    )
    return [NewEvent(f"cohort-{cmd.cohort_id}", payload, cmd.occurred_at)]


def _register(cmd: RegisterSubject, state: EnrollmentState) -> list[NewEvent]:
    if cmd.subject_id in state.subjects:
        raise RuleViolated(
            "subject-registered-once",
            f"subject {cmd.subject_id} is already registered",
            subject_id=cmd.subject_id,
        )
    payload = SubjectRegistered(subject_id=cmd.subject_id, site_id=cmd.site_id)
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]


def _enroll(cmd: EnrollSubject, state: EnrollmentState) -> list[NewEvent]:
    subject = state.subjects.get(cmd.subject_id)
    if subject is None:
        raise NotFound(
            "subject-must-be-registered",
            f"subject {cmd.subject_id} is not registered",
            subject_id=cmd.subject_id,
        )
    cohort = state.cohorts.get(cmd.cohort_id)
    if cohort is None:
        raise NotFound(
            "cohort-must-be-open",
            f"cohort {cmd.cohort_id} is not open",
            cohort_id=cmd.cohort_id,
        )
    if subject.cohort_id is not None:
        raise RuleViolated(
            "one-slot-per-subject",
            f"subject {cmd.subject_id} already holds a slot in cohort {subject.cohort_id}",
            subject_id=cmd.subject_id,
            cohort_id=subject.cohort_id,
        )
    if subject.waitlisted_for is not None:
        raise RuleViolated(
            "one-waiting-list-per-subject",
            f"subject {cmd.subject_id} is already on the waiting list of cohort "
            f"{subject.waitlisted_for}",
            subject_id=cmd.subject_id,
            cohort_id=subject.waitlisted_for,
        )
    taken = len(cohort.enrolled)
    stream = subject_stream(cmd.subject_id)
    if taken < cohort.capacity:
        payload: EventPayload = SubjectEnrolled(
            subject_id=cmd.subject_id, cohort_id=cohort.cohort_id, slot=taken + 1
        )
        return [NewEvent(stream, payload, cmd.occurred_at)]
    if cmd.waitlist_if_full:
        payload = SubjectWaitlisted(
            subject_id=cmd.subject_id,
            cohort_id=cohort.cohort_id,
            position=len(cohort.waiting) + 1,
        )
        return [NewEvent(stream, payload, cmd.occurred_at)]
    raise RuleViolated(
        "cohort-capacity",
        f"cohort {cohort.cohort_id} is full: {taken} of {cohort.capacity} slots taken",
        cohort_id=cohort.cohort_id,
        taken=taken,
        capacity=cohort.capacity,
    )


def subject_stream(subject_id: str) -> str:
    return f"subject-{subject_id}"


# ---------------------------------------------------------------- evolve


def evolve(state: EnrollmentState, event: EventPayload) -> EnrollmentState:
    match event:
        case CohortOpened():
            cohort = Cohort(event.cohort_id, event.dose_level, event.capacity)
            return replace(state, cohorts={**state.cohorts, event.cohort_id: cohort})
        case SubjectRegistered():
            subject = Subject(event.subject_id)
            return replace(state, subjects={**state.subjects, event.subject_id: subject})
        case SubjectEnrolled():
            cohort = state.cohorts[event.cohort_id]
            cohort = replace(cohort, enrolled=(*cohort.enrolled, event.subject_id))
            subject = replace(state.subjects[event.subject_id], cohort_id=event.cohort_id)
            return _with(state, cohort, subject)
        case SubjectWaitlisted():
            cohort = state.cohorts[event.cohort_id]
            cohort = replace(cohort, waiting=(*cohort.waiting, event.subject_id))
            subject = replace(state.subjects[event.subject_id], waitlisted_for=event.cohort_id)
            return _with(state, cohort, subject)
    return state


def _with(state: EnrollmentState, cohort: Cohort, subject: Subject) -> EnrollmentState:
    return EnrollmentState(
        cohorts={**state.cohorts, cohort.cohort_id: cohort},
        subjects={**state.subjects, subject.subject_id: subject},
    )


def fold(events: list[EventPayload], state: EnrollmentState = initial_state) -> EnrollmentState:
    for event in events:
        state = evolve(state, event)
    return state


COMMANDS: dict[str, type[Command]] = {
    "open-cohort": OpenCohort,
    "register-subject": RegisterSubject,
    "enroll-subject": EnrollSubject,
}
