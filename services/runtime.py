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

from events.envelope import Actor
from events.registry import EventPayload
from services.decider import NewEvent
from services.eventstore import Appended, KafkaEventStore

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass(frozen=True)
class Decider(Generic[S]):
    initial_state: S
    decide: Callable[[Any, S], list[NewEvent]]
    evolve: Callable[[S, EventPayload], S]


class CommandHandler(Generic[S]):
    def __init__(
        self,
        decider: Decider[S],
        store: KafkaEventStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.decider = decider
        self.store = store
        self.clock = clock
        self.state: S = decider.initial_state
        self._lock = asyncio.Lock()

    async def start(self) -> int:
        history = await asyncio.to_thread(self.store.open)
        self._rebuild(history)
        return len(history)

    def _rebuild(self, history) -> None:
        state = self.decider.initial_state
        for recorded in history:
            state = self.decider.evolve(state, recorded.payload)
        self.state = state

    async def handle(
        self,
        command: Any,
        actor: Actor,
        *,
        correlation_id: UUID | None = None,
        reason: str | None = None,
    ) -> list[Appended]:
        """Decide ``command`` and append its events. Raises a ``DomainError`` (nothing appended)
        or ``StoreUnavailable`` (the state is rebuilt from the topic before the next command)."""
        async with self._lock:
            if not self.store.is_open:
                log.warning("re-opening %s after a failed append", self.store.topic)
                self._rebuild(await asyncio.to_thread(self.store.open))
            new_events = self.decider.decide(command, self.state)
            if not new_events:
                return []
            envelopes = self.store.seal_all(
                new_events,
                actor=actor,
                recorded_at=self.clock(),
                correlation_id=correlation_id or uuid4(),
                reason=reason,
            )
            appended = await asyncio.to_thread(self.store.append, envelopes)
            state = self.state
            for new in new_events:
                state = self.decider.evolve(state, new.payload)
            self.state = state
            return appended

    def close(self) -> None:
        self.store.close()
