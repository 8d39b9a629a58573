"""Runs a decider against its event store: one command at a time, state caught up from the topic.

Every command is decided and appended under one lock, so two commands racing for the same
slot are decided one after the other against the state the first one left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from kafka.errors import KafkaError

from events.envelope import Actor, Idempotency
from events.reading import Quarantine
from events.registry import EventPayload, Recorded
from events.signatures import Meaning, RecordSigned
from events.topics import SHARED
from infra.kafka_io import BrokerTimeout, Position, Tail
from services.decider import Decider, NewEvent
from services.errors import DomainError
from services.eventstore import (
    Appended,
    ContextHalted,
    KafkaEventStore,
    StoreUnavailable,
    WriterRetired,
)

log = logging.getLogger(__name__)

COMMAND_DEADLINE_SECONDS = 15.0
"""How long a command may take, queue included, before it is answered 503 undecided."""
START_DEADLINE_SECONDS = 60.0

S = TypeVar("S")


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


class CommandHandler(Generic[S]):
    """Decides commands for one context. ``upstream`` follows other contexts' topics read-only:
    their events are evolved into the same state, caught up to their end before each command,
    so a rule that depends on another context (a lot released, an infusion given) sees every
    fact committed before the command arrived.

    Every command has a deadline: past it, at any step (queued for the lock, reading the
    followed topics, appending), the command is answered 503 and nothing is decided on stale
    facts. A context whose topics hold an unreadable record decides nothing until it is
    quarantined (events/reading.py); a writer that was fenced is retired for good."""

    def __init__(
        self,
        decider: Decider[S],
        store: KafkaEventStore,
        upstream: Tail | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        context: str = "",
        quarantine: Callable[[], Quarantine] = Quarantine,
    ):
        self.decider = decider
        self.store = store
        self.upstream = upstream
        self.clock = clock
        self.context = context or store.topic
        self.load_quarantine = quarantine
        self.state: S = decider.initial_state
        self._upstream_state: S = decider.initial_state
        """The followed topics' events alone, folded: what a re-open starts its own history
        from. A state, not the events, so it grows with the facts, not with the upstream log."""
        self._answered: dict[tuple[str, str], tuple[str, list[Appended]]] = {}
        self._lock = asyncio.Lock()
        self.problem: str | None = "not started"
        """Why the context is not ready (None when it is)."""

    async def start(self) -> int:
        """Open the store and catch up. A broker that does not answer or an unreadable record
        does not stop the process: the context reports not ready and retries on a command."""
        async with self._lock:
            try:
                count = await self._open()
                await self._follow_upstream(time.monotonic() + START_DEADLINE_SECONDS)
            except (StoreUnavailable, KafkaError, BrokerTimeout) as exc:
                self.problem = str(exc)
                log.error("%s is not ready: %s", self.context, exc)
                return 0
            self.problem = None
            return count

    async def recover(self) -> None:
        """Try again to become ready (a broker back, a record quarantined); a retired writer
        stays retired. The services call it every few seconds while a context is not ready."""
        if self.store.retired is not None or self.readiness()["ready"]:
            return
        async with self._lock:
            try:
                if not self.store.is_open or self.store.halt is not None:
                    await self._open()
                await self._follow_upstream(time.monotonic() + COMMAND_DEADLINE_SECONDS)
            except (StoreUnavailable, KafkaError, BrokerTimeout) as exc:
                if str(exc) != self.problem:
                    log.warning("%s is still not ready: %s", self.context, exc)
                self.problem = str(exc)
                return
            self.problem = None

    async def _open(self) -> int:
        quarantine = await asyncio.to_thread(self.load_quarantine)
        history = await asyncio.to_thread(self.store.open, quarantine)
        self._rebuild(history)
        if self.store.halt is not None:
            raise ContextHalted(self.context, self.store.halt)
        return len(history)

    def _rebuild(self, history: list[tuple[Position, Recorded]]) -> None:
        # Upstream facts first, as they were folded when followed: a state may not depend on
        # the order of events from different topics (services/enrollment/state.py).
        state = self._upstream_state
        self._answered = {}
        for position, recorded in history:
            state = self._evolve(state, recorded.payload)
            self._remember([Appended(recorded.envelope, position)])
        self.state = state

    def _remember(self, appended: list[Appended]) -> None:
        """Keep what a command with an ``Idempotency-Key`` appended, by user and key: rebuilt
        from the log at every open, so a retry after a restart gets the same answer."""
        for item in appended:
            envelope = item.envelope
            if envelope.idempotency is not None:
                key = (envelope.actor.user_id, envelope.idempotency.key)
                first: tuple[str, list[Appended]] = (envelope.idempotency.request_sha256, [])
                request, earlier = self._answered.get(key, first)
                self._answered[key] = (request, [*earlier, item])

    def _answer_of_retry(self, actor: Actor, idempotency: Idempotency | None):
        """The events the first request with this key appended; ``IdempotencyKeyReused`` when
        the key came with another request; None when the key is new."""
        if idempotency is None:
            return None
        found = self._answered.get((actor.user_id, idempotency.key))
        if found is None:
            return None
        request, appended = found
        if request != idempotency.request_sha256:
            raise IdempotencyKeyReused(
                "idempotency-key-reused",
                f"Idempotency-Key {idempotency.key!r} was first used with another request; "
                "use a new key for a new request",
                key=idempotency.key,
            )
        return appended

    def _evolve(self, state: S, payload: EventPayload) -> S:
        # Signatures attest records; they change no decider's state.
        return state if payload.context == SHARED else self.decider.evolve(state, payload)

    async def _follow_upstream(self, deadline: float) -> None:
        """Evolve what the followed topics committed since the last call. At an unreadable
        record the quarantine is read once more (it may have been set aside since); if it still
        stands there, nothing is decided (``ContextHalted``)."""
        if self.upstream is None:
            return
        for attempt in range(2):
            if attempt:
                self.upstream.resume(await asyncio.to_thread(self.load_quarantine))
            try:
                new = [recorded for _where, recorded in
                       await asyncio.to_thread(self.upstream.read_new, deadline)]
            except BrokerTimeout as exc:
                raise StoreUnavailable(f"{self.context}: {exc}") from exc
            state, upstream = self.state, self._upstream_state
            for recorded in new:
                state = self._evolve(state, recorded.payload)
                upstream = self._evolve(upstream, recorded.payload)
            self.state, self._upstream_state = state, upstream
            if not self.upstream.halts:
                return
        raise ContextHalted(self.context, self.upstream.halts[0])

    def readiness(self) -> dict[str, Any]:
        """Whether the context takes commands, and why not."""
        store = self.store
        if store.retired is not None:
            problem: str | None = store.retired
        elif store.halt is not None:
            problem = ContextHalted(self.context, store.halt).args[0]
        elif self.upstream is not None and self.upstream.halts:
            problem = ContextHalted(self.context, self.upstream.halts[0]).args[0]
        else:
            problem = self.problem
        return {"ready": problem is None, "problem": problem, "topic": store.topic}

    async def handle(
        self,
        command: Any,
        actor: Actor,
        *,
        correlation_id: UUID | None = None,
        reason: str | None = None,
        signature: Signature | None = None,
        deadline: float | None = None,
        still_wanted: Callable[[], bool] = lambda: True,
        idempotency: Idempotency | None = None,
    ) -> list[Appended]:
        """Decide ``command`` and append its events by ``deadline`` (``time.monotonic``).
        Raises a ``DomainError`` (nothing appended) or ``StoreUnavailable`` (nothing decided,
        or the append's outcome unknown: the store re-opens before the next command)."""
        deadline = deadline if deadline is not None else time.monotonic() + COMMAND_DEADLINE_SECONDS
        async with self._lock:
            if time.monotonic() >= deadline or not still_wanted():
                raise RequestExpired(
                    "the request waited past its deadline or its client has gone: not executed"
                )
            try:
                appended = await self._decide_and_append(
                    command, actor, correlation_id, reason, signature, deadline, idempotency
                )
            except (KafkaError, BrokerTimeout) as exc:
                # Whatever the client raised on the way (a broker gone, a bootstrap that timed
                # out): nothing was decided, the command gets 503.
                self.problem = f"{self.context}: the broker did not answer: {exc!r}"
                self.store.close()
                raise StoreUnavailable(self.problem) from exc
            except StoreUnavailable as exc:
                self.problem = str(exc)
                log.warning("%s: command not executed: %s", self.context, exc)
                raise
            self.problem = None
            return appended

    async def _decide_and_append(self, command, actor, correlation_id, reason, signature,
                                 deadline: float, idempotency) -> list[Appended]:
        store = self.store
        if store.retired is not None:
            raise WriterRetired(store.retired)
        if not store.is_open or store.halt is not None:
            log.warning("opening %s before the command", store.topic)
            await self._open()
        await self._follow_upstream(deadline)
        await asyncio.to_thread(store.check_sole_writer)
        answered = self._answer_of_retry(actor, idempotency)
        if answered is not None:
            return answered
        new_events = self.decider.decide(command, self.state)
        if not new_events:
            return []
        envelopes = store.seal_all(
            new_events,
            actor=actor,
            recorded_at=self.clock(),
            correlation_id=correlation_id or uuid4(),
            reason=reason if reason is not None else getattr(command, "reason", None),
            follow_up=None if signature is None else signature.of,
            idempotency=idempotency,
        )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RequestExpired("the deadline passed before the append: nothing was appended")
        append = asyncio.ensure_future(asyncio.to_thread(store.append, envelopes))
        done, _ = await asyncio.wait({append}, timeout=remaining)
        if not done:
            # The outcome is unknown: the store re-opens (fencing, catch-up) before the next
            # command, which settles it.
            store.close()
            raise StoreUnavailable(
                f"append to {store.topic} did not finish by the deadline; its outcome is "
                "settled by the next command's catch-up (retry with the same Idempotency-Key)"
            )
        appended = append.result()
        self._remember(appended)
        state = self.state
        for new in new_events:
            state = self.decider.evolve(state, new.payload)
        self.state = state
        return appended

    def close(self) -> None:
        self.store.close()
        if self.upstream is not None:
            self.upstream.close()
