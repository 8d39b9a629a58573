"""Runs a decider against its event store: one command at a time, state caught up from the topic.

Every command is decided and appended under one lock, so two commands racing for the same
slot are decided one after the other against the state the first one left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from events.envelope import Actor, from_bytes
from events.registry import EventPayload, Recorded, read
from events.signatures import RecordSigned
from events.topics import SHARED
from services.decider import NewEvent
from services.eventstore import Appended, KafkaEventStore
from trialops.kafka_io import Tail

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass(frozen=True)
class Decider(Generic[S]):
    initial_state: S
    decide: Callable[[Any, S], list[NewEvent]]
    evolve: Callable[[S, EventPayload], S]


@dataclass(frozen=True)
class Signature:
    """An electronic signature applied to every event a command appends (21 CFR 11.50): the
    signer re-authenticated for it; the time is the server's."""

    actor: Actor
    printed_name: str
    meaning: str
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


class CommandHandler(Generic[S]):
    """Decides commands for one context. ``upstream`` follows other contexts' topics read-only:
    their events are evolved into the same state, caught up to their end before each command,
    so a rule that depends on another context (a lot released, an infusion given) sees every
    fact committed before the command arrived."""

    def __init__(
        self,
        decider: Decider[S],
        store: KafkaEventStore,
        upstream: Tail | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.decider = decider
        self.store = store
        self.upstream = upstream
        self.clock = clock
        self.state: S = decider.initial_state
        self._upstream_seen: list[Recorded] = []
        self._lock = asyncio.Lock()

    async def start(self) -> int:
        history = await asyncio.to_thread(self.store.open)
        self._rebuild(history)
        await self._follow_upstream()
        return len(history)

    def _rebuild(self, history: list[Recorded]) -> None:
        state = self.decider.initial_state
        for recorded in [*self._upstream_seen, *history]:
            state = self._evolve(state, recorded.payload)
        self.state = state

    def _evolve(self, state: S, payload: EventPayload) -> S:
        # Signatures attest records; they change no decider's state.
        return state if payload.context == SHARED else self.decider.evolve(state, payload)

    async def _follow_upstream(self) -> None:
        if self.upstream is None:
            return
        new = [
            read(from_bytes(value))
            for _pos, value in await asyncio.to_thread(self.upstream.read_new)
        ]
        self._upstream_seen += new
        state = self.state
        for recorded in new:
            state = self._evolve(state, recorded.payload)
        self.state = state

    async def handle(
        self,
        command: Any,
        actor: Actor,
        *,
        correlation_id: UUID | None = None,
        reason: str | None = None,
        signature: Signature | None = None,
    ) -> list[Appended]:
        """Decide ``command`` and append its events. Raises a ``DomainError`` (nothing appended)
        or ``StoreUnavailable`` (the state is rebuilt from the topic before the next command)."""
        async with self._lock:
            if not self.store.is_open:
                log.warning("re-opening %s after a failed append", self.store.topic)
                self._rebuild(await asyncio.to_thread(self.store.open))
            await self._follow_upstream()
            new_events = self.decider.decide(command, self.state)
            if not new_events:
                return []
            envelopes = self.store.seal_all(
                new_events,
                actor=actor,
                recorded_at=self.clock(),
                correlation_id=correlation_id or uuid4(),
                reason=reason if reason is not None else getattr(command, "reason", None),
                follow_up=None if signature is None else signature.of,
            )
            appended = await asyncio.to_thread(self.store.append, envelopes)
            state = self.state
            for new in new_events:
                state = self.decider.evolve(state, new.payload)
            self.state = state
            return appended

    def close(self) -> None:
        self.store.close()
        if self.upstream is not None:
            self.upstream.close()
