"""Builders for the unit tests: every time, id and actor is chosen here, not read from a clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from events.enrollment import (
    CohortClosed,
    CohortExpanded,
    CohortOpened,
    ConsentRecorded,
    CriterionResult,
    EligibilityAssessed,
    PrescreeningRecorded,
    Route,
    ScreenFailureCode,
    SlotReleased,
    SubjectEnrolled,
    SubjectRegistered,
    SubjectScreenFailed,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from events.envelope import GENESIS_HASH, Envelope, seal
from events.registry import EventPayload, Recorded, read
from services.decider import NewEvent

TRIAL_ID = "CART-OV-01"
SITE_ID = "SITE-01"
MONDAY_9AM = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
INVESTIGATOR = {"user_id": "dr-ortega", "role": "investigator"}
CORRELATION_ID = UUID("11111111-1111-4111-8111-111111111111")


def at(minutes: int) -> datetime:
    """Business time, ``minutes`` after the site opened on Monday at 9:00 UTC."""
    return MONDAY_9AM + timedelta(minutes=minutes)


def event_id(n: int) -> UUID:
    return UUID(int=n)


def envelope_fields(event: EventPayload, /, **overrides) -> dict:
    """Every envelope field but ``hash``, for the first event of a stream."""
    fields = {
        "event_id": event_id(1),
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "trial_id": TRIAL_ID,
        "stream_id": "subject-MSK-0001",
        "stream_seq": 1,
        "occurred_at": MONDAY_9AM,
        "recorded_at": at(1),
        "actor": INVESTIGATOR,
        "reason": None,
        "correlation_id": CORRELATION_ID,
        "causation_id": None,
        "prev_hash": GENESIS_HASH,
        "payload": event.model_dump(mode="json"),
    }
    return {**fields, **overrides}


def sealed(event: EventPayload, /, **overrides) -> Envelope:
    return seal(**envelope_fields(event, **overrides))


def history(new_events: Iterable[NewEvent]) -> list[Recorded]:
    """Seal decider output in order, chaining each stream, and read it back as a reader would."""
    heads: dict[str, tuple[int, str]] = {}
    recorded = []
    for n, new in enumerate(new_events, start=1):
        seq, prev_hash = heads.get(new.stream_id, (0, GENESIS_HASH))
        envelope = sealed(
            new.payload,
            event_id=event_id(n),
            stream_id=new.stream_id,
            stream_seq=seq + 1,
            occurred_at=new.occurred_at,
            recorded_at=new.occurred_at,
            prev_hash=prev_hash,
        )
        heads[new.stream_id] = (seq + 1, envelope.hash)
        recorded.append(read(envelope))
    return recorded


# ---------------------------------------------------------------- enrollment facts


def cohort_opened(
    cohort_id: str = "DL1-IP",
    capacity: int = 3,
    dose_level: str = "DL1",
    route: Route = "intraperitoneal",
) -> NewEvent:
    payload = CohortOpened(
        cohort_id=cohort_id,
        dose_level=dose_level,
        dose_cells_per_kg=1e6,
        route=route,
        capacity=capacity,
    )
    return NewEvent(f"cohort-{cohort_id}", payload, MONDAY_9AM)


def subject_registered(subject_id: str) -> NewEvent:
    payload = SubjectRegistered(subject_id=subject_id, site_id=SITE_ID)
    return NewEvent(f"subject-{subject_id}", payload, MONDAY_9AM)


def subject_enrolled(subject_id: str, cohort_id: str, slot: int) -> NewEvent:
    payload = SubjectEnrolled(subject_id=subject_id, cohort_id=cohort_id, slot=slot)
    return NewEvent(f"subject-{subject_id}", payload, MONDAY_9AM)


def subject_waitlisted(subject_id: str, cohort_id: str, position: int) -> NewEvent:
    payload = SubjectWaitlisted(subject_id=subject_id, cohort_id=cohort_id, position=position)
    return NewEvent(f"subject-{subject_id}", payload, MONDAY_9AM)


# ---------------------------------------------------------------- enrollment: screening and slots
# Facts of a subject's path (pre-screening -> consent -> eligibility), times before MONDAY_9AM
# unless given, so a subject built here is eligible before any enrollment command of a test.

CONSENT_SIGNED = MONDAY_9AM - timedelta(days=14)
SCREENING_STARTED = MONDAY_9AM - timedelta(days=13)


def subject_prescreened(subject_id: str, msln_ihc_percent: float = 60.0) -> NewEvent:
    payload = PrescreeningRecorded(subject_id=subject_id, msln_ihc_percent=msln_ihc_percent)
    return NewEvent(f"subject-{subject_id}", payload, CONSENT_SIGNED - timedelta(days=7))


def subject_consented(
    subject_id: str, form_version: str = "ICF-v1", signed_at: datetime = CONSENT_SIGNED
) -> NewEvent:
    payload = ConsentRecorded(subject_id=subject_id, form_version=form_version, signed_at=signed_at)
    return NewEvent(f"subject-{subject_id}", payload, signed_at)


def subject_assessed_eligible(subject_id: str) -> NewEvent:
    """An assessment whose every criterion was met (the criteria's wording is illustrative)."""
    met = CriterionResult(criterion="ecog", met=True, requirement="ECOG <= 1", evidence="ECOG 0")
    payload = EligibilityAssessed(subject_id=subject_id, criteria=(met,))
    return NewEvent(f"subject-{subject_id}", payload, SCREENING_STARTED + timedelta(days=1))


def eligible_subject(subject_id: str) -> list[NewEvent]:
    """Registered, pre-screened (MSLN 60%), consented and assessed eligible."""
    return [
        subject_registered(subject_id),
        subject_prescreened(subject_id),
        subject_consented(subject_id),
        subject_assessed_eligible(subject_id),
    ]


def subject_screen_failed(
    subject_id: str, reason_code: ScreenFailureCode = "investigator-decision"
) -> NewEvent:
    payload = SubjectScreenFailed(subject_id=subject_id, stage="screening", reason_code=reason_code)
    return NewEvent(f"subject-{subject_id}", payload, MONDAY_9AM)


def subject_withdrawn(subject_id: str, reason_code: str = "consent-withdrawn") -> NewEvent:
    payload = SubjectWithdrawn(subject_id=subject_id, reason_code=reason_code)
    return NewEvent(f"subject-{subject_id}", payload, MONDAY_9AM)


def slot_released(subject_id: str, cohort_id: str, slot: int) -> NewEvent:
    payload = SlotReleased(subject_id=subject_id, cohort_id=cohort_id, slot=slot)
    return NewEvent(f"subject-{subject_id}", payload, MONDAY_9AM)


def cohort_expanded(cohort_id: str = "DL1-IP", additional_slots: int = 3) -> NewEvent:
    payload = CohortExpanded(
        cohort_id=cohort_id, additional_slots=additional_slots, recommendation_id="REC-0001"
    )
    return NewEvent(f"cohort-{cohort_id}", payload, MONDAY_9AM)


def cohort_closed(cohort_id: str = "DL1-IP", reason: str = "3 of 3 treated, no DLT") -> NewEvent:
    payload = CohortClosed(cohort_id=cohort_id, reason=reason)
    return NewEvent(f"cohort-{cohort_id}", payload, MONDAY_9AM)
