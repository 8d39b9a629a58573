"""The projections worker's read API in OpenAPI 3.1: each projection's GET view with its query
parameters (the key filter, ``as_of``, ``wait_for``, a page's ``limit`` and ``cursor``), and the
worker's own pages. Served at the worker's ``/openapi.json`` (registered by
``projections.views``); the command services have their own (services/openapi.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from projections.base import Projection
from services.openapi import PROBLEM_SCHEMA, version
from services.problems import PROBLEM_JSON

JSON = "application/json"
REF = "#/components/schemas/Problem"


def document(projections: Iterable[Projection]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for projection in projections:
        paths[f"/projections/{projection.name}"] = {"get": _view(projection)}
    paths.update(_fixed())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trialops projections",
            "version": version(),
            "description": "Read-only views of the projections, for a reader with a read "
            "role. Every error is an RFC 9457 problem (`application/problem+json`) whose "
            "`error` names the rule; an unknown path is a 404.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": REF}}}}


def _view(projection: Projection) -> dict[str, Any]:
    parameters = [
        _query(projection.key_name, f"one {projection.key_name} only", {"type": "string"}),
        _query("trial_id", "the trial (decision 61): may be left out when the deployment runs "
               "one trial, required when it runs several", {"type": "string"}),
        _query("as_of", "the time the view is read at (ISO 8601 with a zone; default now)",
               {"type": "string", "format": "date-time"}),
        _query("wait_for", "TOPIC:PARTITION:OFFSET a command's answer gave: wait until the "
               "projection has applied it", {"type": "string"}),
        _query("timeout", "seconds to wait for `wait_for`, in (0, 60]; default 5",
               {"type": "number", "exclusiveMinimum": 0, "maximum": 60}),
    ]
    if projection.listing is not None:
        parameters += [
            _query("limit", "items per page, 1 to 1000 (default 100)",
                   {"type": "integer", "minimum": 1, "maximum": 1000}),
            _query("cursor", "the previous page's `next_cursor`", {"type": "string"}),
        ]
    return {
        "operationId": f"view-{projection.name}",
        "summary": f"The {projection.name} projection",
        "parameters": parameters,
        "responses": {
            "200": {"description": "The projection's document",
                    "content": {JSON: {"schema": {"type": "object"}}}},
            "400": _problem("A bad query parameter (`bad-query`)."),
            "401": _problem("No bearer token, or one that authenticates nobody."),
            "403": _problem("The user's role may not read the projections."),
            "404": _problem(f"No such {projection.key_name}, or a trial the deployment does "
                            "not run (`not-found`)."),
            "504": _problem("The projection had not applied `wait_for` within `timeout` "
                            "(`projection-behind`)."),
        },
    }


def _fixed() -> dict[str, Any]:
    public: list[dict[str, Any]] = []
    return {
        "/": {"get": {
            "operationId": "dashboard", "summary": "The operations board (a static page)",
            "security": public,
            "responses": {"200": {"description": "HTML",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        "/ready": {"get": {
            "operationId": "ready", "summary": "Every event topic assigned, no agent halted",
            "security": public,
            "responses": {
                "200": {"description": "Ready; `alerts` says `on`, or `off: ` and why (decision "
                                       "52: alerts off do not make the worker unready)",
                        "content": {JSON: {"schema": {"type": "object"}}}},
                "503": _problem("Not ready: a problem whose `problems`, `halted` and `lag` "
                                "members say why."),
            },
        }},
        "/projections": {"get": {
            "operationId": "projections-status", "summary": "What each projection has applied",
            "responses": {
                "200": {"description": "Status", "content": {JSON: {"schema": {"type": "object"}}}},
                "401": _problem("No bearer token, or one that authenticates nobody."),
                "403": _problem("The user's role may not read the projections."),
            },
        }},
        "/projections/inbox": {"get": {
            "operationId": "view-inbox",
            "summary": "What each role must do next, live (decision 51)",
            "parameters": [
                _query("role", "one role's items only (a role that reads the projections; "
                       "the auditor's inbox is empty); default every role", {"type": "string"}),
                _query("as_of", "the moment the inbox is read at (ISO 8601 with a zone; "
                       "default now; not before the last event folded)",
                       {"type": "string", "format": "date-time"}),
            ],
            "responses": {
                "200": {"description": "`as_of`, `role`, `items` (kind, subject, roles, "
                        "command, route, due, overdue, why, detail) and `overdue`, as "
                        "`trialops inbox --json` prints them",
                        "content": {JSON: {"schema": {"type": "object"}}}},
                "400": _problem("An unknown role, or an `as_of` that is not an ISO time "
                                "with a zone or is before the last event folded "
                                "(`bad-query`)."),
                "401": _problem("No bearer token, or one that authenticates nobody."),
                "403": _problem("The user's role may not read the projections."),
                "503": _problem("The log cannot be read yet (`inbox-not-ready`)."),
            },
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics (decision 47)",
            "security": public,
            "responses": {"200": {"description": "Prometheus text exposition format 0.0.4: "
                                  "events applied per topic, lag per partition, halted "
                                  "partitions, dead letters per topic",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "security": public,
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {JSON: {"schema": {"type": "object"}}}}},
        }},
    }
