"""A command on its way through a context's batch (group commit, decision 39): what it asks,
by when, and the outcome its caller awaits; the errors a batch answers a command with.

services/runtime.py runs the batches; this module holds what one command carries through them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from events.envelope import Actor, Envelope, Idempotency
from events.signatures import Meaning, RecordSigned
from services.decider import NewEvent
from services.errors import DomainError
from services.eventstore import Appended, StoreUnavailable


@dataclass(frozen=True)
class Signature:
    """An electronic signature applied to every event a command appends (21 CFR 11.50): the
    signer re-authenticated for it; the time is the server's."""

    actor: Actor
    printed_name: str
    meaning: Meaning
    signed_at: datetime

    def of(self, envelope) -> list[NewEvent]:
        payload = RecordSigned(
            signed_event_id=envelope.event_id,
            signed_event_type=envelope.event_type,
            signed_hash=envelope.hash,
            signer_id=self.actor.user_id,
            printed_name=self.printed_name,
            role=self.actor.role,
            meaning=self.meaning,
            signed_at=self.signed_at,
        )
        return [NewEvent(envelope.stream_id, payload, self.signed_at)]


class IdempotencyKeyReused(DomainError):
    """The same Idempotency-Key with a different request (HTTP 422)."""

    status = 422


class RequestExpired(StoreUnavailable):
    """The request waited past its deadline, or its client has gone: it is not executed."""

    rule = "request-expired"


@dataclass(eq=False)
class Pending:
    """A command waiting for its turn in a batch, and its outcome."""

    command: Any
    actor: Actor
    correlation_id: UUID | None
    reason: str | None
    signature: Signature | None
    deadline: float
    still_wanted: Callable[[], bool]
    idempotency: Idempotency | None
    outcome: asyncio.Future[list[Appended]]
    copies: list[Pending] = field(default_factory=list)
    """Retries of this command (same user and Idempotency-Key) in the same batch."""
    traceparent: str | None = None
    """The caller's ``traceparent``, continued in the records' headers (events/cloudevents.py)."""

    def succeed(self, appended: list[Appended]) -> None:
        for p in (self, *self.copies):
            if not p.outcome.done():
                p.outcome.set_result(appended)

    def fail(self, exc: BaseException) -> None:
        for p in (self, *self.copies):
            if not p.outcome.done():
                p.outcome.set_exception(exc)


def expired(p: Pending) -> bool:
    """True (and the command answered) when it waited past its deadline or its client left."""
    if time.monotonic() < p.deadline and p.still_wanted():
        return False
    p.fail(RequestExpired(
        "the request waited past its deadline or its client has gone: not executed"
    ))
    return True


def traceparents(
    decided: list[tuple[Pending, int, int]], envelopes: list[Envelope]
) -> dict[UUID, str]:
    """By event id, the ``traceparent`` of the caller whose command appended the event."""
    return {
        envelope.event_id: p.traceparent
        for p, first, count in decided if p.traceparent is not None
        for envelope in envelopes[first:first + count]
    }


def fail_all(batch: list[Pending], exc: BaseException) -> None:
    for p in batch:
        p.fail(exc)


def key_reused(idempotency: Idempotency) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        "idempotency-key-reused",
        f"Idempotency-Key {idempotency.key!r} was first used with another request; "
        "use a new key for a new request",
        key=idempotency.key,
    )
