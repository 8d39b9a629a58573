"""The services' real HTTP layer in process, without Kafka: the middlewares, the command
endpoints and the OpenAPI document, wired for every route as ``services/app.py`` wires them,
each context's commands decided by its real decider over a state kept in memory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from events.envelope import GENESIS_HASH
from infra.kafka_io import Position
from services.auth import UserDirectory
from services.catalog import services
from services.decider import Decider
from services.eventstore import Appended
from services.http import (
    MAX_BODY_BYTES,
    authentication,
    command_endpoint,
    health,
    json_errors,
    observed,
)
from services.http import readiness as readiness_view
from services.metrics import metrics_page
from services.openapi import add_description
from trial.config import TrialConfig, load_trial

from .builders import event_id, sealed


class Deciding:
    """Stands in for a context's ``CommandHandler``: decides with the context's decider,
    evolves its state and answers the events as appended, sealed and at made-up offsets."""

    def __init__(self, context: str, decider: Decider[Any], state: Any = None) -> None:
        self.context = context
        self.decider = decider
        self.state = decider.initial_state if state is None else state
        self.heads: dict[str, tuple[int, str]] = {}
        self.count = 0
        self.traces: list[tuple[Any, Any]] = []
        """The ``correlation_id`` and ``traceparent`` each command came with."""

    async def handle(self, command, actor, *, reason=None, **given) -> list[Appended]:
        self.traces.append((given.get("correlation_id"), given.get("traceparent")))
        appended = []
        for new in self.decider.decide(command, self.state):
            seq, prev_hash = self.heads.get(new.stream_id, (0, GENESIS_HASH))
            self.count += 1
            envelope = sealed(
                new.payload, event_id=event_id(self.count), stream_id=new.stream_id,
                stream_seq=seq + 1, occurred_at=new.occurred_at, recorded_at=new.occurred_at,
                prev_hash=prev_hash, actor=actor.model_dump(), reason=reason,
            )
            self.heads[new.stream_id] = (seq + 1, envelope.hash)
            self.state = self.decider.evolve(self.state, new.payload)
            topic = f"test.{self.context}.events"
            appended.append(Appended(envelope, Position(topic, 0, self.count - 1)))
        return appended

    def readiness(self) -> dict[str, Any]:
        return {"ready": True, "problem": None, "topic": f"test.{self.context}.events"}


def make_app(
    clock: Callable[[], datetime],
    states: dict[str, Any] | None = None,
    trial: TrialConfig | None = None,
) -> tuple[web.Application, dict[str, Deciding]]:
    """Every context's routes, as ``services.app.build_app`` wires them (with ``clock`` for
    the server's time and no business-time window), and the handlers by context."""
    trial = trial or load_trial()
    users = UserDirectory.demo()
    app = web.Application(
        middlewares=[observed(), json_errors(MAX_BODY_BYTES), authentication(users)],
        client_max_size=MAX_BODY_BYTES,
    )
    app.router.add_get("/health", health)
    specs = services()
    handlers = {
        context: Deciding(context, spec.make_decider(trial), (states or {}).get(context))
        for context, spec in specs.items()
    }
    for context, spec in specs.items():
        for route in spec.routes:
            app.router.add_post(
                route.path,
                command_endpoint(
                    handlers[context], route.model, trial.roles_for(route.command), clock,
                    signature_meaning=route.signature, users=users,
                    issues_token=route.issues_token,
                ),
            )
    def current() -> Any:
        return handlers

    app.router.add_get("/ready", readiness_view(current))
    app.router.add_get("/metrics", metrics_page(lambda: [(c, True) for c in handlers]))
    add_description(app, specs.values(), trial.roles_for)
    return app, handlers
