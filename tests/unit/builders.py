"""Builders for the unit tests: every time, id and actor is chosen here, not read from a clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from events.enrollment import CohortOpened, SubjectEnrolled, SubjectRegistered, SubjectWaitlisted
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
    route: str = "intraperitoneal",
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
