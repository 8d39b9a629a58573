"""One aiohttp application hosting the command services: each context keeps its own single
writer and state; the app only routes requests to them."""

from __future__ import annotations

import asyncio
import logging
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
from services.auth import ADMINISTRATOR, LiveUsers, UserDirectory
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
    readiness,
)
from services.metrics import metrics_page
from services.openapi import add_description
from services.runtime import CommandHandler
from services.validation import BusinessTimeWindow
from services.writer_group import WriterGroup
from services.writers import Writers, forward_unheld, standby_ready
from trial.config import TrialConfig


def handler_for(spec: ServiceSpec, settings: Settings, trial: TrialConfig) -> CommandHandler:
    keyring = load_keyring(settings.keyring)
    store = KafkaEventStore(
        settings.bootstrap_servers,
        event_topic(spec.context, settings.namespace),
        trial.trial_id,
        writer_id=f"{settings.namespace}.{spec.context}.writer",
        keyring=keyring,
        signer=load_signer(settings.writer_keys, spec.context, keyring),
        keys_folder=settings.writer_keys,
    )
    return CommandHandler(
        spec.make_decider(trial),
        store,
        upstream_factory(spec, settings, keyring),
        context=spec.context,
        quarantine=partial(
            load_quarantine, settings.bootstrap_servers, settings.namespace, keyring, spec.context
        ),
    )


def upstream_factory(spec: ServiceSpec, settings: Settings, keyring: Keyring):
    if not spec.upstream:
        return None
    return Tail(
        settings.bootstrap_servers,
        [event_topic(c, settings.namespace) for c in spec.upstream],
        client_id=f"{settings.namespace}.{spec.context}.upstream",
        reader=LogReader(keyring),
        principal=spec.context,
    )


def build_app(
    settings: Settings,
    users: UserDirectory,
    trial: TrialConfig,
    contexts: list[str] | None = None,
    *,
    url: str = "http://127.0.0.1:8081",
) -> web.Application:
    """The command services of ``contexts`` (all by default), always with the access service:
    every request is authenticated against the access log (decision 29). ``users`` (the users
    file, or the demo users) is recorded on that log at the first start, and answers only
    until then.

    The writers run while the writers' group gives this instance the contexts' partitions
    (decision 59); ``url`` is where the other instances reach this one, to pass it the
    commands it holds."""
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

    def make() -> dict[str, CommandHandler]:
        return {context: handler_for(available[context], settings, trial) for context in chosen}

    async def started(handlers: dict[str, CommandHandler]) -> None:
        await bootstrap_access(handlers[ACCESS], users)

    writers = Writers(make, started, url)
    nobody = available[ACCESS].make_decider(trial).initial_state

    def access_state():
        handler = writers.current().get(ACCESS)
        return nobody if handler is None else handler.state

    live = LiveUsers(access_state, seed=users)
    app = web.Application(
        middlewares=[observed(), json_errors(MAX_BODY_BYTES), forward_unheld(writers),
                     authentication(live)],
        client_max_size=MAX_BODY_BYTES,
    )
    window = BusinessTimeWindow(
        trial.records.earliest_business_time,
        timedelta(minutes=trial.records.max_future_skew_minutes),
    )
    app.router.add_get("/health", health)
    for context in chosen:
        spec = available[context]
        seat = Seat(writers, context)
        for route in spec.routes:
            roles = trial.roles_for(route.command)
            if not roles:
                raise ValueError(f"trial file: permissions has no roles for {route.command!r}")
            app.router.add_post(
                route.path,
                command_endpoint(
                    seat,
                    route.model,
                    roles,
                    signature_meaning=route.signature,
                    users=live,
                    window=window,
                    issues_token=route.issues_token,
                ),
            )

    app.router.add_get("/ready", standby_ready(writers, readiness(writers.current)))
    app.router.add_get("/metrics", metrics_page(
        lambda: [(h.context, bool(h.readiness()["ready"])) for h in writers.current().values()]
    ))
    add_description(app, [available[c] for c in chosen], trial.roles_for)

    async def lifecycle(_app: web.Application):
        loop = asyncio.get_running_loop()
        group = WriterGroup(
            settings.bootstrap_servers, settings.namespace,
            [event_topic(c, settings.namespace) for c in chosen], url,
            lambda holding: loop.call_soon_threadsafe(writers.note, holding),
            principal=ACCESS,
        )
        group.start()
        # A lone instance holds everything once it has joined: its writers open (side by
        # side, each reporting its own problem) before it answers its first request.
        await writers.first_word(FIRST_ASSIGNMENT_SECONDS)
        following = asyncio.ensure_future(writers.follow())
        yield
        following.cancel()
        await writers.release()
        # Leaving the group moves the partitions to another instance at once.
        await asyncio.to_thread(group.stop)

    app.cleanup_ctx.append(lifecycle)
    return app


FIRST_ASSIGNMENT_SECONDS = 30.0
"""How long a starting instance waits for the writers' group before it answers requests
(standing by meanwhile); joining takes well under a second on a reachable broker."""


class Seat:
    """A context's place in the routes: the handler of the current term decides its commands.
    Between terms (the group moving the partitions) a command is answered 503."""

    def __init__(self, writers: Writers, context: str):
        self.writers = writers
        self.context = context

    async def handle(self, command, actor, **options) -> list[Appended]:
        handler = self.writers.current().get(self.context)
        if handler is None:
            raise StoreUnavailable(
                f"{self.context}: this instance no longer holds the context's partition (the "
                "writers' group moved it); send the command again"
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
