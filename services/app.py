"""One aiohttp application hosting the command services: each context keeps its own single
writer and state; the app only routes requests to them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import partial

from aiohttp import web

from events.envelope import Actor
from events.reading import LogReader
from events.signing import Keyring
from events.topics import ACCESS, event_topic
from infra.kafka_io import Tail, load_quarantine
from infra.keys import load_keyring, load_signer
from infra.settings import Settings
from services.access.decider import BootstrapAccess, NewUser
from services.auth import ADMINISTRATOR, LiveUsers, UserDirectory, seeds_per_trial
from services.catalog import ServiceSpec, services
from services.errors import DomainError
from services.eventstore import Appended, KafkaEventStore, StoreUnavailable
from services.http import (
    MAX_BODY_BYTES,
    authentication,
    command_endpoint,
    health,
    json_errors,
    observed,
)
from services.metrics import metrics_page
from services.openapi import add_description
from services.runtime import CommandHandler
from services.validation import BusinessTimeWindow
from services.writer_group import WriterGroup
from services.writers import Writers, forward_unheld, ready_view, trial_of
from trial.config import TrialConfig


def writer_id(settings: Settings, context: str, partition: int) -> str:
    """The transactional id of a context's writer of ``partition``: one per partition, so a
    new writer of a trial fences only that trial's old one (decision 60); the first
    partition's is the one a deployment of one partition always had."""
    base = f"{settings.namespace}.{context}.writer"
    return base if partition == 0 else f"{base}.p{partition}"


def handler_for(
    spec: ServiceSpec, settings: Settings, trial: TrialConfig, partition: int = 0
) -> CommandHandler:
    keyring = load_keyring(settings.keyring)
    store = KafkaEventStore(
        settings.bootstrap_servers,
        event_topic(spec.context, settings.namespace),
        trial.trial_id,
        writer_id=writer_id(settings, spec.context, partition),
        keyring=keyring,
        signer=load_signer(settings.writer_keys, spec.context, keyring),
        keys_folder=settings.writer_keys,
        partition=partition,
    )
    return CommandHandler(
        spec.make_decider(trial),
        store,
        upstream_factory(spec, settings, keyring, partition),
        context=spec.context,
        quarantine=partial(
            load_quarantine, settings.bootstrap_servers, settings.namespace, keyring, spec.context
        ),
    )


def upstream_factory(spec: ServiceSpec, settings: Settings, keyring: Keyring, partition: int = 0):
    """The followed topics' partition of the same trial (every context topic has the same
    partitions, and a trial the same number in each)."""
    if not spec.upstream:
        return None
    return Tail(
        settings.bootstrap_servers,
        [event_topic(c, settings.namespace) for c in spec.upstream],
        client_id=f"{settings.namespace}.{spec.context}.upstream",
        reader=LogReader(keyring),
        principal=spec.context,
        partition=partition,
    )


def build_app(
    settings: Settings,
    users: UserDirectory | Mapping[str, UserDirectory],
    trials: Mapping[str, TrialConfig] | TrialConfig,
    contexts: list[str] | None = None,
    *,
    url: str = "http://127.0.0.1:8081",
) -> web.Application:
    """The command services of ``contexts`` (all by default), always with the access service,
    for each trial of ``trials``: every request is authenticated against its trial's access
    log (decision 29). ``users`` (the users file, or the demo users; or per trial id, that
    trial's users file, decision 66) is recorded on each trial's access log at its first
    start, and answers only until then.

    A trial's commands are at ``/trials/<trial id>/<route>``, and at ``/<route>`` too when the
    deployment runs one trial. Its writers run while the writers' group gives this instance
    the trial's partition (decisions 59, 60); ``url`` is where the other instances reach this
    one, to pass it the commands of the trials it holds."""
    if isinstance(trials, TrialConfig):
        trials = {trials.trial_id: trials}
    seeds = seeds_per_trial(users, trials)
    available = services()
    chosen = list(contexts or available)
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; known: {sorted(available)}")
    if ACCESS not in chosen:
        chosen.append(ACCESS)
    # The keys are checked now, not at the first term: a missing key is a start-up error.
    keyring = load_keyring(settings.keyring)
    for context in chosen:
        load_signer(settings.writer_keys, context, keyring)

    def make(trial_id: str, partition: int) -> dict[str, CommandHandler]:
        return {context: handler_for(available[context], settings, trials[trial_id], partition)
                for context in chosen}

    async def started(trial_id: str, handlers: dict[str, CommandHandler]) -> None:
        await bootstrap_access(handlers[ACCESS], seeds[trial_id])

    writers = Writers(list(trials), make, started, url)
    lives = {
        trial_id: LiveUsers(_access_state(writers, trial_id, trial), seed=seeds[trial_id])
        for trial_id, trial in trials.items()
    }

    def users_of(request: web.Request) -> LiveUsers | None:
        trial_id = trial_of(request, writers.trials)
        return None if trial_id is None else lives[trial_id]

    app = web.Application(
        middlewares=[observed(), json_errors(MAX_BODY_BYTES), forward_unheld(writers),
                     authentication(users_of)],
        client_max_size=MAX_BODY_BYTES,
    )
    app.router.add_get("/health", health)
    for trial_id, trial in trials.items():
        window = BusinessTimeWindow(
            trial.records.earliest_business_time,
            timedelta(minutes=trial.records.max_future_skew_minutes),
        )
        prefixes = [f"/trials/{trial_id}"] + ([""] if len(trials) == 1 else [])
        for context in chosen:
            spec = available[context]
            seat = Seat(writers, trial_id, context)
            for route in spec.routes:
                roles = trial.roles_for(route.command)
                if not roles:
                    raise ValueError(f"trial file of {trial_id}: permissions has no roles for "
                                     f"{route.command!r}")
                endpoint = command_endpoint(
                    seat,
                    route.model,
                    roles,
                    signature_meaning=route.signature,
                    users=lives[trial_id],
                    window=window,
                    issues_token=route.issues_token,
                )
                for prefix in prefixes:
                    app.router.add_post(prefix + route.path, endpoint)

    app.router.add_get("/ready", ready_view(writers))
    app.router.add_get("/metrics", metrics_page(
        lambda: [(h.context, bool(h.readiness()["ready"])) for h in writers.all_handlers()]
    ))
    first = next(iter(trials.values()))
    add_description(app, [available[c] for c in chosen], first.roles_for, sorted(trials))

    async def lifecycle(_app: web.Application):
        loop = asyncio.get_running_loop()
        group = WriterGroup(
            settings.bootstrap_servers, settings.namespace,
            [event_topic(c, settings.namespace) for c in chosen], url,
            lambda holding: loop.call_soon_threadsafe(writers.note, holding),
            principal=ACCESS, trials=list(trials),
        )
        group.start()
        # A lone instance holds everything once it has joined: its writers open (side by
        # side, each reporting its own problem) before it answers its first request.
        await writers.first_word(FIRST_ASSIGNMENT_SECONDS)
        following = asyncio.ensure_future(writers.follow())
        yield
        following.cancel()
        await writers.release_all(stopping=True)
        # Leaving the group moves the partitions to another instance at once.
        await asyncio.to_thread(group.stop)

    app.cleanup_ctx.append(lifecycle)
    return app


def _access_state(writers: Writers, trial_id: str, trial: TrialConfig):
    """The trial's access state while its writers run here; nobody's otherwise (a request for
    it is then passed to the instance that holds it before anyone is authenticated)."""
    nobody = services()[ACCESS].make_decider(trial).initial_state

    def state():
        handler = writers.current(trial_id).get(ACCESS)
        return nobody if handler is None else handler.state

    return state


FIRST_ASSIGNMENT_SECONDS = 30.0
"""How long a starting instance waits for the writers' group before it answers requests
(standing by meanwhile); joining takes well under a second on a reachable broker."""


class Seat:
    """A trial's context in the routes: the handler of the current term decides its commands.
    Between terms (the group moving the partition) a command is answered 503."""

    def __init__(self, writers: Writers, trial_id: str, context: str):
        self.writers = writers
        self.trial_id = trial_id
        self.context = context

    async def handle(self, command, actor, **options) -> list[Appended]:
        handler = self.writers.current(self.trial_id).get(self.context)
        if handler is None:
            raise StoreUnavailable(
                f"{self.context}: this instance no longer holds trial {self.trial_id}'s "
                "partition (the writers' group moved it); send the command again"
            )
        return await handler.handle(command, actor, **options)


BOOTSTRAP = Actor(user_id="bootstrap", role=ADMINISTRATOR)
"""Who records the first users: the server itself, at its first start."""


async def bootstrap_access(access: CommandHandler, seed: UserDirectory) -> None:
    """On an empty access log, record the users of ``seed`` (the users file or the demo users)
    as its first events; afterwards the log alone says who may act. Nothing happens while the
    access context is not ready (it is tried again with the other recoveries)."""
    if access.state or not access.readiness()["ready"]:
        return
    users = seed.users
    # The file's path is this machine's business, not the log's.
    what = "demo users" if seed.source == "demo users" else "users file"
    command = BootstrapAccess(
        occurred_at=datetime.now(UTC),
        users=tuple(
            NewUser(user_id=u.user_id, role=u.role, printed_name=u.printed_name,
                    token_hash=u.token_hash)
            for u in users
        ),
    )
    try:
        await access.handle(command, BOOTSTRAP, reason=f"first start: the {what}")
    except (DomainError, StoreUnavailable) as exc:
        logging.getLogger(__name__).warning("access log not bootstrapped yet: %s", exc)
        return
    logging.getLogger(__name__).warning(
        "access log bootstrapped with %d user(s) from the %s; from now on the log alone says "
        "who may act, and changes to the %s change nothing", len(users), seed.source, what,
    )
