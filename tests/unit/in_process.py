"""The HTTP command API, in process (no Kafka, no HTTP server): each request is checked for the
role the trial file permits and for its electronic signature, validated by the route's command
model and decided by its context's decider; accepted events are evolved into every context that
follows that context, as the services' upstream tails do."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from events.envelope import GENESIS_HASH
from events.registry import Recorded, read
from services.auth import UserDirectory
from services.catalog import services
from services.errors import DomainError
from trial.config import load_trial

from .builders import event_id, sealed

URL = "http://in-process"


class InProcess:
    def __init__(self):
        self.trial = load_trial()
        self.users = UserDirectory.demo()
        self.specs = services()
        self.routes = {r.path: (spec, r) for spec in self.specs.values() for r in spec.routes}
        self.deciders = {c: spec.make_decider(self.trial) for c, spec in self.specs.items()}
        self.states = {c: d.initial_state for c, d in self.deciders.items()}
        self.appended: list[tuple[str, str, str, datetime, str]] = []
        """(context, stream, event type, occurred_at, user id) of every accepted event."""
        self.payloads: list[Any] = []
        self._recorded: list[tuple[str, Recorded]] = []
        self._heads: dict[str, tuple[int, str]] = {}
        self._roles: dict[str, str] = {}

    def __call__(self, method: str, url: str, body: Any = None, *, token=None):
        assert method == "POST", url
        spec, route = self.routes[urlsplit(url).path]
        actor = self.users.authenticate(token)
        assert actor is not None, token
        self._roles[actor.user_id] = actor.role
        if actor.role not in self.trial.roles_for(route.command):
            return 403, {"error": "role-not-permitted", "message": route.command}
        signature = body.get("signature")
        if route.signature is not None and (signature or {}).get("meaning") != route.signature:
            return 422, {"error": "signature-required", "message": route.command}
        body = {k: v for k, v in body.items() if k != "signature"}
        if "actor" in route.model.model_fields:
            body = {**body, "actor": actor.model_dump()}
        try:
            command = route.model.model_validate(body)
        except ValidationError as exc:
            return 422, {"error": "invalid-command", "message": str(exc)}
        try:
            new_events = self.deciders[spec.context].decide(command, self.states[spec.context])
        except DomainError as exc:
            return exc.status, exc.as_dict()
        for new in new_events:
            for context, follower in self.specs.items():
                if context == spec.context or spec.context in follower.upstream:
                    decider = self.deciders[context]
                    self.states[context] = decider.evolve(self.states[context], new.payload)
            self.appended.append(
                (
                    spec.context,
                    new.stream_id,
                    new.payload.event_type,
                    new.occurred_at,
                    actor.user_id,
                )
            )
            self.payloads.append(new.payload)
        events = [
            {"event_type": n.payload.event_type, "stream_id": n.stream_id} for n in new_events
        ]
        return 201, {"events": events}

    def types(self, context: str, stream: str) -> list[str]:
        return [t for c, s, t, _at, _u in self.appended if (c, s) == (context, stream)]

    def recorded(self) -> list[tuple[str, Recorded]]:
        """(context, event) of every accepted event, in the order accepted: sealed into an
        envelope chained per stream (recorded when it occurred) and read back as a reader reads
        it, which is what the projections fold. Sealed once each, as they are asked for."""
        for n in range(len(self._recorded), len(self.payloads)):
            context, stream, _type, at, user_id = self.appended[n]
            seq, prev_hash = self._heads.get(stream, (0, GENESIS_HASH))
            envelope = sealed(
                self.payloads[n],
                event_id=event_id(n + 1),
                trial_id=self.trial.trial_id,
                stream_id=stream,
                stream_seq=seq + 1,
                occurred_at=at,
                recorded_at=at,
                actor={"user_id": user_id, "role": self._roles[user_id]},
                prev_hash=prev_hash,
            )
            self._heads[stream] = (seq + 1, envelope.hash)
            self._recorded.append((context, read(envelope)))
        return self._recorded
