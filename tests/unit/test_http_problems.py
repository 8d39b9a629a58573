"""The services' HTTP conventions (issue 14), in process with the real middlewares, endpoints
and deciders (tests/unit/http_harness.py), no Kafka.

Sources: RFC 9457 (problem details: ``type``, ``title``, ``status``, ``detail``, ``instance``;
media type ``application/problem+json``), RFC 9110 sections 15.5.6 and 11.6.1 (a 405 names the
allowed methods in ``Allow``; a 401 carries a ``WWW-Authenticate`` challenge); ASTCT consensus
grading (Lee et al., Biol Blood Marrow Transplant 2019) and 21 CFR 312.32(c)(1) for the outcomes
a POST answers; DOMAIN.md section 1 for eligibility.

Given the command API, When a request fails for any cause, Then the answer is a problem naming
the rule; When a command is recorded, Then the answer says what the decider reached."""

from __future__ import annotations

import asyncio
from datetime import date, datetime

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.http import MAX_BODY_BYTES
from services.problems import PROBLEM_JSON

from .http_harness import make_app
from .test_enrollment_screening import PASSING_LABS, consented_subject
from .test_safety_expedited_reports import SERIOUS_UNEXPECTED
from .test_safety_givens import AE, SUBJECT, day, given, report, run, treated

COORDINATOR = {"Authorization": "Bearer demo-site_coordinator"}
INVESTIGATOR = {"Authorization": "Bearer demo-investigator"}
SAFETY_OFFICER = {"Authorization": "Bearer demo-safety_officer"}


THIRD_DAY = day(3)


def ask(method: str, path: str, body=None, headers=None, *, states=None, now=THIRD_DAY):
    """One request to a fresh app; ``(status, headers, decoded body)``."""
    app, _handlers = make_app(lambda: now, states)

    async def go():
        async with TestClient(TestServer(app)) as client:
            data = body if body is None or isinstance(body, bytes) else orjson.dumps(body)
            answer = await client.request(method, path, data=data, headers=headers or {})
            raw = await answer.read()
            return answer.status, answer.headers, raw

    status, head, raw = asyncio.run(go())
    decoded = orjson.loads(raw) if raw and "json" in head.get("Content-Type", "") else raw
    return status, head, decoded


def assert_problem(status, head, body, expected_status: int, rule: str, path: str):
    assert status == expected_status, body
    assert head["Content-Type"].startswith(PROBLEM_JSON), head
    assert body["type"] == f"https://trialops.example/problems/{rule}"
    assert body["title"] and body["detail"] == body["message"]
    assert (body["status"], body["error"], body["instance"]) == (expected_status, rule, path)


# ---------------------------------------------------------------- problems, every cause


def test_an_unknown_path_is_a_404_problem_before_any_token_is_asked_for():
    assert_problem(*ask("POST", "/enrollment/subject", {}), 404, "not-found",
                   "/enrollment/subject")


def test_a_method_the_path_does_not_take_is_a_405_problem_naming_the_allowed_method():
    status, head, body = ask("GET", "/enrollment/subjects", headers=COORDINATOR)

    assert_problem(status, head, body, 405, "method-not-allowed", "/enrollment/subjects")
    assert head["Allow"] == "POST"


def test_a_body_over_the_limit_is_a_413_problem():
    body = orjson.dumps({"subject_id": "MSK-0001", "padding": "x" * MAX_BODY_BYTES})

    status, head, answer = ask("POST", "/enrollment/subjects", body, COORDINATOR)

    assert_problem(status, head, answer, 413, "body-too-large", "/enrollment/subjects")


def test_no_token_is_a_401_problem_with_a_bearer_challenge():
    status, head, body = ask("POST", "/enrollment/subjects", {"subject_id": "MSK-0001"})

    assert_problem(status, head, body, 401, "unauthenticated", "/enrollment/subjects")
    assert head["WWW-Authenticate"].startswith("Bearer")


def test_a_role_the_trial_file_does_not_permit_is_a_403_problem():
    # The trial file's permissions: a site coordinator does not open cohorts.
    status, head, body = ask(
        "POST", "/enrollment/cohorts", {"cohort_id": "DL1-IP", "dose_level": "DL1"}, COORDINATOR
    )

    assert_problem(status, head, body, 403, "role-not-permitted", "/enrollment/cohorts")


def test_a_body_that_is_not_json_is_a_400_problem():
    status, head, body = ask("POST", "/enrollment/subjects", b"{subject", COORDINATOR)

    assert_problem(status, head, body, 400, "malformed-json", "/enrollment/subjects")


def test_an_invalid_command_is_a_422_problem_keeping_its_fields():
    status, head, body = ask(
        "POST", "/enrollment/subjects", {"subject_id": "MSK-0001", "site_id": " "}, COORDINATOR
    )

    assert_problem(status, head, body, 422, "invalid-command", "/enrollment/subjects")
    assert [f["field"] for f in body["fields"]] == ["site_id"]


def test_a_refusal_by_a_rule_of_the_trial_is_a_problem_keeping_the_rule_and_its_values():
    # Given no subject registered, When an adverse event is reported for one
    status, head, body = ask(
        "POST", "/safety/adverse-events",
        report().model_dump(mode="json") | {"subject_id": "MSK-0999"}, INVESTIGATOR,
    )

    # Then the safety decider's rule is the problem's type, its values kept in details
    assert_problem(status, head, body, 404, "subject-must-be-registered",
                   "/safety/adverse-events")
    assert body["details"] == {"subject_id": "MSK-0999"}


def test_a_context_not_ready_is_a_503_problem_saying_which():
    app, handlers = make_app(lambda: day(3))
    handlers["safety"].readiness = lambda: {"ready": False, "problem": "halted", "topic": "t"}

    async def go():
        async with TestClient(TestServer(app)) as client:
            answer = await client.get("/ready")
            return answer.status, answer.headers, await answer.json()

    status, head, body = asyncio.run(go())

    assert_problem(status, head, body, 503, "not-ready", "/ready")
    assert body["contexts"]["safety"]["problem"] == "halted"
    assert body["ready"] is False


# ---------------------------------------------------------------- outcomes


def test_an_eligibility_assessment_answers_the_criterion_that_failed():
    # Given a consented subject, When the investigator assesses ECOG 2 (the trial: ECOG 0-1)
    body = {
        "subject_id": "MSK-0007", "peritoneal_carcinomatosis_by": ["imaging"], "prior_lines": 2,
        "recist_lesion": "measurable", "age_years": 57, "ecog": 2, "labs": PASSING_LABS,
        "active_infection": False, "screening_started_at": "2025-03-03T08:00:00Z",
        "occurred_at": "2025-03-03T09:00:00Z",
    }
    status, _head, answer = ask(
        "POST", "/enrollment/eligibility-assessments", body, INVESTIGATOR,
        states={"enrollment": consented_subject()}, now=datetime.fromisoformat(
            "2025-03-03T10:00:00+00:00"),
    )

    # Then the answer says the subject failed screening, on ECOG, with every criterion
    assert status == 201, answer
    outcome = answer["outcome"]
    assert [c["criterion"] for c in outcome["SubjectScreenFailed"]["failed_criteria"]] == ["ecog"]
    assert outcome["SubjectScreenFailed"]["reason_code"] == "criteria-not-met"
    assert {c["criterion"]: c["met"] for c in outcome["EligibilityAssessed"]["criteria"]}["ecog"] \
        is False
    assert [e["event_type"] for e in answer["events"]] == [
        "EligibilityAssessed", "SubjectScreenFailed"]


def test_a_crs_observation_answers_the_astct_grade_it_gave():
    # Given a CRS reported for an infused subject
    _events, state = run(given(treated()), report())

    # When fever 39.1 C with hypotension needing one vasopressor is observed
    status, _head, answer = ask(
        "POST", "/safety/crs-grades",
        {"ae_id": AE, "occurred_at": day(2).isoformat(), "observation": {
            "temperature_c": 39.1, "hypotension": "one-vasopressor", "hypoxia": "none"}},
        INVESTIGATOR, states={"safety": state},
    )

    # Then ASTCT grade 3, set by the hypotension; what the command said is not repeated
    assert status == 201, answer
    graded = answer["outcome"]["CrsGraded"]
    assert (graded["grade"], graded["determined_by"]) == (3, ["hypotension"])
    assert "ae_id" not in graded and "observation" not in graded


def test_an_expedited_report_determination_answers_the_reports_due():
    # Given a serious unexpected suspected adverse reaction (SUSAR) reported
    _events, state = run(given(treated()), report(**SERIOUS_UNEXPECTED))

    # When the safety officer determines on 5 March that it qualifies
    status, _head, answer = ask(
        "POST", "/safety/expedited-report-determinations",
        {"ae_id": AE, "occurred_at": day(3).isoformat()}, SAFETY_OFFICER,
        states={"safety": state}, now=day(3, hours=1),
    )

    # Then the 15-day report is due 15 calendar days later, on 20 March
    assert status == 201, answer
    [due] = answer["outcome"]["ExpeditedReportDetermined"]["reports_due"]
    assert (due["report"], due["day_zero"], due["due_on"]) == (
        "15-day", date(2026, 3, 5).isoformat(), date(2026, 3, 20).isoformat())
    assert answer["outcome"]["ExpeditedReportDetermined"]["subject_id"] == SUBJECT


def test_a_registration_answers_the_event_with_nothing_the_command_did_not_say():
    status, _head, answer = ask(
        "POST", "/enrollment/subjects", {"subject_id": "MSK-0001", "site_id": "MSK"},
        COORDINATOR,
    )

    assert status == 201, answer
    assert answer["outcome"] == {"SubjectRegistered": {}}


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/health"])
def test_the_description_and_health_are_open_without_a_token(path):
    status, _head, _body = ask("GET", path)

    assert status == 200
