"""The projections' HTTP views are closed by default, on the real worker and broker: a view
without a token, or with a token nobody holds, gets 401; every trial role's token (the auditor
included) reads; ``/ready`` stays open as a probe; Faust's own ``/table`` and ``/router`` views,
which would serve raw table data to anyone, are not served."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from clients.http import call
from services.auth import READ_ROLES

pytestmark = pytest.mark.kafka

VIEWS = (
    "/projections",
    "/projections/cohort-occupancy",
    "/projections/patient-timeline?subject_id=MSK-0101",
    "/projections/safety",
)


def test_a_projection_view_needs_the_token_of_a_trial_role(stack):
    # Given the worker is up with the demo users
    base = stack.projections_url

    # Then without a token, or with one nobody holds, every view answers 401, naming no token
    for path in VIEWS:
        status, body = call("GET", base + path)
        assert (status, body["error"]) == (401, "unauthenticated"), path
        status, body = call("GET", base + path, token="demo-courier")
        assert (status, body["error"]) == (401, "unauthenticated"), path
        assert "demo-courier" not in str(body)

    # And every role of the trial reads, the auditor included
    for role in READ_ROLES:
        status, body = call("GET", f"{base}/projections/cohort-occupancy", token=f"demo-{role}")
        assert status == 200 and "cohorts" in body, role

    # And the readiness probe and the page itself (which holds no data) need no token
    status, body = call("GET", f"{base}/ready")
    assert status in (200, 503) and "ready" in body
    status, page = _get(f"{base}/")
    assert status == 200 and 'data-testid="token"' in page

    # And Faust's built-in views of the raw tables and the cluster are not served at all
    for path in ("/table/", "/table/patient-timeline/", "/router/", "/graph/", "/stats/"):
        status, _text = _get(base + path, token="demo-auditor")
        assert status == 404, path


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    """Status and text of any answer, JSON or not (Faust's 404 page is plain text)."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
