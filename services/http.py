"""Thin HTTP adapter shared by the services: authentication, JSON in, command validation,
and the mapping of domain errors to 4xx. No trial rule lives here."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from events.envelope import Actor, Idempotency
from events.signatures import Meaning
from infra.logs import correlated
from services import metrics
from services.auth import LiveUsers, UserDirectory, hash_token, new_token
from services.correlation import REQUEST_ID, TRACEPARENT, Correlation, correlation_of
from services.errors import DomainError
from services.eventstore import Appended, StoreUnavailable
from services.pending import Signature
from services.problems import PROBLEM_JSON, problem_document
from services.runtime import COMMAND_DEADLINE_SECONDS, CommandHandler
from services.validation import (
    BusinessTimeWindow,
    Problem,
    character_problems,
    checked_reason,
)

log = logging.getLogger(__name__)

ACTOR = web.RequestKey("actor", Actor)
"""The authenticated actor of a request."""
CORRELATION = web.RequestKey("correlation", Correlation)
"""Where the request's correlation id came from (``observed``)."""


class ProblemAnswer(web.Response):
    """An RFC 9457 problem answer. ``json_errors`` adds the ``instance`` (the request's path)
    before it is sent, since the code that refuses a request seldom has the request."""

    def __init__(self, status: int, document: dict[str, Any], headers=None) -> None:
        super().__init__(
            status=status, body=orjson.dumps(document), content_type=PROBLEM_JSON,
            headers=headers,
        )
        self.document = document

    def at(self, instance: str) -> ProblemAnswer:
        if "instance" not in self.document:
            self.document = {**self.document, "instance": instance}
            self.body = orjson.dumps(self.document)
        return self


def problem(status: int, error: str, message: str, *, headers=None, **extra: Any) -> ProblemAnswer:
    return ProblemAnswer(status, problem_document(status, error, message, **extra), headers)


class Refused(Exception):
    """Raised where returning the answer is awkward (reading the body): ``json_errors``
    answers with ``answer``."""

    def __init__(self, answer: ProblemAnswer) -> None:
        super().__init__(answer.document["detail"])
        self.answer = answer


def ok(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


MAX_BODY_BYTES = 1024 * 1024
"""The largest request body (aiohttp's ``client_max_size``); a larger one is answered 413 in the
JSON error format. A command is a few hundred bytes; the limit only stops abuse."""

_BEARER = re.compile(r"Bearer ([A-Za-z0-9._~+/-]+=*)", re.IGNORECASE)
"""RFC 6750 section 2.1: ``Bearer`` and one token68 (letters, digits, ``-._~+/``, then ``=``)."""


def json_errors(max_body_bytes: int = MAX_BODY_BYTES):
    """Every 4xx and 5xx of the API is an RFC 9457 problem (``application/problem+json``).
    aiohttp raises its own HTTP errors (413 for a body over ``client_max_size``, 404 for an
    unknown path, 405 for a method a path does not take) as plain text: they are answered as
    problems here, and every problem gets the request's path as its ``instance``."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        try:
            answer = await handler(request)
        except Refused as refused:
            answer = refused.answer
        except web.HTTPRequestEntityTooLarge:
            answer = problem(
                413,
                "body-too-large",
                f"the request body is over the limit of {max_body_bytes} bytes",
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            error = re.sub(r"[^a-z0-9]+", "-", (exc.reason or "error").lower()).strip("-")
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            answer = problem(
                exc.status, error, f"{exc.reason}: {request.method} {request.path}",
                headers=allow,
            )
        if isinstance(answer, ProblemAnswer):
            answer.at(request.path)
        return answer

    return middleware


def observed():
    """The outermost middleware (decision 47): the request's correlation id, from its
    ``traceparent`` or ``X-Request-ID`` or new (``services.correlation``), is on every log
    record written while it is handled and echoed in the answer's ``X-Request-ID`` and
    ``traceparent``; a command (a POST) is counted by route template, status and the rule
    that refused it (``services.metrics``)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        found = correlation_of(request.headers.get(TRACEPARENT), request.headers.get(REQUEST_ID))
        request[CORRELATION] = found
        with correlated(str(found.correlation_id)):
            try:
                answer = await handler(request)
            except web.HTTPException as exc:  # a status below 400 (json_errors answers the rest)
                exc.headers.update(found.answer_headers())
                _count(request, exc.status, "")
                raise
            except Exception:  # answered 500 by services/serving.py
                _count(request, 500, "internal-error")
                raise
        answer.headers.update(found.answer_headers())
        rule = answer.document.get("error", "") if isinstance(answer, ProblemAnswer) else ""
        _count(request, answer.status, rule)
        return answer

    return middleware


def _count(request: web.Request, status: int, rule: str) -> None:
    if request.method != "POST":
        return
    resource = request.match_info.route.resource
    route = metrics.UNMATCHED if resource is None else resource.canonical
    metrics.command_answered(route, status, rule)


PUBLIC_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/docs", "/metrics"})
"""Answered without a token: liveness, readiness, the API's own description (built from
the source code's route tables; it holds no trial data) and the metrics (counts by route,
status, rule and context: no subject id, no free text, decision 47)."""


Users = UserDirectory | LiveUsers


def authentication(users: Users | Callable[[web.Request], Users | None]):
    """Who is calling, from the bearer token: against ``users``, or against the users
    ``users(request)`` gives (each trial's own access log, decision 60; None: no trial of this
    deployment, refused)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        # An unknown path (404) or method (405) is said before asking who is calling: the
        # routes are public anyway (/openapi.json), and a 401 would send a client looking
        # for a token when its URL is wrong.
        if request.path in PUBLIC_PATHS or request.match_info.http_exception is not None:
            return await handler(request)
        header = request.headers.get("Authorization")
        if header is None:
            return unauthenticated("send 'Authorization: Bearer <token>'")
        # Neither the header nor the token is ever repeated, in the answer or the log.
        well_formed = _BEARER.fullmatch(header)
        if well_formed is None:
            return problem(
                401,
                "malformed-authorization",
                "the Authorization header must be 'Bearer <token>', the token made of letters, "
                "digits and -._~+/ (RFC 6750 section 2.1); the header is not repeated here",
                headers=_CHALLENGE,
            )
        directory = users(request) if callable(users) else users
        if directory is None:
            return unauthenticated("no trial of this deployment answers this path")
        actor = directory.authenticate(well_formed.group(1))
        if actor is None:
            return unauthenticated("the bearer token authenticates nobody")
        request[ACTOR] = actor
        return await handler(request)

    return middleware


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="trialops"'}
"""RFC 9110 section 11.6.1: a 401 carries a challenge."""


def unauthenticated(message: str) -> ProblemAnswer:
    return problem(401, "unauthenticated", message, headers=_CHALLENGE)


def describe_validation(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "(body)",
            "rule": err["type"],
            "message": err["msg"],
        }
        for err in exc.errors(include_url=False)
    ]


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, whatever its Content-Type (curl's ``-d`` sends a form type);
    ``Refused`` with a 400 problem otherwise."""
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(problem(400, "malformed-json", f"request body is not JSON: {exc}")) from None
    if not isinstance(body, dict):
        raise Refused(problem(400, "malformed-json", "request body must be a JSON object"))
    return body


class HandlesCommands(Protocol):
    """What an endpoint needs of a context's ``CommandHandler``: a command decided and its
    events appended."""

    async def handle(
        self,
        command: Any,
        actor: Actor,
        *,
        reason: str | None = ...,
        signature: Signature | None = ...,
        deadline: float | None = ...,
        still_wanted: Callable[[], bool] = ...,
        idempotency: Idempotency | None = ...,
        correlation_id: UUID | None = ...,
        traceparent: str | None = ...,
    ) -> list[Appended]: ...


SERVER_FIELDS = ("actor", "recorded_at")
"""Set by the server from the authenticated user and its clock; a body may never carry them."""


def command_endpoint(
    handler: HandlesCommands,
    command_type: type[BaseModel],
    roles: frozenset[str],
    clock=lambda: datetime.now(UTC),
    *,
    signature_meaning: Meaning | None = None,
    users: UserDirectory | LiveUsers | None = None,
    window: BusinessTimeWindow | None = None,
    issues_token: bool = False,
):
    """A POST endpoint that turns a JSON body into ``command_type`` and hands it to ``handler``.
    A command model that declares an ``actor`` field gets the authenticated actor, for rules
    about who acts (two different people at the bedside, an investigator and a sponsor).
    Besides the model's shape, every string of the body, the envelope's ``reason`` and every
    business time within ``window`` are checked (``services.validation``)."""

    async def endpoint(request: web.Request) -> web.Response:
        arrived = time.monotonic()
        actor: Actor = request[ACTOR]
        if actor.role not in roles:
            return problem(
                403,
                "role-not-permitted",
                f"role {actor.role} may not {command_type.__name__}; allowed: {sorted(roles)}",
            )
        body = await read_json_object(request)
        if bad := character_problems(body):
            return refused(bad)
        signature = None
        if signature_meaning is not None:
            signature = _signature(
                body.pop("signature", None), actor, signature_meaning, users, clock
            )
            if isinstance(signature, web.Response):
                return signature
        idempotency = _idempotency(request, body)
        if isinstance(idempotency, web.Response):
            return idempotency
        server_fields = (*SERVER_FIELDS, "token_hash") if issues_token else SERVER_FIELDS
        smuggled = [name for name in server_fields if name in body]
        if smuggled:
            fields = [
                {
                    "field": name,
                    "rule": "set-by-server",
                    "message": "set by the server, not the request",
                }
                for name in smuggled
            ]
            summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
            return problem(422, "invalid-command", summary, fields=fields)
        # A model with a reason field validates it and the handler takes it from the command;
        # otherwise the body's reason goes to the envelope only, checked against the same type.
        reason, bad = (
            (None, [])
            if "reason" in command_type.model_fields
            else checked_reason(body.pop("reason", None))
        )
        if bad:
            return refused(bad, "invalid-command")
        body.setdefault("occurred_at", clock().isoformat())
        token = None
        if issues_token:
            token = new_token()
            body["token_hash"] = hash_token(token)
        if "actor" in command_type.model_fields:
            body["actor"] = actor.model_dump()
        try:
            command = command_type.model_validate(body)
        except ValidationError as exc:
            fields = describe_validation(exc)
            summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
            return problem(422, "invalid-command", summary, fields=fields)
        if window is not None and (bad := window.problems(command, clock())):
            return refused(bad)
        found = request.get(CORRELATION)
        try:
            appended = await handler.handle(
                command,
                actor,
                reason=reason,
                signature=signature,
                deadline=arrived + COMMAND_DEADLINE_SECONDS,
                still_wanted=lambda: not _client_gone(request),
                idempotency=idempotency,
                correlation_id=None if found is None else found.correlation_id,
                traceparent=None if found is None else found.incoming_traceparent,
            )
        except DomainError as exc:
            return problem(exc.status, exc.rule, exc.message, details=exc.details)
        except StoreUnavailable as exc:
            return problem(503, exc.rule, str(exc), details=exc.details())
        answer: dict[str, Any] = {
            "events": [summarise(a) for a in appended],
            "outcome": outcome(command, appended),
        }
        if token is not None and any(
            a.envelope.payload.get("token_hash") == body["token_hash"] for a in appended
        ):
            # Shown this once: only its salted hash is kept, on the access log. A retry
            # answered from the log gets no token: the one issued then was not kept.
            answer["token"] = token
        return ok(201, answer)

    return endpoint


def refused(problems: list[Problem], error: str | None = None) -> web.Response:
    """422 naming each field and rule; ``error`` is the rule when all problems share one."""
    rules = {p.rule for p in problems}
    error = error or (rules.pop() if len(rules) == 1 else "invalid-command")
    summary = "; ".join(p.message for p in problems)
    return problem(422, error, summary, fields=[p.as_dict() for p in problems])


def _idempotency(request: web.Request, body: dict[str, Any]) -> Idempotency | web.Response | None:
    """The request's ``Idempotency-Key`` with the digest of what it asks (path and body, the
    signature block left out: it holds a token), or None without the header."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    digest = hashlib.sha256(
        orjson.dumps({"path": request.path, "body": body}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    try:
        return Idempotency(key=key, request_sha256=digest)
    except ValidationError:
        return problem(
            400,
            "invalid-idempotency-key",
            "Idempotency-Key must be 1 to 128 visible ASCII characters (a UUID, for example)",
        )


def _signature(
    block, actor: Actor, meaning: Meaning, users: UserDirectory | LiveUsers | None, clock
):
    """Part 11 (21 CFR 11.200): the signer re-authenticates for each signature; the meaning
    must be the one this record requires."""
    if not isinstance(block, dict) or not isinstance(block.get("token"), str):
        return problem(
            422,
            "signature-required",
            f"this record needs an electronic signature ({meaning}): send "
            f'"signature": {{"token": <your token again>, "meaning": "{meaning}"}}',
        )
    if block.get("meaning") != meaning:
        return problem(
            422,
            "signature-meaning",
            f"signature.meaning must be {meaning!r} for this record, not {block.get('meaning')!r}",
        )
    user = users.user_for(block["token"]) if users is not None else None
    if user is None or user.user_id != actor.user_id:
        return problem(
            401,
            "signature-reauthentication-failed",
            "signature.token does not re-authenticate the signed-in user",
        )
    return Signature(actor, user.printed_name or user.user_id, meaning, clock())


def summarise(appended) -> Mapping[str, Any]:
    e = appended.envelope
    return {
        "event_id": str(e.event_id),
        "event_type": e.event_type,
        "stream_id": e.stream_id,
        "stream_seq": e.stream_seq,
        "hash": e.hash,
        "position": appended.position.as_dict(),
    }


NEVER_IN_OUTCOME = frozenset({"token_hash"})
"""Payload members never repeated in an answer (a new token is answered once, as ``token``)."""


def outcome(command: BaseModel, appended: list[Appended]) -> dict[str, Any]:
    """What the decider reached, read from the appended events rather than written per route:
    each event type appended, with the members of its payload that the command did not already
    say (a member the command carried with the same value is left out). An eligibility
    assessment answers its criteria, met or not, and a ``SubjectScreenFailed`` when one was not
    met; a CRS observation its grade and the domains that set it; an expedited-report
    determination the reports due. A type appended more than once maps to a list."""
    said = command.model_dump(mode="json")
    found: dict[str, Any] = {}
    for item in appended:
        payload = item.envelope.payload
        news = {
            name: value
            for name, value in payload.items()
            if name not in NEVER_IN_OUTCOME and (name not in said or said[name] != value)
        }
        kind = item.envelope.event_type
        if kind not in found:
            found[kind] = news
        elif isinstance(found[kind], list):
            found[kind].append(news)
        else:
            found[kind] = [found[kind], news]
    return found


async def health(_request: web.Request) -> web.Response:
    return ok(200, {"status": "ok"})


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def readiness(handlers: Callable[[], Mapping[str, CommandHandler]]):
    """``/ready``: 200 when every context of ``handlers()`` takes commands (store open and
    caught up, no unreadable record in the way, not retired); 503 naming each context that
    does not, and why. ``/health`` only says the process answers."""

    async def ready(_request: web.Request) -> web.Response:
        status, body = contexts_readiness(handlers())
        if status == 200:
            return ok(200, body)
        return problem(status, body.pop("error"), body.pop("detail"), **body)

    return ready


def contexts_readiness(handlers: Mapping[str, CommandHandler]) -> tuple[int, dict[str, Any]]:
    """``/ready``'s status and body for ``handlers``: 200 when every context takes commands,
    else 503 with ``error`` and ``detail`` naming each context that does not."""
    contexts = {name: handler.readiness() for name, handler in handlers.items()}
    if all(c["ready"] for c in contexts.values()):
        return 200, {"ready": True, "contexts": contexts}
    waiting = sorted(name for name, c in contexts.items() if not c["ready"])
    return 503, {"error": "not-ready", "detail": f"not taking commands yet: {', '.join(waiting)}",
                 "ready": False, "contexts": contexts}
