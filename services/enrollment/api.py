"""HTTP entry points of the enrollment service."""

from __future__ import annotations

from aiohttp import web

from events.topics import event_topic
from services.auth import UserDirectory
from services.enrollment import decider
from services.eventstore import KafkaEventStore
from services.http import authentication, command_endpoint, health
from services.runtime import CommandHandler, Decider
from trialops.settings import Settings

ENROLLMENT = Decider(decider.initial_state, decider.decide, decider.evolve)

ROUTES = [
    ("/enrollment/cohorts", decider.OpenCohort, frozenset({"investigator"})),
    ("/enrollment/subjects", decider.RegisterSubject, frozenset({"site_coordinator"})),
    ("/enrollment/enrollments", decider.EnrollSubject, frozenset({"site_coordinator"})),
]


def build_app(settings: Settings, users: UserDirectory) -> web.Application:
    store = KafkaEventStore(
        settings.bootstrap_servers,
        event_topic("enrollment", settings.namespace),
        settings.trial_id,
        writer_id=f"{settings.namespace}.enrollment.writer",
    )
    handler = CommandHandler(ENROLLMENT, store)
    app = web.Application(middlewares=[authentication(users)])
    for path, command, roles in ROUTES:
        app.router.add_post(path, command_endpoint(handler, command, roles))
    app.router.add_get("/health", health)

    async def lifecycle(app: web.Application):
        await handler.start()
        yield
        handler.close()

    app.cleanup_ctx.append(lifecycle)
    return app
