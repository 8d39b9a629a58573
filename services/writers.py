"""The writers this instance runs while the writers' group gives it their partitions.

One term of office: when the group gives this instance the partitions (services/writer_group.py)
it builds every context's ``CommandHandler`` afresh, as a process start would (each fences the
previous writer of its partition and reads its topic); when the group moves them away it
writes their snapshots and closes them. Between terms, and on an instance that stands by, no
writer is open and the requests go to the holder (``forward_unheld``, decision 59).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from infra.forwarding import FORWARDED_BY, ask, holder_problem
from services.http import CORRELATION, PUBLIC_PATHS, ok, problem
from services.runtime import COMMAND_DEADLINE_SECONDS, SNAPSHOT_ON_SHUTDOWN, CommandHandler
from services.writer_group import Holding

log = logging.getLogger(__name__)

RECOVER_EVERY_SECONDS = 3.0
"""How often a context that is not ready tries again (a broker back, a record quarantined)."""
FORWARD_SECONDS = COMMAND_DEADLINE_SECONDS + 5.0
"""How long a command passed to the holder may take: its own deadline and a little more."""
PASSED_ON = ("Authorization", "Content-Type", "Accept", "Idempotency-Key")
"""The caller's headers a passed-on request carries (with its correlation): the holder checks
the token and the key itself."""


class Writers:
    """The handlers of the current term (None between terms). ``make`` builds a fresh set,
    blocking (their clients connect); ``started`` runs once they are open (the access log's
    first users)."""

    def __init__(
        self,
        make: Callable[[], dict[str, CommandHandler]],
        started: Callable[[dict[str, CommandHandler]], Any],
        own_url: str,
        partitions: frozenset[int] = frozenset({0}),
    ):
        self.make = make
        self.started = started
        self.own_url = own_url.rstrip("/")
        self.partitions = partitions
        """The partition numbers a term needs: every partition of the context topics."""
        self.handlers: dict[str, CommandHandler] | None = None
        self.holding = Holding()
        self._noted = asyncio.Event()
        self._recovering: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ the group's say

    def note(self, holding: Holding) -> None:
        """What the group said (called on the event loop, from the group's thread)."""
        self.holding = holding
        self._noted.set()

    @property
    def holds(self) -> bool:
        return self.holding.settled and self.partitions <= self.holding.held

    @property
    def holder(self) -> str | None:
        """The URL of the member holding the partitions, as the group said last."""
        return self.holding.holder_of_all(self.partitions)

    async def first_word(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the group's first assignment, and act on it."""
        deadline = time.monotonic() + timeout
        while not self.holding.settled and time.monotonic() < deadline:
            self._noted.clear()
            try:
                await asyncio.wait_for(self._noted.wait(), deadline - time.monotonic())
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
        if self.holds and self.handlers is None:
            await self.take()
        elif not self.holds and self.handlers is not None:
            await self.release()

    async def take(self) -> None:
        log.warning("writers: this instance now holds the context topics' partitions %s",
                    sorted(self.partitions))
        handlers = await asyncio.to_thread(self.make)
        await asyncio.gather(*(handler.start() for handler in handlers.values()))
        self.handlers = handlers
        await self.started(handlers)
        self._recovering = asyncio.ensure_future(self._recover(handlers))

    async def release(self) -> None:
        handlers, self.handlers = self.handlers, None
        if handlers is None:
            return
        log.warning("writers: the group moved the partitions to %s; this instance stands by",
                    self.holder or "another member")
        if self._recovering is not None:
            self._recovering.cancel()
            self._recovering = None
        for handler in handlers.values():
            try:  # the next holder reads only what follows it (decision 42)
                await handler.write_snapshot(SNAPSHOT_ON_SHUTDOWN)
            except Exception:  # never a reason not to let go
                log.exception("%s: no snapshot written at release", handler.context)
            handler.close()

    async def _recover(self, handlers: dict[str, CommandHandler]) -> None:
        while True:
            await asyncio.sleep(RECOVER_EVERY_SECONDS)
            for handler in handlers.values():
                try:
                    await handler.recover()
                except Exception:  # a failed retry must not end the retries
                    log.exception("recovering %s", handler.context)
            await self.started(handlers)

    # ------------------------------------------------------------------ what callers see

    def current(self) -> Mapping[str, CommandHandler]:
        return self.handlers or {}

    async def readiness(self) -> tuple[int, dict[str, Any]] | None:
        """None when this instance holds the partitions (its contexts say); otherwise what a
        standby's ``/ready`` answers: ready while the holder is."""
        if self.handlers is not None:
            return None
        holder = self.holder
        if holder is None or holder == self.own_url:
            why = ("joining the writers' group" if not self.holding.owners
                   else "the writers' group is rebalancing")
            return 503, {"error": "not-ready", "detail": f"no instance takes commands: {why}",
                         "ready": False}
        gone = await holder_problem(holder, by="services",
                                    what="the instance holding the partitions")
        if gone is not None:
            return 503, {"error": "not-ready", "detail": gone, "ready": False,
                         "standby_for": holder}
        return 200, {"ready": True, "standby_for": holder, "contexts": {}}


def forward_unheld(writers: Writers):
    """Middleware: a request for the contexts (every path but the public ones) that this
    instance does not hold goes to the instance that does, and its answer comes back as given.
    A request another instance passed on is answered here or refused, never passed on again."""

    retry = {"Retry-After": "2"}

    @web.middleware
    async def middleware(request: web.Request, handler):
        if (writers.handlers is not None or request.path in PUBLIC_PATHS
                or request.match_info.http_exception is not None):
            return await handler(request)
        if request.headers.get(FORWARDED_BY):
            return problem(503, "not-held-here",
                           "this instance no longer holds the contexts' partitions (the group "
                           "moved them); send the command again", headers=retry)
        holder = writers.holder
        if holder is None or holder == writers.own_url:
            return problem(503, "rebalancing",
                           "no instance of the services holds the contexts' partitions yet; "
                           "send the command again", headers=retry)
        headers = {k: request.headers[k] for k in PASSED_ON if k in request.headers}
        headers.update(request[CORRELATION].answer_headers())
        try:
            answer = await ask(
                request.method, f"{holder}{request.path_qs}", headers, by="services",
                body=await request.read() if request.can_read_body else None,
                total_seconds=FORWARD_SECONDS,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return problem(503, "holder-unreachable",
                           f"the instance holding the contexts ({holder}) did not answer "
                           f"({type(exc).__name__}): the command may or may not have been "
                           "decided; send it again with the same Idempotency-Key", headers=retry)
        return web.Response(body=answer.body, status=answer.status,
                            content_type=answer.content_type, headers=answer.headers)

    return middleware


def standby_ready(writers: Writers, holding_ready):
    """``/ready``: the contexts' readiness while this instance holds them, else a standby's."""

    async def ready(request: web.Request) -> web.Response:
        said = await writers.readiness()
        if said is None:
            return await holding_ready(request)
        status, body = said
        if status == 200:
            return ok(200, body)
        return problem(status, body.pop("error"), body.pop("detail"), **body)

    return ready
