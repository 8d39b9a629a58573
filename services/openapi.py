"""The command API described in OpenAPI 3.1, built from what the server actually wires: the route
tables (``services/<context>/routes.py``) and the command models' own JSON Schemas (pydantic),
adjusted to what the HTTP layer (``services.http``) does with a body before the model sees it.
Served at ``/openapi.json``, with a plain HTML page at ``/docs`` (no script, nothing fetched
from elsewhere). Decision 44 says why it is built this way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from services.catalog import Route, ServiceSpec
from services.docs_page import page
from services.fields import Reason
from services.http import SERVER_FIELDS
from services.problems import PROBLEM_JSON, PROBLEM_TYPES

REF = "#/components/schemas/{model}"
JSON = "application/json"

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details. `error` (the rule's name) and `message` (the "
    "same text as `detail`) are kept from the API's earlier error format; a refusal by a rule "
    "of the trial adds `details` (the values it was refused with).",
    "required": ["type", "title", "status", "detail", "error", "message"],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": f"{PROBLEM_TYPES}<rule>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "the request's path"},
        "error": {"type": "string", "description": "the rule's name (kebab-case)"},
        "message": {"type": "string"},
        "details": {"type": "object"},
    },
}
_FIELD_PROBLEM = {
    "type": "object",
    "required": ["field", "rule", "message"],
    "properties": {"field": {"type": "string"}, "rule": {"type": "string"},
                   "message": {"type": "string"}},
}
_INVALID = {
    "allOf": [
        {"$ref": REF.format(model="Problem")},
        {
            "type": "object",
            "required": ["fields"],
            "properties": {"fields": {"type": "array", "items": _FIELD_PROBLEM}},
        },
    ],
    "description": "The body breaks the command's shape or a rule every command obeys "
    "(forbidden characters, the reason, business times within the trial's window, the "
    "electronic signature): one entry per field and rule.",
}
_EVENT = {
    "type": "object",
    "required": ["event_id", "event_type", "stream_id", "stream_seq", "hash", "position"],
    "properties": {
        "event_id": {"type": "string", "format": "uuid"},
        "event_type": {"type": "string"},
        "stream_id": {"type": "string"},
        "stream_seq": {"type": "integer", "minimum": 1},
        "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "position": {
            "type": "object",
            "required": ["topic", "partition", "offset"],
            "properties": {"topic": {"type": "string"}, "partition": {"type": "integer"},
                           "offset": {"type": "integer"}},
            "description": "where it was appended: a projection's `wait_for` takes "
            "TOPIC:PARTITION:OFFSET",
        },
    },
}
_ANSWER = {
    "type": "object",
    "required": ["events", "outcome"],
    "properties": {
        "events": {"type": "array", "items": {"$ref": REF.format(model="AppendedEvent")}},
        "outcome": {
            "type": "object",
            "description": "What the decider reached: each event type appended, with the "
            "members of its payload the command did not already say (an eligibility "
            "assessment's criteria and a SubjectScreenFailed when one was not met, a CRS or "
            "ICANS grade, the expedited reports due). A type appended more than once maps to a "
            "list.",
            "additionalProperties": {
                "anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]
            },
        },
    },
}

ERRORS: dict[str, str] = {
    "400": "The body is not a JSON object (`malformed-json`), or the Idempotency-Key header "
    "is not 1 to 128 visible ASCII characters (`invalid-idempotency-key`).",
    "401": "No bearer token, a malformed Authorization header, a token that authenticates "
    "nobody, or a signature's token that does not re-authenticate the signed-in user.",
    "403": "The user's role may not issue this command (`role-not-permitted`, the roles "
    "of the trial file's `permissions`), or a rule of the trial about who acts refused it.",
    "404": "The command names something the context does not know (a subject, a lot, an AE).",
    "409": "A rule of the trial refused the command (the rule's name in `error`, its values in "
    "`details`); nothing was appended.",
    "413": "The body is over the server's limit (`body-too-large`).",
    "422": "",
    "500": "The server failed to handle the request (`internal-error`); the log has the cause.",
    "503": "The context takes no command now: its event store is unavailable, it stands at an "
    "unreadable record (`context-halted`), its writer was retired, or the command could not be "
    "decided before its deadline; nothing was appended, or the outcome is unknown and a retry "
    "with the same Idempotency-Key is safe.",
}


def document(
    specs: Iterable[ServiceSpec], roles: Callable[[str], Iterable[str]] | None = None,
    trials: Sequence[str] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a server wiring ``specs`` (and the routes every server has).
    ``roles(command)`` names who may issue a command (the trial file), when known. With
    several ``trials`` the commands are served under ``/trials/{trial_id}`` (decision 60): the
    document says so with a server whose variable takes the trial ids, and the routes every
    server has keep the root."""
    specs = list(specs)
    routes = [(spec, route) for spec in specs for route in spec.routes]
    models = list(dict.fromkeys(route.model for _, route in routes))
    keys, schemas = models_json_schema(
        [(model, "validation") for model in models], ref_template=REF
    )
    components: dict[str, Any] = dict(schemas.get("$defs", {}))
    paths: dict[str, Any] = {}
    for spec, route in routes:
        top = keys[(route.model, "validation")]["$ref"].rsplit("/", 1)[-1]
        body = _request_body(copy.deepcopy(components[top]), route)
        paths[route.path] = {"post": _operation(spec, route, body, roles)}
    # A command model's own schema is inlined, adjusted, in its operation; only what the
    # adjusted bodies still refer to stays a component.
    referenced = _references(paths)
    while True:
        more = _references({name: components[name] for name in referenced if name in components})
        if more <= referenced:
            break
        referenced |= more
    components = {name: s for name, s in components.items() if name in referenced}
    components.update(
        Problem=PROBLEM_SCHEMA, InvalidCommand=_INVALID, AppendedEvent=_EVENT, CommandAnswer=_ANSWER
    )
    fixed = _fixed_paths()
    servers: dict[str, Any] = {}
    if len(trials) > 1:
        servers = {"servers": [{
            "url": "/trials/{trial_id}",
            "description": "The trial the command is for: each trial has its own streams, "
                           "users and rules",
            "variables": {"trial_id": {"enum": list(trials), "default": trials[0]}},
        }]}
        for item in fixed.values():
            item["servers"] = [{"url": "/"}]
    paths.update(fixed)
    return {
        "openapi": "3.1.0",
        **servers,
        "info": {
            "title": "trialops command services",
            "version": version(),
            "description": _DESCRIPTION,
        },
        "tags": [{"name": spec.context} for spec in specs],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


_DESCRIPTION = (
    "Each POST records a command of the trial: the body is the command; the answer (201) lists "
    "the events appended and the `outcome` the decider reached. Every error, 4xx or 5xx, is an "
    "RFC 9457 problem (`application/problem+json`) whose `error` names the rule; an unknown "
    "path is a 404 and a method a path does not take a 405 (with `Allow`), before any token "
    "is asked for. The body is read as JSON whatever its Content-Type. `occurred_at` (when it "
    "happened at the site) defaults to the server's clock; `actor` and `recorded_at` are set by "
    "the server. No string may hold a control or bidirectional formatting character."
)


def version() -> str:
    """The installed package's version (pyproject.toml)."""
    try:
        return metadata.version("trialops")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _request_body(schema: dict[str, Any], route: Route) -> dict[str, Any]:
    """The model's schema as a request body: what the server sets is not sent, ``occurred_at``
    may be left to the server's clock, the envelope's ``reason`` and the electronic signature
    are accepted where the HTTP layer takes them (``services.http.command_endpoint``)."""
    properties: dict[str, Any] = schema.setdefault("properties", {})
    server_set = (*SERVER_FIELDS, "token_hash") if route.issues_token else SERVER_FIELDS
    for name in server_set:
        properties.pop(name, None)
    required = [
        n for n in schema.get("required", []) if n not in server_set and n != "occurred_at"
    ]
    if "reason" not in properties:
        properties["reason"] = {
            **TypeAdapter(Reason).json_schema(),
            "description": "why, when the change needs one (kept in the event's envelope)",
        }
    if route.signature is not None:
        properties["signature"] = {
            "type": "object",
            "description": "Part 11 electronic signature (21 CFR 11.200): the signer's token "
            "again and the meaning this record requires",
            "required": ["token", "meaning"],
            "properties": {"token": {"type": "string"}, "meaning": {"const": route.signature}},
        }
        required.append("signature")
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    return schema


def _operation(
    spec: ServiceSpec, route: Route, body: dict[str, Any],
    roles: Callable[[str], Iterable[str]] | None,
) -> dict[str, Any]:
    answer: dict[str, Any] = {"$ref": REF.format(model="CommandAnswer")}
    if route.issues_token:
        answer = {
            "allOf": [
                answer,
                {"type": "object", "properties": {"token": {
                    "type": "string",
                    "description": "the new token, shown this once (only its hash is kept)",
                }}},
            ]
        }
    who = sorted(roles(route.command)) if roles is not None else []
    description = (route.model.__doc__ or "").strip()
    if who:
        description += f"\n\nMay be issued by: {', '.join(who)}."
    if route.signature is not None:
        description += f"\n\nNeeds an electronic signature meaning {route.signature!r}."
    responses: dict[str, Any] = {
        "201": {"description": "Recorded", "content": {JSON: {"schema": answer}}}
    }
    for status, text in ERRORS.items():
        if status == "422":
            responses[status] = {
                "description": _INVALID["description"],
                "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(model="InvalidCommand")}}},
            }
        else:
            responses[status] = _problem(text)
    operation: dict[str, Any] = {
        "operationId": f"{route.command}-{route.path.strip('/').replace('/', '-')}",
        "summary": route.command.replace("-", " ").capitalize(),
        "description": description,
        "tags": [spec.context],
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "A retry with the same key and body gets the first answer back "
                "and appends nothing (a UUID, for example).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128,
                           "pattern": "^[\\x21-\\x7e]+$"},
            }
        ],
        "requestBody": {"required": True, "content": {JSON: {"schema": body}}},
        "responses": responses,
    }
    if who:
        operation["x-roles"] = who
    return operation


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(model="Problem")}}},
    }


def _fixed_paths() -> dict[str, Any]:
    open_to_all: list[dict[str, Any]] = []
    return {
        "/health": {"get": {
            "operationId": "health", "summary": "The process answers", "security": open_to_all,
            "responses": {"200": {"description": "Alive", "content": {JSON: {"schema": {
                "type": "object", "required": ["status"],
                "properties": {"status": {"const": "ok"}}}}}}},
        }},
        "/ready": {"get": {
            "operationId": "ready", "summary": "Every context takes commands",
            "security": open_to_all,
            "responses": {
                "200": {"description": "Ready", "content": {JSON: {"schema": {
                    "type": "object", "required": ["ready", "contexts"],
                    "properties": {"ready": {"const": True}, "contexts": {"type": "object"}}}}}},
                "503": _problem("A context does not take commands (`not-ready`): `contexts` "
                                "says which and why."),
            },
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics (decision 47)",
            "security": open_to_all,
            "responses": {"200": {"description": "Prometheus text exposition format 0.0.4: "
                                  "commands by route, status and rule; append latency; "
                                  "commands per batch; contexts ready",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "security": open_to_all,
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {JSON: {"schema": {"type": "object"}}}}},
        }},
        "/docs": {"get": {
            "operationId": "docs", "summary": "This document as a page", "security": open_to_all,
            "responses": {"200": {"description": "HTML",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
    }


def _references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[-1])
        for item in value.values():
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


# ---------------------------------------------------------------- serving


def add_description(
    app: web.Application, specs: Iterable[ServiceSpec],
    roles: Callable[[str], Iterable[str]] | None = None, trials: Sequence[str] = (),
) -> dict[str, Any]:
    """Serve the document of ``specs`` at ``/openapi.json`` and its page at ``/docs`` (both
    open to anyone: ``services.http.PUBLIC_PATHS``); built once, here."""
    doc = document(specs, roles, trials)
    raw = orjson.dumps(doc)
    shown = page(doc)

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(body=raw, content_type=JSON)

    async def docs(_request: web.Request) -> web.Response:
        return web.Response(text=shown, content_type="text/html")

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
    return doc

