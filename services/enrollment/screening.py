"""A subject's way in: registration, pre-screening, consent, the eligibility assessment and the
screen failure.

Order (DOMAIN.md section 2.1): pre-screening (MSLN IHC) -> consent -> screening -> eligibility
confirmed. Registration and pre-screening are the only steps before consent (pre-screening
reads the MSLN stain of the tumour, usually archival tissue, under the site's pre-screening
consent; this service records its result, not that consent). Consent needs a pre-screening
result at or above the trial's threshold. A screen failure may be recorded at any point
before enrollment, also before consent (a subject who declines consent leaves as
"consent-declined"); after enrollment a subject leaves by withdrawal. Prior therapies (for the
washout, ``washout``) are recorded after consent, with their last dose.
"""

from __future__ import annotations

from events.enrollment import (
    ConsentRecorded,
    EligibilityAssessed,
    PrescreeningRecorded,
    PriorTherapyRecorded,
    SubjectRegistered,
    SubjectScreenFailed,
)
from services.decider import NewEvent
from services.enrollment import eligibility
from services.enrollment.commands import (
    AssessEligibility,
    RecordConsent,
    RecordPrescreening,
    RecordPriorTherapy,
    RecordScreenFailure,
    RegisterSubject,
)
from services.enrollment.guards import consented, in_study, registered, subject_stream
from services.enrollment.state import EnrollmentState
from services.errors import RuleViolated
from trial.config import TrialConfig


def register(cmd: RegisterSubject, state: EnrollmentState) -> list[NewEvent]:
    if cmd.subject_id in state.subjects:
        raise RuleViolated(
            "subject-registered-once",
            f"subject {cmd.subject_id} is already registered",
            subject_id=cmd.subject_id,
        )
    payload = SubjectRegistered(subject_id=cmd.subject_id, site_id=cmd.site_id)
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]


def prescreen(
    cmd: RecordPrescreening, state: EnrollmentState, trial: TrialConfig
) -> list[NewEvent]:
    """Below ``eligibility.msln_ihc_min_percent`` of tumour cells is a pre-screen failure,
    recorded with the percentage as evidence."""
    subject = in_study(registered(state, cmd.subject_id))
    if subject.msln_ihc_percent is not None:
        raise RuleViolated(
            "prescreening-recorded-once",
            f"subject {cmd.subject_id} already has a pre-screening result "
            f"(MSLN {subject.msln_ihc_percent:g}%)",
            subject_id=cmd.subject_id,
            msln_ihc_percent=subject.msln_ihc_percent,
        )
    stream = subject_stream(cmd.subject_id)
    recorded = PrescreeningRecorded(
        subject_id=cmd.subject_id, msln_ihc_percent=cmd.msln_ihc_percent
    )
    events = [NewEvent(stream, recorded, cmd.occurred_at)]
    result = eligibility.msln_ihc(cmd.msln_ihc_percent, trial.eligibility)
    if not result.met:
        failed = SubjectScreenFailed(
            subject_id=cmd.subject_id,
            stage="prescreening",
            reason_code="msln-below-threshold",
            failed_criteria=(result,),
        )
        events.append(NewEvent(stream, failed, cmd.occurred_at))
    return events


def consent(cmd: RecordConsent, state: EnrollmentState) -> list[NewEvent]:
    """A consent form is recorded once per version; a new version (an amended form) may be
    signed again later."""
    subject = in_study(registered(state, cmd.subject_id))
    if subject.msln_ihc_percent is None:
        raise RuleViolated(
            "prescreening-before-consent",
            f"subject {cmd.subject_id} has no pre-screening result: pre-screening (MSLN IHC) "
            "comes before consent",
            subject_id=cmd.subject_id,
        )
    if any(c.form_version == cmd.form_version for c in subject.consents):
        raise RuleViolated(
            "consent-version-recorded-once",
            f"subject {cmd.subject_id} already signed consent form {cmd.form_version}",
            subject_id=cmd.subject_id,
            form_version=cmd.form_version,
        )
    payload = ConsentRecorded(
        subject_id=cmd.subject_id, form_version=cmd.form_version, signed_at=cmd.signed_at
    )
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]


def assess(cmd: AssessEligibility, state: EnrollmentState, trial: TrialConfig) -> list[NewEvent]:
    """Every criterion with its evidence; any criterion not met is a screen failure naming
    the criteria that failed."""
    subject = consented(in_study(registered(state, cmd.subject_id)), "assess eligibility")
    if subject.eligible:
        raise RuleViolated(
            "eligibility-assessed-once",
            f"subject {cmd.subject_id} was already assessed eligible",
            subject_id=cmd.subject_id,
        )
    problem = eligibility.lab_names_problem(cmd, trial.eligibility)
    if problem:
        described = "; ".join(f"{k}: {', '.join(v)}" for k, v in problem.items())
        raise RuleViolated(
            "labs-from-trial-file",
            f"the labs must be exactly those of the trial file ({described})",
            subject_id=cmd.subject_id,
            **problem,
        )
    assert subject.msln_ihc_percent is not None and subject.first_consent is not None
    criteria = eligibility.assess(
        cmd, subject.msln_ihc_percent, subject.first_consent, trial.eligibility
    )
    stream = subject_stream(cmd.subject_id)
    events = [
        NewEvent(
            stream,
            EligibilityAssessed(subject_id=cmd.subject_id, criteria=criteria),
            cmd.occurred_at,
        )
    ]
    failed = tuple(c for c in criteria if not c.met)
    if failed:
        payload = SubjectScreenFailed(
            subject_id=cmd.subject_id,
            stage="screening",
            reason_code="criteria-not-met",
            failed_criteria=failed,
        )
        events.append(NewEvent(stream, payload, cmd.occurred_at))
    return events


def screen_failure(cmd: RecordScreenFailure, state: EnrollmentState) -> list[NewEvent]:
    subject = in_study(registered(state, cmd.subject_id))
    if subject.cohort_id is not None:
        raise RuleViolated(
            "screen-failure-before-enrollment",
            f"subject {cmd.subject_id} is enrolled in cohort {subject.cohort_id}: "
            "withdraw them instead",
            subject_id=cmd.subject_id,
            cohort_id=subject.cohort_id,
        )
    payload = SubjectScreenFailed(
        subject_id=cmd.subject_id,
        stage="screening" if subject.consents else "prescreening",
        reason_code=cmd.reason_code,
    )
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]



def prior_therapy(
    cmd: RecordPriorTherapy, state: EnrollmentState, trial: TrialConfig
) -> list[NewEvent]:
    """A prior therapy of a consented subject still in the study (its history is screening
    data, collected under consent), of a class the trial file names, last given no later than
    the day it is recorded (in the trial's zone)."""
    subject = consented(in_study(registered(state, cmd.subject_id)), "record a prior therapy")
    if cmd.therapy_class not in trial.washout:
        raise RuleViolated(
            "therapy-class-in-trial-file",
            f"prior-therapy class {cmd.therapy_class} is not one of the trial file's washout "
            f"classes ({', '.join(sorted(trial.washout))})",
            subject_id=subject.subject_id,
            therapy_class=cmd.therapy_class,
            classes=sorted(trial.washout),
        )
    recorded_on = cmd.occurred_at.astimezone(trial.zone()).date()
    if cmd.last_dose_on > recorded_on:
        raise RuleViolated(
            "last-dose-not-after-record",
            f"last dose on {cmd.last_dose_on.isoformat()} is after the day it is recorded "
            f"({recorded_on.isoformat()})",
            subject_id=subject.subject_id,
            last_dose_on=cmd.last_dose_on.isoformat(),
            recorded_on=recorded_on.isoformat(),
        )
    payload = PriorTherapyRecorded(
        subject_id=cmd.subject_id,
        therapy_class=cmd.therapy_class,
        agent=cmd.agent,
        last_dose_on=cmd.last_dose_on,
    )
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]
