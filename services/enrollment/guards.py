"""Checks shared by the enrollment decisions: where a subject stands on their path."""

from __future__ import annotations

from services.enrollment.state import EnrollmentState, Subject
from services.errors import NotFound, RuleViolated


def subject_stream(subject_id: str) -> str:
    return f"subject-{subject_id}"


def cohort_stream(cohort_id: str) -> str:
    return f"cohort-{cohort_id}"


def registered(state: EnrollmentState, subject_id: str) -> Subject:
    subject = state.subjects.get(subject_id)
    if subject is None:
        raise NotFound(
            "subject-must-be-registered",
            f"subject {subject_id} is not registered",
            subject_id=subject_id,
        )
    return subject


def in_study(subject: Subject) -> Subject:
    """A withdrawn or screen-failed subject's path has ended: nothing more happens to them
    under this code (a re-screened patient is registered again under a new code)."""
    if subject.withdrawn is not None:
        raise RuleViolated(
            "subject-withdrawn",
            f"subject {subject.subject_id} was withdrawn ({subject.withdrawn})",
            subject_id=subject.subject_id,
            reason_code=subject.withdrawn,
        )
    if subject.screen_failed is not None:
        raise RuleViolated(
            "subject-screen-failed",
            f"subject {subject.subject_id} failed screening ({subject.screen_failed}); "
            "a re-screened patient is registered again under a new code",
            subject_id=subject.subject_id,
            reason_code=subject.screen_failed,
        )
    return subject


def consented(subject: Subject, doing: str) -> Subject:
    """Informed consent before any study procedure (DOMAIN.md section 1). Only registration
    and pre-screening, and closing a subject's path as a screen failure, come before it."""
    if not subject.consents:
        raise RuleViolated(
            "consent-before-study-procedures",
            f"subject {subject.subject_id} has not signed the informed consent: "
            f"cannot {doing} (only registration and pre-screening come before consent)",
            subject_id=subject.subject_id,
        )
    return subject
