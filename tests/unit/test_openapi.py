"""The OpenAPI 3.1 document of the command services (services/openapi.py): valid by the
OpenAPI 3.1 specification (checked by openapi-spec-validator), and covering every route the
server wires, as the route tables and the HTTP layer define them."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from services.catalog import services
from services.docs_page import page
from services.http import SERVER_FIELDS
from services.openapi import document
from services.problems import PROBLEM_JSON
from trial.config import load_trial

from .http_harness import make_app
from .test_safety_givens import day

TRIAL = load_trial()
DOC = document(services().values(), TRIAL.roles_for)
ROUTES = [(spec, route) for spec in services().values() for route in spec.routes]


def served(path: str):
    app, _ = make_app(lambda: day(3))

    async def go():
        async with TestClient(TestServer(app)) as client:
            answer = await client.get(path)
            return answer.status, answer.content_type, await answer.read()

    return asyncio.run(go()), app


def test_the_document_is_valid_openapi_3_1():
    validate(DOC)
    assert DOC["openapi"].startswith("3.1")


def test_the_served_document_is_valid_and_lists_every_route_the_server_answers():
    (status, content_type, raw), app = served("/openapi.json")
    doc = orjson.loads(raw)
    validate(doc)
    wired = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert (status, content_type) == (200, "application/json")
    assert described == wired


def test_every_route_of_the_route_tables_is_a_post_operation_for_the_roles_of_the_trial_file():
    for _spec, route in ROUTES:
        operation = DOC["paths"][route.path]["post"]
        assert operation["x-roles"] == sorted(TRIAL.roles_for(route.command)), route.path


@pytest.mark.parametrize(("spec", "route"), ROUTES, ids=[r.path for _s, r in ROUTES])
def test_a_request_body_is_the_command_model_less_what_the_server_sets(spec, route):
    body = DOC["paths"][route.path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    model_fields = set(route.model.model_fields)

    assert not set(SERVER_FIELDS) & set(body["properties"])
    assert "occurred_at" not in body.get("required", [])
    assert set(body["properties"]) - {"reason", "signature"} <= model_fields
    required = {n for n, f in route.model.model_fields.items() if f.is_required()}
    assert required - {"occurred_at", "actor", "token_hash"} <= set(body.get("required", []))
    if route.issues_token:
        assert "token_hash" not in body["properties"]
    if route.signature is not None:
        assert body["properties"]["signature"]["properties"]["meaning"] == {
            "const": route.signature
        }
        assert "signature" in body["required"]


def test_every_error_answer_is_documented_as_a_problem():
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert list(answer["content"]) == [PROBLEM_JSON], (path, method, status)


def test_a_route_that_issues_a_token_documents_it_in_its_answer():
    answer = DOC["paths"]["/access/users"]["post"]["responses"]["201"]["content"][
        "application/json"]["schema"]
    assert "token" in answer["allOf"][1]["properties"]


def test_the_page_lists_every_route_without_fetching_anything():
    (status, content_type, raw), _app = served("/docs")

    page = raw.decode()
    assert (status, content_type) == (200, "text/html")
    for _spec, route in ROUTES:
        assert f"POST {route.path}</code>" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page.replace(
        "https://trialops.example/problems/", "")


def test_with_several_trials_the_commands_are_described_under_their_trials_path():
    # Decision 60: with several trials a command goes to /trials/<trial id>/<route>.
    trials = ["NCT04577326", "NCT06623396"]
    doc = document(services().values(), TRIAL.roles_for, trials)
    validate(doc)
    [server] = doc["servers"]
    assert server["url"] == "/trials/{trial_id}"
    assert server["variables"]["trial_id"] == {"enum": trials, "default": trials[0]}
    # The routes every server has stay at the root; a command's path has no server of its own
    for path in ("/health", "/ready", "/openapi.json", "/docs", "/metrics"):
        assert doc["paths"][path]["servers"] == [{"url": "/"}], path
    assert "servers" not in doc["paths"]["/enrollment/subjects"]
    # and one trial's document is as before: its commands at the root
    assert "servers" not in DOC and "servers" not in DOC["paths"]["/health"]
    assert document(services().values(), TRIAL.roles_for, trials[:1]) == DOC
    # and the /docs page shows each command under its trial's path, the probes at the root
    shown = page(doc)
    assert "<code>POST /trials/{trial_id}/enrollment/subjects</code>" in shown
    assert "<code>GET /health</code>" in shown and "/trials/{trial_id}/health" not in shown
    assert "/trials/" not in page(DOC)
