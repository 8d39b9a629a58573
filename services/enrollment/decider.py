"""Enrollment decider: from pre-screening to a slot in a cohort. Pure: no I/O, no clock.

The rules, each with its source, are in the modules that decide them:
- screening.py: registration, pre-screening (MSLN IHC), consent, eligibility criterion by
  criterion, screen failure, prior therapies (for the washout, washout.py); nothing but
  registration and pre-screening before consent.
- cohorts.py: the dose-escalation review opens, expands and closes cohorts at the trial file's
  dose levels, citing the recommendation or giving the reason it departed from it.
- slots.py: enrollment into an open cohort, the trial-wide waiting list, the safety pause,
  withdrawal and what it does to the slot, re-confirmation of eligibility after release.

``make_decider(trial)`` closes over the trial file: every threshold comes from it.
"""

from __future__ import annotations

from functools import partial

from services.decider import Decider, NewEvent
from services.enrollment import cohorts, screening, slots
from services.enrollment.commands import (
    COMMANDS,
    AssessEligibility,
    CloseCohort,
    Command,
    EnrollSubject,
    ExpandCohort,
    OpenCohort,
    ReconfirmEligibility,
    RecordConsent,
    RecordPrescreening,
    RecordPriorTherapy,
    RecordScreenFailure,
    RegisterSubject,
    WithdrawSubject,
)
from services.enrollment.guards import subject_stream
from services.enrollment.state import EnrollmentState, evolve, fold, initial_state
from trial.config import TrialConfig

__all__ = [
    "COMMANDS",
    "AssessEligibility",
    "CloseCohort",
    "Command",
    "EnrollSubject",
    "EnrollmentState",
    "ExpandCohort",
    "OpenCohort",
    "ReconfirmEligibility",
    "RecordConsent",
    "RecordPrescreening",
    "RecordPriorTherapy",
    "RecordScreenFailure",
    "RegisterSubject",
    "WithdrawSubject",
    "decide",
    "evolve",
    "fold",
    "initial_state",
    "make_decider",
    "subject_stream",
]


def decide(command: Command, state: EnrollmentState, trial: TrialConfig) -> list[NewEvent]:
    match command:
        case RegisterSubject():
            return screening.register(command, state)
        case RecordPrescreening():
            return screening.prescreen(command, state, trial)
        case RecordConsent():
            return screening.consent(command, state)
        case AssessEligibility():
            return screening.assess(command, state, trial)
        case RecordScreenFailure():
            return screening.screen_failure(command, state)
        case RecordPriorTherapy():
            return screening.prior_therapy(command, state, trial)
        case OpenCohort():
            return cohorts.open_cohort(command, state, trial)
        case ExpandCohort():
            return cohorts.expand_cohort(command, state, trial)
        case CloseCohort():
            return cohorts.close_cohort(command, state)
        case EnrollSubject():
            return slots.enroll(command, state)
        case WithdrawSubject():
            return slots.withdraw(command, state)
        case ReconfirmEligibility():
            return slots.reconfirm(command, state)
    raise TypeError(f"enrollment does not handle {type(command).__name__}")


def make_decider(trial: TrialConfig) -> Decider[EnrollmentState]:
    return Decider(initial_state, partial(decide, trial=trial), evolve)
