"""The writers this instance runs for the trials whose partitions the writers' group gives it.

One term of office per trial: when the group gives this instance a trial's partition
(services/writer_group.py) it builds that trial's ``CommandHandler`` of every context afresh,
as a process start would (each fences the previous writer of the partition and reads it); when
the group moves the partition away it writes their snapshots and closes them. A request for a
trial whose partition another instance holds goes to that instance (``forward_unheld``,
decisions 59 and 60).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from infra.forwarding import FORWARDED_BY, ask, holder_problem
from services.http import CORRELATION, PUBLIC_PATHS, contexts_readiness, ok, problem
from services.runtime import COMMAND_DEADLINE_SECONDS, SNAPSHOT_ON_SHUTDOWN, CommandHandler
from services.writer_group import Holding
from trial.config import TrialConfigError, trial_partitions

log = logging.getLogger(__name__)

RECOVER_EVERY_SECONDS = 3.0
"""How often a context that is not ready tries again (a broker back, a record quarantined)."""
FORWARD_SECONDS = COMMAND_DEADLINE_SECONDS + 5.0
"""How long a command passed to the holder may take: its own deadline and a little more."""
PASSED_ON = ("Authorization", "Content-Type", "Accept", "Idempotency-Key")
"""The caller's headers a passed-on request carries (with its correlation): the holder checks
the token and the key itself."""
TRIAL_PATH = re.compile(r"^/trials/([^/]+)(/.*)$")
"""``/trials/<trial id>/<context route>``: a command for one trial of the deployment."""

Handlers = dict[str, CommandHandler]


class Writers:
    """The handlers of the trials held here, by trial (a trial absent: not held here).
    ``make(trial_id, partition)`` builds a trial's fresh set, blocking (their clients
    connect); ``started(trial_id, handlers)`` runs once they are open (the trial's access log's
    first users)."""

    def __init__(
        self,
        trials: Sequence[str],
        make: Callable[[str, int], Handlers],
        started: Callable[[str, Handlers], Awaitable[None]],
        own_url: str,
    ):
        self.trials = sorted(trials)
        self.make = make
        self.started = started
        self.own_url = own_url.rstrip("/")
        self.terms: dict[str, Handlers] = {}
        self.holding = Holding()
        self.placement: dict[str, int] | None = None
        """Each trial's partition, once the group has said how many the topics have."""
        self._placed_for = 0
        self.term_partition: dict[str, int] = {}
        """The partition each held trial's writers write."""
        self.problem: str | None = None
        """Why no trial can be held (two trials on one partition), once known."""
        self._noted = asyncio.Event()
        self._recovering: dict[str, asyncio.Future[None]] = {}
        self._next_word: asyncio.Future[None] | None = None
        """Done at the group's next word (``next_word``)."""

    # ------------------------------------------------------------------ the group's say

    def note(self, holding: Holding) -> None:
        """What the group said (called on the event loop, from the group's thread)."""
        self.holding = holding
        self._noted.set()
        if self._next_word is not None and not self._next_word.done():
            self._next_word.set_result(None)
        self._next_word = None

    def next_word(self) -> asyncio.Future[None]:
        """A future done when the group next says who holds what."""
        if self._next_word is None:
            self._next_word = asyncio.get_running_loop().create_future()
        return self._next_word

    def moved_from(self, trial_id: str, holder: str) -> bool:
        """Whether the group has given ``trial_id``'s partition to a member other than
        ``holder`` (while it rebalances, nothing has moved yet)."""
        return self.holding.settled and self.holder(trial_id) != holder

    def holds(self, trial_id: str) -> bool:
        return trial_id in self.terms

    def holder(self, trial_id: str) -> str | None:
        """The URL of the member holding ``trial_id``'s partition, as the group said last."""
        if self.placement is None or trial_id not in self.placement:
            return None
        return self.holding.owners.get(self.placement[trial_id])

    async def first_word(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the group's first assignment that shares the
        partitions out, and act on it. An assignment made before the leader had the topics'
        metadata gives nothing (``partitions`` 0; the leader rejoins when it comes): a lone
        instance would then answer its first commands 503 "rebalancing" although it is about
        to hold every trial."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (not self.holding.settled or self.holding.partitions == 0) and (
            loop.time() < deadline
        ):
            self._noted.clear()
            try:
                await asyncio.wait_for(self._noted.wait(), deadline - loop.time())
            except TimeoutError:
                break
        await self.settle()

    async def follow(self) -> None:
        """Act on every word of the group, for as long as the app runs."""
        while True:
            await self._noted.wait()
            self._noted.clear()
            try:
                await self.settle()
            except Exception:  # a failed term must not end the following
                log.exception("writers: acting on the group's assignment failed")

    async def settle(self) -> None:
        if not self.holding.settled:
            return  # rebalancing: what is held stays held until the group has said
        count = self.holding.partitions
        if count < 0:
            self.problem = ("the context topics do not have one partition count: "
                            f"{dict(sorted(self.holding.counts.items()))}; a trial's partition "
                            "must be the same number in each (decision 60)")
        if count <= 0:
            if self.problem:
                log.error("writers: no trial is written: %s", self.problem)
            await self.release_all()
            return
        if self.placement is None or self._placed_for != count:
            try:
                self.placement = trial_partitions(self.trials, count)
                self._placed_for, self.problem = count, None
            except TrialConfigError as exc:
                self.placement, self.problem = None, str(exc)
                log.error("writers: no trial is written: %s", exc)
                await self.release_all()
                return
        wanted = {t for t, p in self.placement.items() if p in self.holding.held}
        for trial_id in sorted(set(self.terms)):
            if trial_id not in wanted or self.term_partition[trial_id] != self.placement[trial_id]:
                await self.release(trial_id)
        for trial_id in sorted(wanted - set(self.terms)):
            await self.take(trial_id, self.placement[trial_id])

    async def take(self, trial_id: str, partition: int) -> None:
        log.warning("writers: this instance now writes trial %s (partition %d)", trial_id,
                    partition)
        handlers = await asyncio.to_thread(self.make, trial_id, partition)
        await asyncio.gather(*(handler.start() for handler in handlers.values()))
        self.terms[trial_id] = handlers
        self.term_partition[trial_id] = partition
        await self.started(trial_id, handlers)
        self._recovering[trial_id] = asyncio.ensure_future(self._recover(trial_id, handlers))

    async def release(self, trial_id: str, stopping: bool = False) -> None:
        handlers = self.terms.pop(trial_id, None)
        self.term_partition.pop(trial_id, None)
        if handlers is None:
            return
        if stopping:
            log.warning("writers: stopping: trial %s's writers close", trial_id)
        else:
            log.warning("writers: the group moved trial %s to %s; this instance stands by for "
                        "it", trial_id, self.holder(trial_id) or "another member")
        recovering = self._recovering.pop(trial_id, None)
        if recovering is not None:
            recovering.cancel()
        for handler in handlers.values():
            try:  # the next holder reads only what follows it (decision 42)
                await handler.write_snapshot(SNAPSHOT_ON_SHUTDOWN)
            except Exception:  # never a reason not to let go
                log.exception("%s: no snapshot written at release", handler.context)
            handler.close()

    async def release_all(self, stopping: bool = False) -> None:
        for trial_id in sorted(self.terms):
            await self.release(trial_id, stopping)

    async def _recover(self, trial_id: str, handlers: Handlers) -> None:
        while True:
            await asyncio.sleep(RECOVER_EVERY_SECONDS)
            for handler in handlers.values():
                try:
                    await handler.recover()
                except Exception:  # a failed retry must not end the retries
                    log.exception("recovering %s", handler.context)
            await self.started(trial_id, handlers)

    # ------------------------------------------------------------------ what callers see

    def current(self, trial_id: str) -> Mapping[str, CommandHandler]:
        return self.terms.get(trial_id, {})

    def all_handlers(self) -> list[CommandHandler]:
        return [h for trial_id in sorted(self.terms) for h in self.terms[trial_id].values()]

    async def standby(
        self, trial_id: str, asked: bool = False
    ) -> tuple[int, dict[str, Any]] | None:
        """None when this instance holds ``trial_id`` (its contexts say); otherwise what a
        standby says of it: ready while the holder is. ``asked``: another instance asks (it
        holds the trial, not this one, or the group moved it): it is not asked back."""
        if self.holds(trial_id):
            return None
        if self.problem is not None:
            return 503, {"error": "not-ready", "detail": self.problem, "ready": False}
        if asked:
            return 503, {"error": "not-held-here", "ready": False,
                         "detail": f"this instance does not hold trial {trial_id}"}
        holder = self.holder(trial_id)
        if holder is None or holder == self.own_url:
            why = ("joining the writers' group" if not self.holding.owners
                   else "the writers' group is rebalancing")
            return 503, {"error": "not-ready", "detail": f"no instance takes commands: {why}",
                         "ready": False}
        gone = await holder_problem(holder, by="services", query=f"trial_id={trial_id}",
                                    what=f"the instance holding trial {trial_id}")
        if gone is not None:
            return 503, {"error": "not-ready", "detail": gone, "ready": False,
                         "standby_for": holder}
        return 200, {"ready": True, "standby_for": holder, "contexts": {}}


def trial_of(request: web.Request, trials: Sequence[str]) -> str | None:
    """The trial a request is for: ``/trials/<id>/...``, or the deployment's only trial for a
    path without it; None when it names no trial of the deployment."""
    found = TRIAL_PATH.match(request.path)
    if found is not None:
        return found.group(1) if found.group(1) in trials else None
    return trials[0] if len(trials) == 1 else None


def forward_unheld(writers: Writers):
    """Middleware: a request for a trial (every path but the public ones) whose partition this
    instance does not hold goes to the instance that does, and its answer comes back as given.
    A request another instance passed on is answered here or refused, never passed on again."""

    retry = {"Retry-After": "2"}

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path in PUBLIC_PATHS or request.match_info.http_exception is not None:
            return await handler(request)
        trial_id = trial_of(request, writers.trials)
        if trial_id is None or writers.holds(trial_id):
            return await handler(request)
        if request.headers.get(FORWARDED_BY):
            return problem(503, "not-held-here",
                           f"this instance no longer holds trial {trial_id}'s partition (the "
                           "group moved it); send the command again", headers=retry)
        holder = writers.holder(trial_id)
        if holder is None or holder == writers.own_url:
            return problem(503, "rebalancing",
                           writers.problem or f"no instance of the services holds trial "
                           f"{trial_id}'s partition yet; send the command again", headers=retry)
        headers = {k: request.headers[k] for k in PASSED_ON if k in request.headers}
        headers.update(request[CORRELATION].answer_headers())
        asked = asyncio.ensure_future(ask(
            request.method, f"{holder}{request.path_qs}", headers, by="services",
            body=await request.read() if request.can_read_body else None,
            total_seconds=FORWARD_SECONDS,
        ))
        try:
            # A holder that stalls or dies loses the partition after its session: the group's
            # word that another member holds it ends the wait, rather than the whole deadline
            # (the command is then as undecided as after a timeout).
            while not asked.done():
                word = writers.next_word()
                waiting: set[asyncio.Future[Any]] = {asked, word}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if not asked.done() and writers.moved_from(trial_id, holder):
                    asked.cancel()
                    return problem(
                        503, "holder-unreachable",
                        f"the writers' group moved trial {trial_id}'s partition away from "
                        f"{holder} while the command was with it: it may or may not have been "
                        "decided; send it again with the same Idempotency-Key",
                        headers=retry)
            answer = asked.result()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return problem(503, "holder-unreachable",
                           f"the instance holding trial {trial_id} ({holder}) did not answer "
                           f"({type(exc).__name__}): the command may or may not have been "
                           "decided; send it again with the same Idempotency-Key", headers=retry)
        finally:
            asked.cancel()
        return web.Response(body=answer.body, status=answer.status,
                            content_type=answer.content_type, headers=answer.headers)

    return middleware


def ready_view(writers: Writers):
    """``/ready``: a trial's contexts while this instance holds it, else a standby's word; with
    several trials, each trial's under ``trials`` (ready when every one is)."""

    async def ready(request: web.Request) -> web.Response:
        asked = bool(request.headers.get(FORWARDED_BY))

        async def one(trial_id: str) -> tuple[int, dict[str, Any]]:
            said = await writers.standby(trial_id, asked)
            if said is not None:
                return said
            return contexts_readiness(writers.current(trial_id))

        wanted = request.query.get("trial_id")
        if wanted is not None and wanted not in writers.trials:
            return problem(404, "unknown-trial", f"this deployment runs no trial {wanted!r}; "
                           f"it runs {', '.join(writers.trials)}")
        if wanted is not None or len(writers.trials) == 1:
            status, body = await one(wanted or writers.trials[0])
        else:
            each = {t: (await one(t)) for t in writers.trials}
            status = 200 if all(s == 200 for s, _b in each.values()) else 503
            body = {"ready": status == 200, "trials": {t: b for t, (_s, b) in each.items()}}
            if status != 200:
                waiting = sorted(t for t, (s, _b) in each.items() if s != 200)
                body |= {"error": "not-ready", "detail": f"not ready: {', '.join(waiting)}"}
        if status == 200:
            return ok(200, {k: v for k, v in body.items() if k not in ("error", "detail")})
        body = dict(body)
        error, detail = body.pop("error", "not-ready"), body.pop("detail", "not ready")
        return problem(status, error, detail, **body)

    return ready
