"""The HTTP edge refuses what must never reach a topic (services/http.py, services/validation.py,
services/serving.py), without Kafka: the real middlewares and endpoint around a stand-in
handler that records what it was asked to append.

Given a route, When a body breaks a rule, Then the answer is a 4xx in the API's error format
(an RFC 9457 problem) naming the field and the rule, and the handler was never called."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from services.auth import ROLES, UserDirectory
from services.enrollment.commands import CloseCohort, RecordConsent, RegisterSubject
from services.http import MAX_BODY_BYTES, authentication, command_endpoint, json_errors
from services.safety.commands import AdjudicateDlt, ReportAdverseEvent
from services.serving import ServiceRunner
from services.validation import BusinessTimeWindow

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WINDOW = BusinessTimeWindow(datetime(2024, 10, 1, tzinfo=UTC), timedelta(minutes=10))
TOKEN = "demo-investigator"


class Recorder:
    """Stands in for a context's CommandHandler: keeps what it would append."""

    def __init__(self):
        self.calls: list[tuple[object, str | None]] = []

    async def handle(self, command, actor, *, reason=None, **_ignored):
        kept = reason if reason is not None else getattr(command, "reason", None)
        self.calls.append((command, kept))
        return []


ROUTES: dict[str, type[BaseModel]] = {
    "/register": RegisterSubject,
    "/close": CloseCohort,
    "/consent": RecordConsent,
    "/ae": ReportAdverseEvent,
    "/adjudicate": AdjudicateDlt,
}


def make_app(recorder: Recorder) -> web.Application:
    app = web.Application(
        middlewares=[json_errors(MAX_BODY_BYTES), authentication(UserDirectory.demo())],
        client_max_size=MAX_BODY_BYTES,
    )
    for path, model in ROUTES.items():
        app.router.add_post(
            path,
            command_endpoint(recorder, model, frozenset(ROLES), clock=lambda: NOW, window=WINDOW),
        )
    return app


def post(path: str, body, headers=None) -> tuple[int, dict, Recorder]:
    recorder = Recorder()

    async def go():
        async with TestClient(TestServer(make_app(recorder))) as client:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            answer = await client.post(
                path,
                data=data,
                headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})},
            )
            # RFC 9457: a refusal is a problem; an accepted command, plain JSON.
            expected = "application/json" if answer.status < 400 else "application/problem+json"
            assert answer.content_type == expected, await answer.text()
            return answer.status, await answer.json()

    status, answer = asyncio.run(go())
    return status, answer, recorder


REGISTER = {"subject_id": "MSK-0001", "site_id": "MSK"}
CLOSE = {"cohort_id": "DL1-IP", "reason": "3 of 3 treated, no DLT"}
AE = {
    "ae_id": "AE-0001-01",
    "subject_id": "MSK-0001",
    "term": "Cytokine release syndrome",
    "grade": 2,
    "onset_at": "2026-03-01T20:00:00Z",
    "attribution": "probable",
    "expected": True,
    "sponsor_received_at": "2026-03-02T08:00:00Z",
}


def test_a_good_body_reaches_the_handler_with_its_reason():
    status, _answer, recorder = post("/register", {**REGISTER, "reason": " late entry "})

    assert status == 201
    [(command, reason)] = recorder.calls
    assert (command.site_id, reason) == ("MSK", "late entry")


@pytest.mark.parametrize("path,body", [("/register", REGISTER), ("/close", CLOSE)])
@pytest.mark.parametrize(
    "reason,rule",
    [(123, "string_type"), ("x" * 1_047_000, "string_too_long"), ("  ", "string_too_short")],
)
def test_a_bad_reason_is_refused_naming_the_field_and_the_rule_with_or_without_a_reason_field(
    path, body, reason, rule
):
    status, answer, recorder = post(path, {**body, "reason": reason})

    assert status == 422, answer
    assert {"field": "reason", "rule": rule} in [
        {k: f[k] for k in ("field", "rule")} for f in answer["fields"]
    ]
    assert recorder.calls == []


@pytest.mark.parametrize(
    "char", ["\x00", "\r", "\n", "\x1b", "\x7f", "\x9b", "\u202a", "\u202e", "\u2066", "\u2069"]
)
def test_a_control_or_bidi_character_anywhere_in_the_body_is_refused_naming_the_field(char):
    status, answer, recorder = post("/ae", {**AE, "term": f"Cytokine{char} release"})

    assert (status, answer["error"]) == (422, "forbidden-character")
    assert [f["field"] for f in answer["fields"]] == ["term"]
    assert recorder.calls == []


@pytest.mark.parametrize("site_id", ["", " ", "   ", "\u3000", " MSK", "MSK "])
def test_a_blank_or_padded_site_id_is_refused(site_id):
    status, answer, recorder = post("/register", {**REGISTER, "site_id": site_id})

    assert status == 422, answer
    assert [f["field"] for f in answer["fields"]] == ["site_id"]
    assert recorder.calls == []


@pytest.mark.parametrize(
    "field,value,rule",
    [
        ("onset_at", "9999-01-01T00:00:00Z", "business-time-in-future"),
        ("onset_at", "0001-01-01T00:00:00Z", "business-time-before-trial-start"),
        ("sponsor_received_at", "2026-03-06T12:00:00Z", "business-time-in-future"),
        ("occurred_at", "9999-12-31T23:59:59-05:00", "business-time-in-future"),
    ],
)
def test_a_business_time_outside_the_trials_window_is_refused(field, value, rule):
    status, answer, recorder = post("/ae", {**AE, field: value})

    assert (status, answer["error"]) == (422, rule), answer
    assert [f["field"] for f in answer["fields"]] == [field]
    assert field in answer["message"] and "9999" not in rule
    assert recorder.calls == []


def test_a_dlt_adjudication_dated_four_days_ahead_is_refused():
    body = {"ae_id": "AE-0001-01", "verdict": "not-dlt", "occurred_at": "2026-03-06T12:00:00Z"}

    status, answer, recorder = post("/adjudicate", body)

    assert (status, answer["error"]) == (422, "business-time-in-future")
    assert recorder.calls == []


def test_a_consent_signed_in_year_0001_is_refused_naming_signed_at():
    body = {"subject_id": "MSK-0001", "form_version": "ICF-v1", "signed_at": "0001-01-01T00:00:00Z"}

    status, answer, _ = post("/consent", body)

    assert (status, answer["error"]) == (422, "business-time-before-trial-start")
    assert [f["field"] for f in answer["fields"]] == ["signed_at"]


def test_a_body_over_the_size_limit_gets_413_in_the_json_error_format():
    body = orjson.dumps({**REGISTER, "padding": "x" * MAX_BODY_BYTES})

    status, answer, recorder = post("/register", body)

    assert status == 413
    assert answer["error"] == "body-too-large"
    assert str(MAX_BODY_BYTES) in answer["message"]
    assert recorder.calls == []


def test_an_unknown_route_is_answered_in_json():
    status, answer, _ = post("/nowhere", REGISTER)

    assert (status, answer["error"]) == (404, "not-found")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer demo-investigator with spaces",
        "Bearer d\u00e9mo-investig\u00e4tor",
        "Basic ZGVtby1pbnZlc3RpZ2F0b3I6eA==",
        "Token demo-investigator",
        "Bearer",
        "demo-investigator",
    ],
)
def test_a_malformed_authorization_header_gets_401_in_json_without_the_token(header, caplog):
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()

    async def go():
        async with TestClient(TestServer(make_app(recorder))) as client:
            answer = await client.post(
                "/register", data=orjson.dumps(REGISTER),
                headers={"Authorization": header.encode("utf-8").decode("latin-1")},
            )
            return answer.status, await answer.read()

    status, raw = asyncio.run(go())

    assert status == 401
    assert orjson.loads(raw)["error"] in ("malformed-authorization", "unauthenticated")
    assert b"investig" not in raw and b"ZGVtby" not in raw
    assert "investig" not in caplog.text and "ZGVtby" not in caplog.text
    assert recorder.calls == []


@pytest.mark.parametrize("bad", [b"\x00", b"\x01", b"\x7f", b"\r"])
def test_an_unparseable_authorization_header_is_answered_in_json_and_never_logged(bad, caplog):
    """aiohttp's own parser refuses these before any middleware; the service's runner answers
    without quoting the header, and logs without it."""
    caplog.set_level(logging.DEBUG)
    secret = b"s3cret-" + bad + b"-token"

    async def go():
        runner = ServiceRunner(make_app(Recorder()))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                b"Authorization: Bearer " + secret + b"\r\n\r\n{}"
            )
            await writer.drain()
            answer = await reader.read()
            writer.close()
            return answer
        finally:
            await runner.cleanup()

    answer = asyncio.run(go())

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400"
    assert b"application/problem+json" in head
    assert orjson.loads(body)["error"] == "malformed-request"
    assert b"s3cret" not in answer
    assert "s3cret" not in caplog.text
