"""Runs a decider against its event store, state caught up from the topic.

Commands are decided under one lock, in batches (group commit, decision 39): two commands
racing for the same slot are decided one after the other against the state the first one left,
and their events are appended together in one transaction.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from kafka.errors import KafkaError

from events.envelope import Actor, Envelope, Idempotency
from events.reading import Head, Quarantine
from events.registry import EventPayload, Recorded
from events.topics import SHARED
from infra.kafka_io import BrokerTimeout, Position, Tail
from services import metrics
from services.decider import Decider
from services.eventstore import (
    Appended,
    ContextHalted,
    KafkaEventStore,
    StoreUnavailable,
    WriterRetired,
)
from services.pending import (
    Pending,
    RequestExpired,
    Signature,
    expired,
    fail_all,
    key_reused,
    traceparents,
)
from services.snapshots import Snapshot, Upstream

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 10_000
"""Offsets of its own topic (events and commit markers) a writer appends or reads between two
snapshots (decision 42)."""
SNAPSHOT_CHECK_SECONDS = 5.0
SNAPSHOT_MIN_SECONDS = 60.0
"""At most one periodic snapshot a minute: at 1M events a snapshot takes seconds to encode."""
SNAPSHOT_ON_SHUTDOWN = 1_000
"""A clean shutdown writes a snapshot when at least this many offsets are not covered yet (a
shorter tail is read again in well under a second)."""
COMMAND_DEADLINE_SECONDS = 15.0
"""How long a command may take, queue included, before it is answered 503 undecided."""
START_DEADLINE_SECONDS = 60.0
GATHER_SECONDS = 0.010
"""How long the writer waits, after a batch of several commands, for the clients it answered
to send their next ones (``CommandHandler._gather``): their HTTP round trip, a few ms on one
machine, within an append's round trips (about 10 to 20 ms on one local broker). A lone
command never waits (issue 12, decision 73)."""

S = TypeVar("S")


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
        self._queue: list[Pending] = []
        """Commands waiting for the next batch (group commit)."""
        self._drainer: asyncio.Future[None] | None = None
        self._arrival: asyncio.Future[None] | None = None
        """What ``_gather`` waits on: done when a command joins the queue."""
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
        rebuilt = Rebuilt(self)
        count = await asyncio.to_thread(self.store.open, quarantine, rebuilt)
        self._adopt(rebuilt)
        snapshot = rebuilt.snapshot
        self._snapshot_covers = snapshot.covers if snapshot is not None else 0
        if self.store.halt is not None:
            raise ContextHalted(self.context, self.store.halt)
        self._keep_snapshots()
        return count

    def _adopt(self, rebuilt: Rebuilt[S]) -> None:
        """Take the state an open folded (``Rebuilt``): with the snapshot it resumed from, the
        snapshot's followed topics' state and positions too (decision 42)."""
        snapshot = rebuilt.snapshot
        if snapshot is not None:
            self._upstream_state = snapshot.upstream_state
            if self.upstream is not None and snapshot.upstream is not None:
                # followed topics are read again from where the snapshot's state had them
                keyring = self.upstream.reader.keyring
                self.upstream.restore(
                    snapshot.upstream.positions,
                    {key: Head(seq, h) for key, (seq, h) in snapshot.upstream.heads.items()},
                    keyring.model_copy(update={"retired": snapshot.upstream.retired}),
                )
        self._answered = rebuilt.answered
        self.state = rebuilt.state

    def _fits(self, snapshot: Snapshot) -> bool:
        """Whether ``snapshot`` follows the topics this handler follows."""
        if self.upstream is None or snapshot.upstream is None:
            return self.upstream is None and snapshot.upstream is None
        return snapshot.upstream.topics == self.upstream.topics

    # ------------------------------------------------------------------ snapshots

    _snapshot_covers = 0
    """The offset of the topic the last snapshot written or read covers."""
    _snapshots: asyncio.Future[None] | None = None
    """The task that writes snapshots while the store is open."""
    _snapshot_lock: asyncio.Lock | None = None
    """One snapshot written at a time (the periodic one, the one at shutdown)."""

    def _keep_snapshots(self) -> None:
        """Write snapshots while the store stays open (from ``_open``, which starts the task
        again after a re-open). Only a store that keeps them (a Kafka one) gets one."""
        if self.store.snapshots is None or (self._snapshots and not self._snapshots.done()):
            return
        self._snapshots = asyncio.ensure_future(self._snapshot_when_due())

    async def _snapshot_when_due(self) -> None:
        """Every ``SNAPSHOT_CHECK_SECONDS``: a snapshot once ``SNAPSHOT_EVERY`` offsets were
        appended or read since the last one (so also right after an open that read that
        many), and no sooner than ``SNAPSHOT_MIN_SECONDS`` after the last one written here
        (encoding a large state takes seconds of the process's time). Ends when the store
        closes."""
        last = -SNAPSHOT_MIN_SECONDS
        while self.store.is_open and self.store.retired is None:
            if (self.store._expected_end - self._snapshot_covers >= SNAPSHOT_EVERY
                    and time.monotonic() - last >= SNAPSHOT_MIN_SECONDS):
                last = time.monotonic()
                try:
                    await self.write_snapshot()
                except Exception:  # a snapshot is an optimisation: never a reason to stop
                    log.exception("%s: writing a snapshot failed", self.context)
            await asyncio.sleep(SNAPSHOT_CHECK_SECONDS)

    async def write_snapshot(self, newer_by: int = 1) -> Snapshot | None:
        """Write a snapshot of what this writer knows now, if it covers at least ``newer_by``
        offsets more than the last one and the context is ready. The states, heads and
        positions are taken between two batches, under the lock (references to persistent
        states and a copy of the heads); finding the anchor, encoding, signing and writing
        happen in a worker thread, off the command path. Returns it, or None when none was
        written."""
        if self._snapshot_lock is None:
            self._snapshot_lock = asyncio.Lock()
        async with self._snapshot_lock:
            return await self._write_snapshot(newer_by)

    async def _write_snapshot(self, newer_by: int) -> Snapshot | None:
        async with self._lock:
            draft = self.store.draft_snapshot()
            upstream = self.upstream
            if (draft is None or draft.covers - self._snapshot_covers < max(1, newer_by)
                    or self.problem is not None
                    or (upstream is not None and (upstream.halts or upstream.unreturned))):
                return None
            draft = replace(
                draft, state=self.state, upstream_state=self._upstream_state,
                answered=dict(self._answered),
                upstream=None if upstream is None else Upstream(
                    positions=upstream.positions(),
                    heads={k: (h.seq, h.hash) for k, h in upstream.reader.heads.items()},
                    retired=upstream.reader.keyring.retired,
                ),
            )
        started = time.monotonic()
        written = await asyncio.to_thread(self.store.write_snapshot, draft)
        if written is not None:
            self._snapshot_covers = max(self._snapshot_covers, written.covers)
            log.info("%s: snapshot of %d events written in %.1fs (offset %d)", self.context,
                     written.events, time.monotonic() - started, written.covers)
        return written

    def _remember(self, appended: list[Appended]) -> None:
        """Keep what a command with an ``Idempotency-Key`` appended, by user and key: rebuilt
        from the log at every open, so a retry after a restart gets the same answer."""
        remember(self._answered, appended)

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
            raise key_reused(idempotency)
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
        traceparent: str | None = None,
    ) -> list[Appended]:
        """Decide ``command`` and append its events by ``deadline`` (``time.monotonic``).
        Raises a ``DomainError`` (nothing appended) or ``StoreUnavailable`` (nothing decided,
        or the append's outcome unknown: the store re-opens before the next command).

        Group commit (decision 39): the command joins the queue; whoever holds the lock next
        decides everything queued, one command after another against the state the previous
        one left, and appends all their events in one transaction. A lone command is decided
        at once, as before; under load a batch forms while the previous one is appended."""
        pending = Pending(
            command, actor, correlation_id, reason, signature,
            deadline if deadline is not None else time.monotonic() + COMMAND_DEADLINE_SECONDS,
            still_wanted, idempotency, asyncio.get_running_loop().create_future(),
            traceparent=traceparent,
        )
        self._queue.append(pending)
        if self._arrival is not None and not self._arrival.done():
            self._arrival.set_result(None)
        if self._drainer is None or self._drainer.done():
            # In a context of its own: the batches it runs are no one request's (the log
            # records it writes carry no request's correlation id).
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), context=contextvars.Context()
            )
        try:
            # A caller that goes away does not cancel the batch its command is in.
            return await asyncio.shield(pending.outcome)
        except asyncio.CancelledError:
            if pending in self._queue:
                self._queue.remove(pending)
            raise

    async def _drain(self) -> None:
        """Run batches until the queue is empty, after a batch of several commands once it has
        waited for their clients (``_gather``): the only task that decides commands."""
        async with self._lock:
            answered = 0
            while True:
                if answered > 1:
                    await self._gather(len(self._queue) + answered)
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
                answered = len(batch)
                await self._run_batch(batch)

    async def _gather(self, expected: int) -> None:
        """Under load, the clients a batch answered send their next commands as soon as they
        have their answers: wait (at most ``GATHER_SECONDS``) until ``expected`` commands are
        queued, those already waiting and one from each client answered, so that they make
        one batch. Without it the clients split into groups that take turns: while one
        group's batch is appended the other queues, and each batch held half of them (16
        clients: 8 a transaction, decision 73). Only after a batch of several commands: a
        lone client's next command never waits."""
        loop = asyncio.get_running_loop()
        until = time.monotonic() + GATHER_SECONDS
        while len(self._queue) < expected:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._arrival = loop.create_future()
            try:
                await asyncio.wait_for(self._arrival, remaining)
            except TimeoutError:
                return
            finally:
                self._arrival = None

    async def _run_batch(self, batch: list[Pending]) -> None:
        """Decide and append ``batch``; every command in it gets its own outcome."""
        batch = [p for p in batch if not expired(p)]
        if not batch:
            return
        try:
            await self._prepare(max(p.deadline for p in batch))
            decided, envelopes, state = self._decide_all(batch)
            if envelopes:
                started = time.monotonic()
                appended = await self._append(
                    envelopes, max(p.deadline for p, *_ in decided), traceparents(decided,
                                                                                   envelopes),
                )
                metrics.appended(self.context, len(decided), time.monotonic() - started)
                self._remember(appended)
                self.state = state
                for p, first, count in decided:
                    p.succeed(appended[first:first + count])
            self.problem = None
        except (KafkaError, BrokerTimeout) as exc:
            # Whatever the client raised on the way (a broker gone, a bootstrap that timed
            # out): nothing was decided, the commands get 503.
            self.problem = f"{self.context}: the broker did not answer: {exc!r}"
            self.store.close()
            fail_all(batch, StoreUnavailable(self.problem))
        except StoreUnavailable as exc:
            self.problem = str(exc)
            log.warning("%s: %d command(s) not executed: %s", self.context,
                        sum(not p.outcome.done() for p in batch), exc)
            fail_all(batch, exc)
        except Exception as exc:  # a fault of this code: the batch's commands are answered
            log.exception("%s: a batch failed", self.context)
            fail_all(batch, exc)

    async def _prepare(self, deadline: float) -> None:
        """Before deciding: the store open, the followed topics read to their end, and this
        writer still the only one."""
        store = self.store
        if store.retired is not None:
            raise WriterRetired(store.retired)
        if not store.is_open or store.halt is not None:
            log.warning("opening %s before the command", store.topic)
            await self._open()
        # Both ask the broker for end offsets, on clients of their own: at once, not in turn.
        outcomes = await asyncio.gather(
            self._follow_upstream(deadline), asyncio.to_thread(store.check_sole_writer),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _decide_all(
        self, batch: list[Pending]
    ) -> tuple[list[tuple[Pending, int, int]], list[Envelope], S]:
        """Decide the commands in order against the state the previous ones left; a refused
        command gets its error and leaves the state, the heads and the others as they were.
        Returns the decided commands (with their slice of the envelopes), the envelopes to
        append and the state once they are."""
        state = self.state
        heads: dict[str, tuple[int, str]] = {}
        envelopes: list[Envelope] = []
        decided: list[tuple[Pending, int, int]] = []
        keyed: dict[tuple[str, str], Pending] = {}
        for p in batch:
            if expired(p):
                continue
            try:
                answered = self._answer_of_retry(p.actor, p.idempotency)
                if answered is not None:
                    p.succeed(answered)
                    continue
                key = None if p.idempotency is None else (p.actor.user_id, p.idempotency.key)
                first = None if key is None else keyed.get(key)
                if first is not None and p.idempotency is not None:
                    if first.idempotency != p.idempotency:
                        raise key_reused(p.idempotency)
                    first.copies.append(p)  # a retry of a command in this very batch
                    continue
                new_events = self.decider.decide(p.command, state)
                sealed = self.store.seal_all(
                    new_events,
                    actor=p.actor,
                    recorded_at=self.clock(),
                    correlation_id=p.correlation_id or uuid4(),
                    reason=p.reason if p.reason is not None else getattr(p.command, "reason",
                                                                         None),
                    follow_up=None if p.signature is None else p.signature.of,
                    idempotency=p.idempotency,
                    pending=heads,
                ) if new_events else []
                for new in new_events:
                    state = self.decider.evolve(state, new.payload)
            except Exception as exc:  # a refusal (DomainError) or a fault: this command only
                p.fail(exc)
                continue
            if key is not None:
                keyed[key] = p
            if not sealed:
                p.succeed([])
                continue
            decided.append((p, len(envelopes), len(sealed)))
            envelopes += sealed
        return decided, envelopes, state

    async def _append(
        self, envelopes: list[Envelope], deadline: float,
        traceparents: dict[UUID, str] | None = None,
    ) -> list[Appended]:
        store = self.store
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RequestExpired("the deadline passed before the append: nothing was appended")
        append = asyncio.ensure_future(
            asyncio.to_thread(store.append, envelopes, traceparents=traceparents)
            if traceparents else asyncio.to_thread(store.append, envelopes)
        )
        done, _ = await asyncio.wait({append}, timeout=remaining)
        if not done:
            # The outcome is unknown: the store re-opens (fencing, catch-up) before the next
            # command, which settles it.
            store.close()
            raise StoreUnavailable(
                f"append to {store.topic} did not finish by the deadline; its outcome is "
                "settled by the next command's catch-up (retry with the same Idempotency-Key)"
            )
        return append.result()

    def close(self) -> None:
        self.store.close()
        if self.upstream is not None:
            self.upstream.close()


Answered = dict[tuple[str, str], tuple[str, list[Appended]]]
"""What commands with an ``Idempotency-Key`` appended, by user and key: the request's digest
and the events."""


def remember(answered: Answered, appended: list[Appended]) -> None:
    """Add to ``answered`` what ``appended`` holds of commands with an ``Idempotency-Key``."""
    for item in appended:
        envelope = item.envelope
        if envelope.idempotency is not None:
            key = (envelope.actor.user_id, envelope.idempotency.key)
            first: tuple[str, list[Appended]] = (envelope.idempotency.request_sha256, [])
            request, earlier = answered.get(key, first)
            answered[key] = (request, [*earlier, item])


class Rebuilt(Generic[S]):
    """A writer's state folded as its open reads the topic (``services.eventstore.Folding``,
    decision 86): onto the snapshot it resumes from (its states and idempotency answers,
    decision 42), else onto the followed topics' state (upstream facts first, as they were
    folded when followed: a state may not depend on the order of events from different
    topics, services/enrollment/state.py). The handler takes it (``_adopt``) once the open
    has read everything; an open that fails leaves the handler's state as it was."""

    def __init__(self, handler: CommandHandler[S]) -> None:
        self.handler = handler
        self.snapshot: Snapshot | None = None
        self.state: S = handler._upstream_state
        self.answered: Answered = {}

    def begin(self, snapshot: Snapshot | None) -> bool:
        if snapshot is not None and not self.handler._fits(snapshot):
            log.warning("%s: its snapshot follows other topics than this service does: "
                        "reading its topic from the start", self.handler.context)
            return False
        self.snapshot = snapshot
        if snapshot is None:
            self.state, self.answered = self.handler._upstream_state, {}
        else:
            self.state, self.answered = snapshot.state, dict(snapshot.answered)
        return True

    def add(self, position: Position, recorded: Recorded) -> None:
        self.state = self.handler._evolve(self.state, recorded.payload)
        remember(self.answered, [Appended(recorded.envelope, position)])
