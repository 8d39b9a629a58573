"""Issue 14's HTTP conventions on the real stack (services and worker on the broker): both
describe themselves in a valid OpenAPI 3.1 document covering every route; an unknown path, a
wrong method and a body over the limit are RFC 9457 problems; a recorded command answers the
outcome its decider reached.

Sources: RFC 9457 (problem details), RFC 9110 section 15.5.6 (405 with ``Allow``), DOMAIN.md
section 1 (eligibility: ECOG 0-1)."""

from __future__ import annotations

import pytest
import requests
from openapi_spec_validator import validate

from services.catalog import services
from services.problems import PROBLEM_JSON
from tests.integration.helpers import CONSENT_SIGNED, ELIGIBLE_EVIDENCE, INVESTIGATOR, NOW, posted

pytestmark = pytest.mark.kafka


def problem_of(answer: requests.Response, status: int, rule: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith(PROBLEM_JSON), answer.headers
    body = answer.json()
    assert (body["status"], body["error"]) == (status, rule), body
    assert body["type"].endswith(f"/{rule}") and body["detail"] == body["message"]
    return body


def test_the_stack_describes_itself_answers_errors_as_problems_and_says_outcomes(stack):
    services_url, worker_url = stack.service_url, stack.projections_url

    # Then each server's document is valid OpenAPI 3.1; the services' covers every route
    document = requests.get(f"{services_url}/openapi.json", timeout=30).json()
    validate(document)
    every_route = {r.path for spec in services().values() for r in spec.routes}
    assert every_route | {"/health", "/ready", "/openapi.json", "/docs", "/metrics"} == set(
        document["paths"])
    views = requests.get(f"{worker_url}/openapi.json", timeout=30).json()
    validate(views)
    assert "/projections/patient-timeline" in views["paths"]
    assert requests.get(f"{services_url}/docs", timeout=30).status_code == 200

    # And an unknown path (without a token), a wrong method and a large body are problems
    body = problem_of(
        requests.post(f"{services_url}/enrollment/eligibility", json={}, timeout=30),
        404, "not-found",
    )
    assert body["instance"] == "/enrollment/eligibility"
    wrong = requests.get(f"{services_url}/enrollment/subjects", timeout=30)
    problem_of(wrong, 405, "method-not-allowed")
    assert wrong.headers["Allow"] == "POST"
    problem_of(
        requests.post(
            f"{services_url}/enrollment/subjects", data=b'{"x": "' + b"x" * (1 << 20) + b'"}',
            headers={"Authorization": "Bearer demo-site_coordinator"}, timeout=30,
        ),
        413, "body-too-large",
    )
    problem_of(requests.get(f"{worker_url}/nowhere", timeout=30), 404, "not-found")
    problem_of(requests.get(f"{worker_url}/projections/safety", timeout=30), 401,
               "unauthenticated")

    # When a subject with ECOG 2 is assessed
    posted(stack, "/enrollment/subjects", {"subject_id": "MSK-1401", "site_id": "MSK"})
    posted(stack, "/enrollment/prescreenings", {"subject_id": "MSK-1401", "msln_ihc_percent": 60,
                                                "occurred_at": CONSENT_SIGNED})
    posted(stack, "/enrollment/consents", {"subject_id": "MSK-1401", "form_version": "ICF-v1",
                                           "signed_at": CONSENT_SIGNED,
                                           "occurred_at": CONSENT_SIGNED})
    answer = posted(
        stack, "/enrollment/eligibility-assessments",
        {"subject_id": "MSK-1401", **ELIGIBLE_EVIDENCE, "ecog": 2, "occurred_at": NOW},
        token=INVESTIGATOR,
    )

    # Then the answer says the subject failed screening on ECOG
    failed = answer["outcome"]["SubjectScreenFailed"]["failed_criteria"]
    assert [c["criterion"] for c in failed] == ["ecog"], answer
