"""Metrics and logs (decision 47), in process without Kafka: ``/metrics`` answers without a
token in Prometheus's text format, counts commands by route template, status and rule, never
names a subject; the services' batches are measured; a log line is one JSON object with the
request's correlation id, also for Faust's own records.

Sources: Prometheus "Exposition formats" (text format 0.0.4: ``text/plain; version=0.0.4``, a
counter exposed with a ``_total`` sample, a histogram with ``_count`` and ``_sum``); RFC 8259
(one JSON text per line); RFC 3339 section 5.6 (a timestamp with ``Z`` for UTC); W3C Trace
Context Level 1's example ``traceparent`` (trace id ``4bf92f3577b34da6a3ce929d0e0e4736``).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from datetime import datetime

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from infra import logs
from projections.metrics import WorkerState, applied_counter, read_past_the_consumer
from projections.metrics import exposition as worker_exposition
from services.http import observed
from services.quarantine.decider import make_decider
from services.runtime import CommandHandler
from services.serving import CorrelatedAccessLog

from .http_harness import make_app
from .test_group_commit import SPONSOR, LogInMemory, quarantine
from .test_projection_view_problems import ask as view_ask
from .test_safety_givens import day

INVESTIGATOR = {"Authorization": "Bearer demo-investigator"}
COORDINATOR = {"Authorization": "Bearer demo-site_coordinator"}
OPEN_COHORT = {"cohort_id": "DL1-IP", "dose_level": "DL1", "recommendation_id": "REC-DL1-IP"}
W3C_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
W3C_TRACE = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
ESCAPE = "\x1b"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def commands(scraped, route: str, status: str, rule: str) -> float:
    key = ("trialops_commands_total", (("route", route), ("rule", rule), ("status", status)))
    return scraped.get(key, 0.0)


def session(*requests):
    """Requests to one fresh app, in order; each answer's ``(status, headers, text)``."""
    app, _ = make_app(lambda: day(3))

    async def go():
        out = []
        async with TestClient(TestServer(app)) as client:
            for method, path, body, headers in requests:
                data = None if body is None else orjson.dumps(body)
                answer = await client.request(method, path, data=data, headers=headers)
                out.append((answer.status, answer.headers, await answer.text()))
        return out

    return asyncio.run(go())


METRICS: tuple[str, str, None, dict[str, str]] = ("GET", "/metrics", None, {})


# ---------------------------------------------------------------- the services' /metrics


def test_metrics_answer_without_a_token_in_prometheus_text_format():
    [(status, head, text)] = session(METRICS)

    assert status == 200
    assert head["Content-Type"].startswith("text/plain; version=0.0.4")
    assert samples(text)[("trialops_context_ready", (("context", "enrollment"),))] == 1.0


def test_commands_are_counted_by_route_status_and_the_rule_that_refused_them():
    before, refused, accepted, after = session(
        METRICS,
        ("POST", "/enrollment/cohorts", OPEN_COHORT, COORDINATOR),
        ("POST", "/enrollment/cohorts", OPEN_COHORT, INVESTIGATOR),
        METRICS,
    )
    was, now = samples(before[2]), samples(after[2])

    assert (refused[0], accepted[0]) == (403, 201)
    route = "/enrollment/cohorts"
    assert commands(now, route, "403", "role-not-permitted") == commands(
        was, route, "403", "role-not-permitted") + 1
    assert commands(now, route, "201", "") == commands(was, route, "201", "") + 1


def test_no_subject_id_reaches_the_metrics():
    subject = "MSK-0917"
    *_, (_status, _head, text) = session(
        ("POST", "/enrollment/subjects", {"subject_id": subject}, COORDINATOR),
        ("POST", f"/enrollment/{subject}", {"subject_id": subject}, COORDINATOR),
        ("POST", "/enrollment/subjects", {"subject_id": subject}, {}),
        METRICS,
    )
    scraped = samples(text)

    assert subject not in text
    assert commands(scraped, "unmatched", "404", "not-found") >= 1


def test_each_batch_appended_is_measured_by_its_commands_and_its_time():
    def observed_batches(name: str) -> float:
        key = (name, (("context", "quarantine"),))
        return samples(session(METRICS)[0][2]).get(key, 0.0)

    count, total = (observed_batches("trialops_batch_commands_count"),
                    observed_batches("trialops_batch_commands_sum"))
    timed = observed_batches("trialops_append_seconds_count")
    h = CommandHandler(make_decider(), LogInMemory(), context="quarantine")

    async def scenario():
        first = asyncio.create_task(h.handle(quarantine(1), SPONSOR))
        await asyncio.sleep(0.01)  # in flight: the next three form one batch
        await asyncio.gather(*(h.handle(quarantine(n), SPONSOR) for n in (2, 3, 4)))
        await first

    asyncio.run(scenario())

    assert observed_batches("trialops_batch_commands_count") == count + 2
    assert observed_batches("trialops_batch_commands_sum") == total + 4
    assert observed_batches("trialops_append_seconds_count") == timed + 2


# ---------------------------------------------------------------- the worker's /metrics


def test_the_workers_metrics_say_lag_halted_partitions_dead_letters_and_what_it_read():
    count = applied_counter("ns.safety.events")
    before = samples(worker_exposition(WorkerState(dict, list, dict)).decode())
    count()
    count()
    read_past_the_consumer("ns.safety.events", 3)
    state = WorkerState(
        lambda: {"ns.safety.events:0": 7, "ns.enrollment.events:0": 1},
        lambda: ["ns.safety.events:0"],
        lambda: {"ns.safety.events": 2},
    )

    scraped = samples(worker_exposition(state).decode())

    applied = ("trialops_worker_events_applied_total", (("topic", "ns.safety.events"),))
    assert scraped[applied] == before.get(applied, 0.0) + 2
    assert scraped[("trialops_worker_lag", (("partition", "ns.safety.events:0"),))] == 7
    assert scraped[("trialops_worker_halted", (("partition", "ns.safety.events:0"),))] == 1
    assert ("trialops_worker_halted", (("partition", "ns.enrollment.events:0"),)) not in scraped
    assert scraped[("trialops_worker_dead_letters_total", (("topic", "ns.safety.events"),))] == 2
    read_past = ("trialops_worker_records_read_past_the_consumer_total",
                 (("topic", "ns.safety.events"),))
    assert scraped[read_past] == before.get(read_past, 0.0) + 3


def test_the_workers_views_answer_under_the_callers_correlation_id_too():
    status, head, _body = view_ask(
        "GET", "/projections/patient-timeline",
        {"Authorization": "Bearer demo-auditor", "traceparent": W3C_EXAMPLE},
    )

    assert status == 200
    assert head["X-Request-ID"] == W3C_TRACE
    assert head["traceparent"].split("-")[1] == W3C_TRACE.replace("-", "")


# ---------------------------------------------------------------- logs


def rendered(json: bool, *records) -> list[str]:
    """``records`` (logger name, level, message) logged through the logging set-up of
    ``trialops serve``, as written to a file."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(json))
    for name, level, message in records:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            logger.log(level, message)
        finally:
            logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_a_log_line_is_one_json_object_with_time_level_logger_and_message_first():
    [line] = rendered(True, ("services.runtime", logging.WARNING, "quarantine: 2 commands"))
    entry = orjson.loads(line)

    assert list(entry)[:4] == ["time", "level", "logger", "message"]
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "warning", "services.runtime", "quarantine: 2 commands")
    assert entry["time"].endswith("Z")
    datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert "correlation_id" not in entry
    assert ESCAPE not in line


def test_a_record_logged_within_a_correlation_carries_its_id():
    with logs.correlated(W3C_TRACE):
        [line] = rendered(True, ("services.http", logging.INFO, "within"))
    [after] = rendered(True, ("services.http", logging.INFO, "after"))

    assert orjson.loads(line)["correlation_id"] == W3C_TRACE
    assert "correlation_id" not in orjson.loads(after)


def test_the_format_is_json_off_a_terminal_and_as_the_variable_says(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv(logs.FORMAT_VARIABLE, raising=False)
    assert logs.wants_json(io.StringIO()) and not logs.wants_json(Terminal())
    monkeypatch.setenv(logs.FORMAT_VARIABLE, "json")
    assert logs.wants_json(Terminal())
    monkeypatch.setenv(logs.FORMAT_VARIABLE, "human")
    assert not logs.wants_json(io.StringIO())


@pytest.mark.parametrize("level", ["warn", "info", "crit", "error", "debug"])
def test_fausts_worker_logs_through_the_same_json_format(level, capsys, monkeypatch):
    from mode.utils.logging import setup_logging

    monkeypatch.setenv(logs.FORMAT_VARIABLE, "json")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    options = logs.faust_options(level)
    try:
        # as faust.Worker does with its loglevel and logging_config options
        setup_logging(loglevel=options["loglevel"], logging_config=options["logging_config"])
        logging.getLogger("faust.transport.consumer").critical("rebalancing")
    finally:
        root.handlers[:], root.level = saved
    [line] = [x for x in capsys.readouterr().err.splitlines() if "rebalancing" in x]

    entry = orjson.loads(line)
    assert (entry["logger"], entry["level"]) == ("faust.transport.consumer", "critical")
    assert ESCAPE not in line
    assert root.level == saved[1]


def test_a_record_logged_while_a_request_is_handled_carries_its_correlation_id():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(True))
    inside = logging.getLogger("tests.inside")
    access = logging.getLogger("aiohttp.access")
    for logger in (inside, access):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    async def view(_request):
        inside.info("handling")
        return web.Response(text="ok")

    app = web.Application(middlewares=[observed()])
    app.router.add_get("/probe", view)

    async def go():
        server = TestServer(app)
        await server.start_server(access_log_class=CorrelatedAccessLog)
        async with TestClient(server) as client:
            answer = await client.get("/probe?subject=MSK-0917",
                                      headers={"traceparent": W3C_EXAMPLE})
            await answer.read()
            return answer.headers["X-Request-ID"]

    try:
        echoed = asyncio.run(go())
    finally:
        for logger in (inside, access):
            logger.removeHandler(handler)
    entries = [orjson.loads(line) for line in stream.getvalue().splitlines()]

    assert echoed == W3C_TRACE
    assert [(e["logger"], e["correlation_id"]) for e in entries] == [
        ("tests.inside", W3C_TRACE), ("aiohttp.access", W3C_TRACE)]
    assert re.search(r'"GET /probe" 200', entries[1]["message"])
    assert "MSK-0917" not in stream.getvalue()
