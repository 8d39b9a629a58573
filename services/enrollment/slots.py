"""Slots: enrollment into an open cohort, the trial-wide waiting list, withdrawal, and the
re-confirmation of eligibility once the subject's product is released.

- Only an eligible, consented subject who is neither withdrawn nor screen-failed nor already
  enrolled may take a slot, in an open cohort, while enrollment is not paused by the safety
  stopping rule (DOMAIN.md section 3: a grade 5 event at least possibly related pauses
  enrollment until a documented safety review).
- The waiting list is one list for the trial, first come first served: in dose escalation a
  patient does not choose a dose, so the next free slot of any open cohort goes to whoever has
  waited longest. A slot may go to someone else only when the command gives a reason; the
  subjects passed over are recorded.
- A withdrawal before infusion releases the slot (the subject cannot be evaluated for DLT, so
  the slot is filled again); after infusion the slot stays held: the subject was treated and
  counts against the cohort and the trial's maximum. Replacing a treated but non-evaluable
  subject is the review's decision, by an expansion.
- Eligibility is re-confirmed after manufacturing, before conditioning (sibling trial
  NCT04577326, DOMAIN.md section 1), once per lot, and only for a lot of this subject that
  manufacturing released (conditionally or exceptionally after OOS) and that is not out of
  specification now.
"""

from __future__ import annotations

from events.enrollment import (
    EligibilityReconfirmed,
    SlotReleased,
    SubjectEnrolled,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from events.registry import EventPayload
from services.decider import NewEvent
from services.enrollment.commands import EnrollSubject, ReconfirmEligibility, WithdrawSubject
from services.enrollment.guards import consented, in_study, registered, subject_stream
from services.enrollment.state import EnrollmentState, Subject
from services.errors import NotFound, RuleViolated


def enroll(cmd: EnrollSubject, state: EnrollmentState) -> list[NewEvent]:
    subject = registered(state, cmd.subject_id)
    cohort = state.cohorts.get(cmd.cohort_id)
    if cohort is None:
        raise NotFound(
            "cohort-must-be-open",
            f"cohort {cmd.cohort_id} is not open",
            cohort_id=cmd.cohort_id,
        )
    if state.pause is not None:
        pause = state.pause
        raise RuleViolated(
            "enrollment-paused",
            f"enrollment is paused by the stopping rule {pause.rule} after adverse event "
            f"{pause.ae_id} (subject {pause.subject_id}) until a documented safety review",
            ae_id=pause.ae_id,
            stopping_rule=pause.rule,
        )
    _eligible(consented(in_study(subject), "be enrolled"))
    if subject.cohort_id is not None:
        raise RuleViolated(
            "one-slot-per-subject",
            f"subject {cmd.subject_id} already holds a slot in cohort {subject.cohort_id}",
            subject_id=cmd.subject_id,
            cohort_id=subject.cohort_id,
        )
    if not cohort.open:
        raise RuleViolated(
            "cohort-must-be-open",
            f"cohort {cmd.cohort_id} is closed",
            cohort_id=cmd.cohort_id,
        )
    waiting = cmd.subject_id in state.waiting
    ahead = state.waiting[: state.waiting.index(cmd.subject_id)] if waiting else state.waiting
    slot = cohort.free_slot()
    stream = subject_stream(cmd.subject_id)
    if slot is not None and (not ahead or cmd.reason is not None):
        payload: EventPayload = SubjectEnrolled(
            subject_id=cmd.subject_id,
            cohort_id=cohort.cohort_id,
            slot=slot,
            passed_over=tuple(ahead),
        )
        return [NewEvent(stream, payload, cmd.occurred_at)]
    if waiting:
        if slot is None and cmd.waitlist_if_full:
            raise RuleViolated(
                "one-waiting-list-per-subject",
                f"subject {cmd.subject_id} is already on the waiting list, at position "
                f"{len(ahead) + 1}",
                subject_id=cmd.subject_id,
                position=len(ahead) + 1,
            )
    elif cmd.waitlist_if_full:
        payload = SubjectWaitlisted(
            subject_id=cmd.subject_id,
            cohort_id=cohort.cohort_id,
            position=len(state.waiting) + 1,
        )
        return [NewEvent(stream, payload, cmd.occurred_at)]
    if slot is None:
        taken = len(cohort.slots)
        raise RuleViolated(
            "cohort-capacity",
            f"cohort {cohort.cohort_id} is full: {taken} of {cohort.capacity} slots taken",
            cohort_id=cohort.cohort_id,
            taken=taken,
            capacity=cohort.capacity,
        )
    raise RuleViolated(
        "waiting-list-first-come",
        f"{ahead[0]} is first in line for the next slot (waiting: {', '.join(ahead)}); "
        f"enroll them first, or give the reason {cmd.subject_id} goes before them",
        subject_id=cmd.subject_id,
        first_in_line=ahead[0],
        ahead=list(ahead),
    )


def withdraw(cmd: WithdrawSubject, state: EnrollmentState) -> list[NewEvent]:
    subject = registered(state, cmd.subject_id)
    consented(in_study(subject), "be withdrawn (record a screen failure instead)")
    stream = subject_stream(cmd.subject_id)
    withdrawn = SubjectWithdrawn(subject_id=cmd.subject_id, reason_code=cmd.reason_code)
    events = [NewEvent(stream, withdrawn, cmd.occurred_at)]
    if subject.holds_slot and cmd.subject_id not in state.infused:
        assert subject.cohort_id is not None and subject.slot is not None
        released = SlotReleased(
            subject_id=cmd.subject_id, cohort_id=subject.cohort_id, slot=subject.slot
        )
        events.append(NewEvent(stream, released, cmd.occurred_at))
    return events


def reconfirm(cmd: ReconfirmEligibility, state: EnrollmentState) -> list[NewEvent]:
    subject = in_study(registered(state, cmd.subject_id))
    if not subject.holds_slot:
        raise RuleViolated(
            "subject-must-hold-a-slot",
            f"subject {cmd.subject_id} holds no slot in any cohort",
            subject_id=cmd.subject_id,
        )
    if cmd.subject_id in state.infused:
        raise RuleViolated(
            "reconfirmation-before-infusion",
            f"subject {cmd.subject_id} was already infused",
            subject_id=cmd.subject_id,
        )
    lot = state.lots.get(cmd.lot_id)
    if lot is None:
        raise RuleViolated(
            "lot-must-be-released",
            f"no release of lot {cmd.lot_id} has been recorded by manufacturing",
            lot_id=cmd.lot_id,
        )
    if lot.subject_id != cmd.subject_id:
        raise RuleViolated(
            "lot-of-the-subject",
            f"lot {cmd.lot_id} was made for subject {lot.subject_id}, not {cmd.subject_id}",
            lot_id=cmd.lot_id,
            lot_subject_id=lot.subject_id,
            subject_id=cmd.subject_id,
        )
    if lot.status == "out-of-specification":
        raise RuleViolated(
            "lot-must-be-released",
            f"lot {cmd.lot_id} is out of specification ({', '.join(lot.failed_tests)}) "
            "without an exceptional release",
            lot_id=cmd.lot_id,
            failed_tests=list(lot.failed_tests),
        )
    if cmd.lot_id in subject.reconfirmed_lots:
        raise RuleViolated(
            "eligibility-reconfirmed-once-per-lot",
            f"eligibility of subject {cmd.subject_id} was already re-confirmed for lot "
            f"{cmd.lot_id}",
            subject_id=cmd.subject_id,
            lot_id=cmd.lot_id,
        )
    payload = EligibilityReconfirmed(subject_id=cmd.subject_id, lot_id=cmd.lot_id)
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]


def _eligible(subject: Subject) -> Subject:
    if not subject.eligible:
        raise RuleViolated(
            "subject-must-be-eligible",
            f"subject {subject.subject_id} has not been assessed eligible",
            subject_id=subject.subject_id,
        )
    return subject
