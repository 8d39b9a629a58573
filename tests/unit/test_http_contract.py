"""Contract test (issue 14): the command services answer as their OpenAPI document says.
Schemathesis generates requests from the document for a few operations and checks every
answer against it: no server error, a documented status code, the documented content type,
a body of the documented schema. The server is the real HTTP layer over the real deciders
(tests/unit/http_harness.py) on a loopback port; a small ``max_examples`` keeps it fast."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from services.catalog import services
from services.openapi import document
from trial.config import load_trial

from .http_harness import make_app
from .test_safety_givens import day, given, report, run, treated

TRIAL = load_trial()
SCHEMA = schemathesis.openapi.from_dict(document(services().values(), TRIAL.roles_for)).include(
    path_regex=r"^/(health|ready|openapi\.json|enrollment/subjects|"
    r"enrollment/eligibility-assessments|safety/(crs-grades|adverse-events))$"
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    unsupported_method,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The harness app on a loopback port, served from its own thread and event loop; the
    safety context knows an infused subject with a reported CRS, so a generated grade can be
    accepted as well as refused."""
    _events, safety = run(given(treated()), report())
    app, _handlers = make_app(lambda: day(3), {"safety": safety})
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()


@SCHEMA.parametrize()
@settings(
    max_examples=8, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)
def test_the_services_answer_as_their_document_says(case, base_url):
    # The trial file lets a site coordinator register subjects, so some registrations succeed.
    who = "site_coordinator" if case.path == "/enrollment/subjects" else "investigator"
    response = case.call(
        base_url=base_url, headers={"Authorization": f"Bearer demo-{who}"}, timeout=10
    )
    case.validate_response(response, checks=CHECKS)
