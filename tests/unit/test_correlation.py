"""A request's correlation id (decision 47): taken from the caller's ``traceparent`` or
``X-Request-ID``, echoed in the answer, handed to the command's events and, for a
``traceparent``, continued in the records' headers.

Sources: W3C Trace Context Level 1 (Recommendation, 23 November 2021): section 3.2.2 (the
``traceparent`` fields: 2-hex version, 32-hex trace id, 16-hex parent id, 2-hex flags, lowercase
hex), 3.2.2.3 and 3.2.2.4 (all-zero trace and parent ids are invalid), 3.2.4 (version ``ff`` is
invalid; a version 00 header has exactly four fields; a later version's extra fields are
ignored), 4.3 (an invalid header is ignored and a new trace starts), and its example header
``00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01``; RFC 9562 sections 4 (the UUID text
form, read in either case) and 5.5 (name-based UUIDs, version 5: SHA-1 of the namespace's 16
bytes and the name, version and variant bits set).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from uuid import UUID

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.correlation import REQUEST_ID_NAMESPACE, correlation_of
from services.http import CORRELATION
from services.quarantine.decider import make_decider
from services.runtime import CommandHandler

from .http_harness import make_app
from .test_group_commit import SPONSOR, LogInMemory, quarantine
from .test_safety_givens import day

W3C_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
W3C_TRACE = UUID("4bf92f35-77b3-4da6-a3ce-929d0e0e4736")
"""The example's trace id (``4bf92f3577b34da6a3ce929d0e0e4736``) read as a UUID."""
FRESH = UUID("11111111-2222-4333-8444-555555555555")
ANSWER_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def version_5(namespace: UUID, name: str) -> UUID:
    """RFC 9562 section 5.5, written out here rather than taken from ``uuid.uuid5``."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return UUID(bytes=bytes(digest))


# ---------------------------------------------------------------- where the id comes from


def test_a_valid_traceparent_gives_its_trace_id_as_the_correlation_id():
    found = correlation_of(W3C_EXAMPLE, None, new=lambda: FRESH)

    assert found.correlation_id == W3C_TRACE
    assert found.incoming_traceparent == W3C_EXAMPLE
    assert found.source == "traceparent"


def test_a_later_versions_traceparent_is_read_by_its_first_four_fields():
    later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more-to-come"

    found = correlation_of(later, None, new=lambda: FRESH)

    assert found.correlation_id == W3C_TRACE
    assert found.caller is not None and found.caller.parent_id == "00f067aa0ba902b7"


@pytest.mark.parametrize(
    "invalid",
    [
        pytest.param("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", id="uppercase"),
        pytest.param("00-" + "0" * 32 + "-00f067aa0ba902b7-01", id="all-zero-trace-id"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", id="zero-parent"),
        pytest.param("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", id="version-ff"),
        pytest.param(W3C_EXAMPLE + "-extra", id="version-00-with-a-fifth-field"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", id="short-trace"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01", id="short-parent"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", id="short-flags"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01", id="not-hex"),
        pytest.param("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", id="separator"),
        pytest.param("", id="empty"),
    ],
)
def test_an_invalid_traceparent_is_ignored_and_a_new_trace_started(invalid):
    found = correlation_of(invalid, None, new=lambda: FRESH)

    assert (found.correlation_id, found.caller, found.source) == (FRESH, None, "new")


def test_an_x_request_id_that_is_a_uuid_is_the_correlation_id_in_either_case():
    given = "0F5E2A1C-9B7D-4E3F-8A6B-1C2D3E4F5A6B"

    found = correlation_of(None, given, new=lambda: FRESH)

    assert found.correlation_id == UUID("0f5e2a1c-9b7d-4e3f-8a6b-1c2d3e4f5a6b")
    assert found.incoming_traceparent is None


@pytest.mark.parametrize(
    "request_id",
    ["req-42", "0f5e2a1c9b7d4e3f8a6b1c2d3e4f5a6b", "00000000-0000-0000-0000-000000000000"],
    ids=["free-text", "uuid-without-hyphens", "nil-uuid"],
)
def test_any_other_x_request_id_is_hashed_into_a_version_5_uuid(request_id):
    found = correlation_of(None, request_id, new=lambda: FRESH)

    assert found.correlation_id == version_5(REQUEST_ID_NAMESPACE, request_id)
    assert found.correlation_id.version == 5
    assert found.source == "x-request-id-hashed"


def test_the_same_request_id_always_gives_the_same_correlation_id():
    assert correlation_of(None, "req-42").correlation_id == correlation_of(
        None, "req-42").correlation_id


def test_a_traceparent_wins_over_an_x_request_id():
    found = correlation_of(W3C_EXAMPLE, "0f5e2a1c-9b7d-4e3f-8a6b-1c2d3e4f5a6b")

    assert found.correlation_id == W3C_TRACE


def test_without_either_header_the_correlation_id_is_new():
    assert correlation_of(None, None, new=lambda: FRESH).correlation_id == FRESH
    assert correlation_of(None, "   ", new=lambda: FRESH).correlation_id == FRESH


def test_the_answer_continues_the_callers_trace_from_a_span_of_its_own():
    headers = correlation_of(W3C_EXAMPLE, None).answer_headers()

    assert headers["X-Request-ID"] == str(W3C_TRACE)
    trace_id, parent_id, flags = ANSWER_TRACEPARENT.match(headers["traceparent"]).groups()
    assert (trace_id, flags) == ("4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert parent_id not in ("00f067aa0ba902b7", "0" * 16)


# ---------------------------------------------------------------- over HTTP

INVESTIGATOR = {"Authorization": "Bearer demo-investigator"}
OPEN_COHORT = {"cohort_id": "DL1-IP", "dose_level": "DL1", "recommendation_id": "REC-DL1-IP"}


def ask(method: str, path: str, body=None, headers=None):
    """One request to a fresh app; ``(status, answer headers, what each handler was given)``."""
    app, handlers = make_app(lambda: day(3))

    async def go():
        async with TestClient(TestServer(app)) as client:
            data = None if body is None else orjson.dumps(body)
            answer = await client.request(method, path, data=data, headers=headers or {})
            await answer.read()
            return answer.status, answer.headers

    status, head = asyncio.run(go())
    return status, head, {c: h.traces for c, h in handlers.items() if h.traces}


def test_a_command_sent_with_a_traceparent_is_answered_and_decided_under_its_trace():
    status, head, traces = ask(
        "POST", "/enrollment/cohorts", OPEN_COHORT, {**INVESTIGATOR, "traceparent": W3C_EXAMPLE}
    )

    assert status == 201
    assert head["X-Request-ID"] == str(W3C_TRACE)
    assert head["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert traces == {"enrollment": [(W3C_TRACE, W3C_EXAMPLE)]}


def test_a_command_sent_with_a_request_id_gets_it_back_and_decides_under_it():
    status, head, traces = ask(
        "POST", "/enrollment/cohorts", OPEN_COHORT, {**INVESTIGATOR, "X-Request-ID": "req-42"}
    )
    expected = version_5(REQUEST_ID_NAMESPACE, "req-42")

    assert status == 201
    assert head["X-Request-ID"] == str(expected)
    assert head["traceparent"].split("-")[1] == expected.hex
    assert traces == {"enrollment": [(expected, None)]}


def test_a_refused_request_also_says_its_correlation_id():
    status, head, traces = ask("POST", "/enrollment/cohorts", OPEN_COHORT)

    assert status == 401
    correlation_id = UUID(head["X-Request-ID"])
    assert head["traceparent"].split("-")[1] == correlation_id.hex
    assert traces == {}


def test_the_correlation_is_kept_on_the_request():
    app, _ = make_app(lambda: day(3))
    seen = []

    async def probe(request):
        seen.append(request[CORRELATION].correlation_id)
        return web.Response(text="ok")

    app.router.add_get("/probe", probe)

    async def go():
        async with TestClient(TestServer(app)) as client:
            await (await client.get("/probe", headers={**INVESTIGATOR,
                                                       "traceparent": W3C_EXAMPLE})).read()

    asyncio.run(go())
    assert seen == [W3C_TRACE]


# ---------------------------------------------------------------- into the records


class LogWithHeaders(LogInMemory):
    """Keeps the ``traceparents`` each append was given, as the Kafka store writes them."""

    def __init__(self, delay: float = 0.05):
        super().__init__(delay)
        self.traceparents: list[dict[UUID, str]] = []

    def append(self, envelopes, traceparents=None):
        self.traceparents.append(dict(traceparents or {}))
        return super().append(envelopes)


def test_each_commands_events_carry_its_correlation_id_and_only_its_callers_traceparent():
    store = LogWithHeaders()
    h = CommandHandler(make_decider(), store, context="quarantine")

    async def scenario():
        first = asyncio.create_task(h.handle(quarantine(1), SPONSOR))
        await asyncio.sleep(0.01)  # in flight: the next two form one batch
        return await asyncio.gather(
            h.handle(quarantine(2), SPONSOR, correlation_id=W3C_TRACE, traceparent=W3C_EXAMPLE),
            h.handle(quarantine(3), SPONSOR, correlation_id=FRESH),
        ), await first

    (traced, plain), _first = asyncio.run(scenario())

    assert store.transactions == [1, 2]
    assert traced[0].envelope.correlation_id == W3C_TRACE
    assert plain[0].envelope.correlation_id == FRESH
    assert store.traceparents[1] == {traced[0].envelope.event_id: W3C_EXAMPLE}
    assert traced[0].envelope.causation_id is None
