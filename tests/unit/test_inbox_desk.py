"""The live inbox (decision 51): the worker's desk, folded event by event as a tail of the
topics delivers them, answers what the one-shot inbox answers from the same records at the same
moment; its HTTP query names the parameter it refuses.

The trial is the simulator's plan for 6 patients, seed 1, run in process through the real
deciders (as in test_inbox.py); the reference is the one-shot ``inbox`` of decision 49."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events.reading import Where
from events.registry import Recorded
from events.topics import event_topic
from infra.settings import Settings
from projections.inbox import CONTEXTS, Desk, document, inbox
from projections.live_inbox import LiveDesk, answer, parse_query

from .test_inbox import trial_events, with_a_fatal_ae

ROLES = ("safety_officer", "investigator", "manufacturing_qa", "sponsor", None)


def in_recorded_order(events: tuple[Recorded, ...]) -> list[Recorded]:
    return sorted(events, key=lambda r: r.envelope.recorded_at)


def test_the_desk_folded_event_by_event_answers_as_the_one_shot_inbox_at_every_tenth_event():
    trial, events = trial_events()
    ordered = in_recorded_order(events)
    desk = Desk()
    checked = 0
    for number, recorded in enumerate(ordered, 1):
        desk.fold(recorded)
        if number % 10 and number != len(ordered):
            continue
        # Given the desk has folded every event recorded up to now, a moment later
        as_of = recorded.envelope.recorded_at + timedelta(hours=1)
        if number < len(ordered) and ordered[number].envelope.recorded_at <= as_of:
            continue
        for role in ROLES:
            # Then it lists what the inbox computed from the whole log lists at that moment
            assert desk.pending(trial, as_of, role) == inbox(events, trial, as_of, role)
            checked += 1
    assert checked > 20


def test_the_desk_after_the_last_event_keeps_counting_the_clock():
    """A fatal unexpected AE's 7-day report (21 CFR 312.32(c)(2)) turns overdue on the desk
    with no new event, as the clock moves."""
    trial, events, received = with_a_fatal_ae()
    desk = Desk()
    for recorded in in_recorded_order(events):
        desk.fold(recorded)
    for later in (timedelta(hours=1), timedelta(days=6), timedelta(days=9)):
        as_of = received + later
        assert desk.pending(trial, as_of, "safety_officer") == inbox(
            events, trial, as_of, "safety_officer"
        )
    overdue = [i for i in desk.pending(trial, received + timedelta(days=9), "safety_officer")
               if i.overdue]
    assert [i.subject for i in overdue] == ["AE-MSK-0002-F1"]


class FakeTail:
    """Stands in for ``infra.kafka_io.Tail``: each read returns the next chunk of records, each
    filed under its context's topic."""

    def __init__(self, chunks: list[list[Recorded]]) -> None:
        self.chunks = chunks
        self.halts: list[Any] = []

    def read_new(self, _deadline: float) -> list[tuple[Where, Recorded]]:
        chunk = self.chunks.pop(0) if self.chunks else []
        return [(Where(event_topic(type(r.payload).context, "t"), 0, i), r)
                for i, r in enumerate(chunk)]

    def close(self) -> None:
        pass


def test_the_live_desk_catching_up_in_chunks_of_mixed_topics_answers_as_the_replay():
    trial, events = trial_events()
    ordered = [r for r in in_recorded_order(events)
               if type(r.payload).context in CONTEXTS]
    # Per topic in order, a chunk at a time: what a tail returns between two requests
    chunks = [ordered[i:i + 37] for i in range(0, len(ordered), 37)]
    chunks = [sorted(c, key=lambda r: CONTEXTS.index(type(r.payload).context)) for c in chunks]
    live = LiveDesk(Settings("unused:9092", namespace="t"), open_tail=lambda: FakeTail(chunks))

    async def read_all() -> Desk:
        desk = await live.catch_up()
        while chunks:
            desk = await live.catch_up()
        return desk

    desk = asyncio.run(read_all())
    as_of = ordered[-1].envelope.recorded_at + timedelta(days=2)
    for role in ROLES:
        assert desk.pending(trial, as_of, role) == inbox(ordered, trial, as_of, role)


def test_the_inbox_query_refuses_a_role_the_trial_file_does_not_name():
    trial, _events = trial_events()
    with pytest.raises(ValueError, match=r"^role: unknown role 'courier'"):
        parse_query({"role": "courier"}, trial)


@pytest.mark.parametrize("bad", ["yesterday", "2026-03-06T12:00:00"])
def test_the_inbox_query_refuses_an_as_of_that_is_not_a_time_with_a_zone(bad):
    trial, _events = trial_events()
    with pytest.raises(ValueError, match=r"^as_of: "):
        parse_query({"as_of": bad}, trial)


def test_the_inbox_query_takes_no_role_as_every_role_and_no_time_as_now():
    trial, _events = trial_events()
    assert parse_query({}, trial) == (None, None)
    moment = datetime(2026, 3, 6, 12, tzinfo=UTC)
    assert parse_query({"role": "sponsor", "as_of": moment.isoformat()}, trial) == (
        "sponsor", moment)


def test_the_live_inbox_refuses_a_moment_before_the_last_event_it_folded():
    trial, events = trial_events()
    desk = Desk()
    for recorded in in_recorded_order(events):
        desk.fold(recorded)
    assert desk.latest is not None
    with pytest.raises(ValueError, match=r"^as_of: .* before the last event"):
        answer(desk, trial, "investigator", desk.latest - timedelta(seconds=1))
    as_of = desk.latest + timedelta(days=1)
    expected = inbox(events, trial, as_of, "investigator")
    assert answer(desk, trial, "investigator", as_of) == document(expected, "investigator", as_of)


def serve_and_ask(path: str, headers: dict[str, str], chunks: list[list[Recorded]]):
    """The worker's inbox view on a Faust app that is never started (no Kafka): its desk reads
    ``chunks`` through a stand-in tail."""
    import faust
    from aiohttp.test_utils import TestClient, TestServer

    from projections.live_inbox import serve_inbox
    from projections.views import _answer_errors_as_problems
    from services.auth import UserDirectory

    trial, _events = trial_events()
    app = faust.App("test-inbox-view", broker="memory://", web_tables_enabled=False,
                    web_router_enabled=False, web_graph_enabled=False, web_stats_enabled=False)
    _answer_errors_as_problems(app)
    tail: Any = FakeTail(chunks)
    live = LiveDesk(Settings("unused:9092", namespace="t"), open_tail=lambda: tail)
    serve_inbox(app, live, trial, UserDirectory.demo())

    async def go():
        async with TestClient(TestServer(app.web.web_app)) as client:
            answer = await client.get(path, headers=headers)
            return answer.status, await answer.json(content_type=None)

    return asyncio.run(go())


AUDITOR = {"Authorization": "Bearer demo-auditor"}


def test_the_inbox_view_answers_the_inbox_document_of_a_role_at_a_moment():
    trial, events, received = with_a_fatal_ae()
    ordered = [r for r in in_recorded_order(events) if type(r.payload).context in CONTEXTS]
    as_of = received + timedelta(days=9)
    status, body = serve_and_ask(
        f"/projections/inbox?role=safety_officer&as_of={as_of.isoformat().replace('+', '%2B')}",
        AUDITOR, [ordered],
    )
    assert status == 200, body
    expected = document(inbox(events, trial, as_of, "safety_officer"), "safety_officer", as_of)
    assert body == expected
    assert body["overdue"] >= 1


@pytest.mark.parametrize(
    ("query", "headers", "status", "rule", "names"),
    [
        ("?role=courier", AUDITOR, 400, "bad-query", "role: "),
        ("?as_of=2026-03-06T12:00:00", AUDITOR, 400, "bad-query", "as_of: "),
        ("?as_of=2000-01-01T00:00:00Z", AUDITOR, 400, "bad-query", "as_of: "),
        ("", {}, 401, "unauthenticated", ""),
        ("", {"Authorization": "Bearer demo-notifier"}, 403, "role-not-permitted", ""),
    ],
)
def test_a_bad_inbox_query_is_a_problem_naming_the_parameter(query, headers, status, rule,
                                                              names):
    _trial, events = trial_events()
    status_got, body = serve_and_ask(f"/projections/inbox{query}", headers,
                                     [in_recorded_order(events)])
    assert (status_got, body["error"]) == (status, rule), body
    assert body["detail"].startswith(names)


def test_the_workers_openapi_document_describes_the_inbox_view():
    from openapi_spec_validator import validate

    from projections.openapi import document as openapi_document

    doc = openapi_document([])
    validate(doc)
    view = doc["paths"]["/projections/inbox"]["get"]
    assert {p["name"] for p in view["parameters"]} == {"role", "as_of"}
    assert set(view["responses"]) == {"200", "400", "401", "403", "503"}
