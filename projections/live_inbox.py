"""The live inbox in the worker: ``GET /projections/inbox?role=ROLE&as_of=ISO`` (decision 51).

The inbox depends on the moment it is read at and on the states of several contexts, so it is
not a Faust table: the worker keeps one :class:`projections.inbox.Desk` in memory, fed by a tail
of the topics the inbox reads (``projections.inbox.DESK_CONTEXTS``: the inbox's and the
alerts') from offset 0 through the one
reading rule (``infra.kafka_io.Tail``: the records ``trialops inbox`` reads, quarantine
honoured), and asks it what is pending when a request comes. Its memory is the states, not the
history. Each request first reads what was committed since the last read, so an answer is as
recent as a replay's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from events.reading import LogReader, merged
from events.registry import Recorded
from events.topics import event_topic
from infra.kafka_io import Tail, load_quarantine
from infra.keys import load_keyring
from infra.settings import Settings
from projections.inbox import DESK_CONTEXTS, Desk, Item, check_role, document
from projections.views import (
    Readers,
    _not_a_reader_of,
    _problem,
    _query_time,
    _trial_of,
    _unauthorized,
)
from trial.config import TrialConfig

log = logging.getLogger(__name__)

READ_SECONDS = 10.0
"""How long one catch-up may take before the request is answered 503."""
PRINCIPAL = "worker"
"""The worker reads the event topics as ``worker`` on a secured broker."""


class LiveDesk:
    """A :class:`Desk` kept current by a tail of the inbox's topics. ``catch_up`` reads what was
    committed since the last call (the tail is opened at the first call, from offset 0) and
    folds it; calls are serialised."""

    def __init__(self, settings: Settings, contexts: tuple[str, ...] = DESK_CONTEXTS,
                 open_tail: Callable[[], Tail] | None = None,
                 trial_id: str | None = None) -> None:
        self.settings = settings
        self.contexts = contexts
        self.trial_id = trial_id
        """The trial whose events this desk folds, in a deployment of several (decision 61);
        None: every event (a deployment of one trial)."""
        self.desk = Desk()
        self._open_tail = open_tail or self._new_tail
        self._tail: Tail | None = None
        self._lock = asyncio.Lock()

    def _new_tail(self) -> Tail:
        keyring = load_keyring(self.settings.keyring)
        quarantine = load_quarantine(
            self.settings.bootstrap_servers, self.settings.namespace, keyring, PRINCIPAL
        )
        return Tail(
            self.settings.bootstrap_servers,
            [event_topic(c, self.settings.namespace) for c in self.contexts],
            client_id=f"{self.settings.namespace}-inbox",
            reader=LogReader(keyring, quarantine),
            principal=PRINCIPAL,
        )

    def _read(self) -> list[Recorded]:
        """Blocking: the new events, each topic in offset order, merged by recorded time as
        the replay merges them (``events.reading.merged``). A halted partition looks for a
        newer quarantine (and keyring) before each read."""
        if self._tail is None:
            self._tail = self._open_tail()
        tail = self._tail
        if tail.halts:
            keyring = load_keyring(self.settings.keyring)
            tail.reader.keyring = keyring
            tail.resume(load_quarantine(self.settings.bootstrap_servers,
                                        self.settings.namespace, keyring, PRINCIPAL))
        topics = [event_topic(c, self.settings.namespace) for c in self.contexts]
        per_topic: dict[str, list[Recorded]] = {t: [] for t in topics}
        for where, recorded in tail.read_new(time.monotonic() + READ_SECONDS):
            per_topic[where.topic].append(recorded)
        return list(merged(per_topic, topics))

    async def catch_up(self) -> Desk:
        async with self._lock:
            for recorded in await asyncio.to_thread(self._read):
                if self.trial_id is None or recorded.envelope.trial_id == self.trial_id:
                    self.desk.fold(recorded)
            return self.desk

    def halts(self) -> list[str]:
        return [] if self._tail is None else [h.describe() for h in self._tail.halts]

    def close(self) -> None:
        if self._tail is not None:
            self._tail.close()


def parse_query(query: Mapping[str, str], trial: TrialConfig) -> tuple[str | None, datetime | None]:
    """``role`` (optional, one that reads the projections: ``projections.inbox.check_role``,
    the same check as ``trialops inbox``) and ``as_of`` (optional ISO 8601 with a zone; None:
    now, once the desk has caught up); ``ValueError`` naming the parameter."""
    role = query.get("role") or None
    if role is not None:
        check_role(role)
    as_of = query.get("as_of")
    return role, None if as_of is None else _query_time(as_of)


def answer(
    desk: Desk, trial: TrialConfig, role: str | None, as_of: datetime | None
) -> dict[str, Any]:
    """The inbox document at ``as_of`` (None: now). ``ValueError`` when ``as_of`` is before an
    event the desk has folded: the live desk holds states, not the history it would take to go
    back (``trialops inbox --as-of`` replays the log to a past moment)."""
    if as_of is None:
        as_of = datetime.now(UTC)
    elif desk.latest is not None and as_of < desk.latest:
        raise ValueError(
            f"as_of: {as_of.isoformat()} is before the last event the live inbox has folded "
            f"({desk.latest.isoformat()}); 'trialops inbox --as-of' replays the log to a past "
            "moment"
        )
    items: list[Item] = desk.pending(trial, as_of, role)
    return document(items, role, as_of)


def serve_inbox(app: Any, live: LiveDesk, trial: TrialConfig, users: Readers) -> None:
    """Registers ``GET /projections/inbox`` on the worker, with the projections' auth."""
    serve_inboxes(app, {trial.trial_id: (live, trial)}, users)


def serve_inboxes(app: Any, desks: Mapping[str, tuple[LiveDesk, TrialConfig]],
                  users: Readers) -> None:
    """Registers ``GET /projections/inbox`` on the worker, with the projections' auth: per
    trial id, its desk (which folds that trial's events only when there are several) and its
    trial file. ``trial_id`` names the trial as on every view (decision 61)."""

    async def view(web: Any, request: Any) -> Any:
        if refused := _unauthorized(web, request, users):
            return refused
        trial_id, refused = _trial_of(web, request, desks)
        if refused is not None:
            return refused
        if refused := _not_a_reader_of(web, request, users, trial_id):
            return refused
        live, trial = desks[trial_id]
        try:
            role, as_of = parse_query(request.query, trial)
        except ValueError as exc:
            return _problem(web, request, 400, "bad-query", str(exc))
        try:
            desk = await live.catch_up()
        except Exception as exc:  # a missing topic, a broker away or too slow (BrokerTimeout)
            log.warning("inbox: cannot read the log: %r", exc)
            return _problem(web, request, 503, "inbox-not-ready",
                            f"the inbox cannot read the log yet: {exc}")
        if halts := live.halts():
            log.warning("inbox: halted at %s", "; ".join(halts))
        try:
            body = answer(desk, trial, role, as_of)
        except ValueError as exc:
            return _problem(web, request, 400, "bad-query", str(exc))
        return web.json(body)

    app.page("/projections/inbox", name="view-inbox")(view)
