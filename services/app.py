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
from services.eventstore import KafkaEventStore, StoreUnavailable
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
from services.runtime import SNAPSHOT_ON_SHUTDOWN, CommandHandler
from services.validation import BusinessTimeWindow
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
) -> web.Application:
    """The command services of ``contexts`` (all by default), always with the access service:
    every request is authenticated against the access log (decision 29). ``users`` (the users
    file, or the demo users) is recorded on that log at the first start, and answers only
    until then."""
    available = services()
    chosen = list(contexts or available)
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; known: {sorted(available)}")
    if ACCESS not in chosen:
        chosen.append(ACCESS)
    access = handler_for(available[ACCESS], settings, trial)
    live = LiveUsers(lambda: access.state, seed=users)
    app = web.Application(
        middlewares=[observed(), json_errors(MAX_BODY_BYTES), authentication(live)],
        client_max_size=MAX_BODY_BYTES,
    )
    window = BusinessTimeWindow(
        trial.records.earliest_business_time,
        timedelta(minutes=trial.records.max_future_skew_minutes),
    )
    app.router.add_get("/health", health)
    handlers = []
    for context in chosen:
        spec = available[context]
        handler = access if context == ACCESS else handler_for(spec, settings, trial)
        handlers.append(handler)
        for route in spec.routes:
            roles = trial.roles_for(route.command)
            if not roles:
                raise ValueError(f"trial file: permissions has no roles for {route.command!r}")
            app.router.add_post(
                route.path,
                command_endpoint(
                    handler,
                    route.model,
                    roles,
                    signature_meaning=route.signature,
                    users=live,
                    window=window,
                    issues_token=route.issues_token,
                ),
            )

    app.router.add_get("/ready", readiness({h.context: h for h in handlers}))
    app.router.add_get("/metrics", metrics_page(
        lambda: [(h.context, bool(h.readiness()["ready"])) for h in handlers]
    ))
    add_description(app, [available[c] for c in chosen], trial.roles_for)

    async def lifecycle(_app: web.Application):
        # Each context opens its own clients and reads its own topics: they open side by side
        # (their waits on the broker overlap), and each reports its own problem if it fails.
        await asyncio.gather(*(handler.start() for handler in handlers))
        await bootstrap_access(access, users)
        recovering = asyncio.create_task(_recover(handlers, access, users))
        yield
        recovering.cancel()
        for handler in handlers:
            try:  # the next start reads only what follows it (decision 42)
                await handler.write_snapshot(SNAPSHOT_ON_SHUTDOWN)
            except Exception:  # never a reason not to shut down
                logging.getLogger(__name__).exception(
                    "%s: no snapshot written at shutdown", handler.context
                )
            handler.close()

    app.cleanup_ctx.append(lifecycle)
    return app


RECOVER_EVERY_SECONDS = 3.0
"""How often a context that is not ready tries again (a broker back, a record quarantined)."""


async def _recover(handlers: list[CommandHandler], access: CommandHandler,
                   seed: UserDirectory) -> None:
    while True:
        await asyncio.sleep(RECOVER_EVERY_SECONDS)
        for handler in handlers:
            try:
                await handler.recover()
            except Exception:  # a failed retry must not end the retries
                logging.getLogger(__name__).exception("recovering %s", handler.context)
        await bootstrap_access(access, seed)


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
