"""The preconditions shared by dosing's commands: each raises a domain error that names its
rule and the values (rules and sources in ``services.dosing.decider``)."""

from __future__ import annotations

from datetime import datetime

from services.dosing.state import DosingState, Lot, Subject
from services.errors import NotFound, RuleViolated


def treatable_subject(state: DosingState, subject_id: str, consequence: str) -> Subject:
    """Enrolled in a cohort, not withdrawn, not infused yet."""
    subject = state.subject(subject_id)
    if subject.cohort_id is None:
        raise NotFound(
            "subject-must-be-enrolled",
            f"subject {subject_id} is not enrolled in a cohort; {consequence}",
            subject_id=subject_id,
        )
    if subject.withdrawn:
        raise RuleViolated(
            "subject-must-not-be-withdrawn",
            f"subject {subject_id} was withdrawn from the study; {consequence}",
            subject_id=subject_id,
        )
    if subject.infused_lot is not None:
        raise RuleViolated(
            "one-infusion-per-subject",
            f"subject {subject_id} was already infused with lot {subject.infused_lot}; "
            f"{consequence}",
            subject_id=subject_id,
            infused_lot=subject.infused_lot,
        )
    return subject


def dosing_not_paused(state: DosingState, subject_id: str, consequence: str) -> None:
    """No stopping-rule pause stands: the default stopping rule (DOMAIN.md 3: a grade 5 event
    at least possibly related) suspends enrollment and dosing until a documented safety review,
    which the safety service records as ``EnrollmentResumed``."""
    if not state.pauses:
        return
    first = state.pauses[0]
    ae_ids = [pause.ae_id for pause in state.pauses]
    raise RuleViolated(
        "dosing-paused",
        f"dosing is paused by the stopping rule {first.rule} after adverse event(s) "
        f"{', '.join(ae_ids)} until a documented safety review; {consequence} for subject "
        f"{subject_id}",
        subject_id=subject_id,
        ae_ids=ae_ids,
        stopping_rule=first.rule,
    )


def lot_of_subject(lot: Lot, subject: Subject) -> None:
    if lot.subject_id is not None and lot.subject_id != subject.subject_id:
        raise RuleViolated(
            "lot-must-belong-to-subject",
            f"lot {lot.lot_id} was made for subject {lot.subject_id}, "
            f"not for subject {subject.subject_id}",
            lot_id=lot.lot_id,
            lot_subject_id=lot.subject_id,
            subject_id=subject.subject_id,
        )


def lot_available(lot: Lot, consequence: str) -> None:
    """Released (conditionally or not) or exceptionally released, and not out of specification
    since (DOMAIN.md 2.3-2.4)."""
    if lot.available:
        return
    if lot.release == "out-of-specification":
        failed = ", ".join(lot.failed_tests)
        when = " after its release" if lot.failed_after_release else ""
        message = (
            f"lot {lot.lot_id} is out of specification ({failed}){when} "
            f"with no exceptional release; {consequence}"
        )
    else:
        seen = lot.last_manufacturing_event or "none on record"
        message = (
            f"lot {lot.lot_id} is not released (last manufacturing event: {seen}); {consequence}"
        )
    raise RuleViolated(
        "lot-must-be-released",
        message,
        lot_id=lot.lot_id,
        state=lot.release,
        failed_tests=list(lot.failed_tests),
    )


def eligibility_reconfirmed(subject: Subject, lot: Lot, consequence: str) -> None:
    if lot.lot_id not in subject.reconfirmed_for_lots:
        raise RuleViolated(
            "eligibility-must-be-reconfirmed",
            f"eligibility of subject {subject.subject_id} has not been re-confirmed after the "
            f"manufacture of lot {lot.lot_id}; {consequence}",
            subject_id=subject.subject_id,
            lot_id=lot.lot_id,
            reconfirmed_for_lots=list(subject.reconfirmed_for_lots),
        )


def conditioning_complete(subject: Subject, lot: Lot, configured_days: int) -> None:
    days = len(subject.conditioning)
    if days < configured_days:
        raise RuleViolated(
            "conditioning-must-be-complete",
            f"subject {subject.subject_id} has {days} of {configured_days} "
            f"conditioning days recorded; no infusion can be recorded",
            subject_id=subject.subject_id,
            recorded_days=days,
            configured_days=configured_days,
        )
    if subject.conditioning_lot != lot.lot_id:
        raise RuleViolated(
            "conditioning-must-be-complete",
            f"subject {subject.subject_id} was conditioned for lot {subject.conditioning_lot}, "
            f"not for lot {lot.lot_id}; no infusion can be recorded",
            subject_id=subject.subject_id,
            lot_id=lot.lot_id,
            conditioning_lot=subject.conditioning_lot,
        )


def bedside_checked_by_two(subject: Subject, lot: Lot, *, before: datetime) -> None:
    """Two different people checked the lot at the bedside, at or before the infusion time."""
    checks = subject.bedside_checks.get(lot.lot_id, ())
    in_time = {check.verified_by for check in checks if check.verified_at <= before}
    if len(in_time) >= 2:
        return
    everyone = subject.checked_by(lot.lot_id)
    if len(set(everyone)) >= 2:
        raise RuleViolated(
            "bedside-coi-before-infusion",
            f"lot {lot.lot_id} was checked at the bedside by {' and '.join(everyone)}, but not "
            f"both at or before the infusion at {before.isoformat()}",
            lot_id=lot.lot_id,
            verified_by=list(everyone),
            infused_at=before.isoformat(),
        )
    who = " and ".join(everyone) or "nobody"
    raise RuleViolated(
        "bedside-coi-by-two-people",
        f"lot {lot.lot_id} was checked at the bedside by {who}; two different people "
        f"must check it; it cannot be infused",
        lot_id=lot.lot_id,
        verified_by=list(everyone),
    )
