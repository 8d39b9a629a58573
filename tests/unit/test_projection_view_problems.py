"""The projections' views answer every error as the command services do: an RFC 9457 problem
(``application/problem+json``) naming the rule (projections/views.py, decision 44). A Faust app
that is never started serves the views through its aiohttp application; no Kafka.

Sources: RFC 9457 (problem details), RFC 9110 section 15.5.6 (405 with ``Allow``)."""

from __future__ import annotations

import asyncio
import collections

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from projections import catalog
from projections.views import _serve
from services.auth import ADMINISTRATOR, UserDirectory
from services.problems import PROBLEM_JSON

AUDITOR = {"Authorization": "Bearer demo-auditor"}
VIEW = "/projections/patient-timeline"


def ask(method: str, path: str, headers=None):
    app = faust.App("test-view-problems", broker="memory://", web_tables_enabled=False,
                    web_router_enabled=False, web_graph_enabled=False, web_stats_enabled=False)
    _serve(app, catalog.get("patient-timeline"), {}, collections.defaultdict(int),
           UserDirectory.demo())

    async def go():
        async with TestClient(TestServer(app.web.web_app)) as client:
            answer = await client.request(method, path, headers=headers or {})
            return answer.status, answer.headers, await answer.json(content_type=None)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "rule"),
    [
        ("GET", "/nowhere", None, 404, "not-found"),
        ("GET", VIEW, None, 401, "unauthenticated"),
        ("GET", VIEW, {"Authorization": f"Bearer demo-{ADMINISTRATOR}"}, 403,
         "role-not-permitted"),
        ("GET", f"{VIEW}?limit=0", AUDITOR, 400, "bad-query"),
        ("GET", f"{VIEW}?wait_for=nonsense", AUDITOR, 400, "bad-query"),
        ("GET", f"{VIEW}?subject_id=MSK-0404", AUDITOR, 404, "not-found"),
        ("POST", VIEW, AUDITOR, 405, "method-not-allowed"),
    ],
)
def test_every_error_of_the_views_is_a_problem_naming_the_rule(method, path, headers, status,
                                                               rule):
    got, head, body = ask(method, path, headers)

    assert got == status, body
    assert head["Content-Type"].startswith(PROBLEM_JSON)
    assert (body["status"], body["error"], body["type"]) == (
        status, rule, f"https://trialops.example/problems/{rule}")
    assert body["instance"] == path.split("?")[0] and body["detail"] == body["message"]


def test_a_projection_behind_its_wait_for_is_a_504_problem():
    got, _head, body = ask(
        "GET", f"{VIEW}?wait_for=t.enrollment.events:0:5&timeout=0.1", AUDITOR
    )

    assert (got, body["error"], body["status"]) == (504, "projection-behind", 504)


def test_the_worker_describes_its_views_in_a_valid_openapi_document():
    status, head, doc = ask("GET", "/openapi.json")

    validate(doc)
    assert (status, head["Content-Type"].split(";")[0]) == (200, "application/json")
    view = doc["paths"][VIEW]["get"]
    assert {p["name"] for p in view["parameters"]} >= {"subject_id", "limit", "cursor", "as_of"}
    assert set(view["responses"]) == {"200", "400", "401", "403", "404", "504"}
