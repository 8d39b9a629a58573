"""Issue 14's observability on the real stack (services and worker on the broker, decision 47):
a command sent with a ``traceparent`` is answered under its trace, its event carries the trace
id as its ``correlation_id`` and its record's ``traceparent`` continues the caller's trace; the
services' log has the request's line, in JSON, with that id; ``/metrics`` answers on both
servers without a token, and their counters move with the command.

Sources: W3C Trace Context Level 1 (``traceparent``: version 00, 32-hex trace id, 16-hex
parent id, 2-hex flags; its example header, section 3.2); Prometheus "Exposition formats"
(text format 0.0.4; a counter's ``_total`` and a histogram's ``_count`` samples).
"""

from __future__ import annotations

import re
import time
from uuid import UUID

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from events.envelope import from_bytes
from events.topics import event_topic
from tests.integration.helpers import INVESTIGATOR, NOW
from tests.integration.test_cloudevents_headers import plain_read

pytestmark = pytest.mark.kafka

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
"""W3C Trace Context's example ``traceparent``."""
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CORRELATION_ID = UUID(TRACE_ID)
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = requests.get(f"{url}/metrics", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_a_traced_command_is_answered_recorded_and_counted_under_the_callers_trace(
    stack, settings
):
    topic = event_topic("enrollment", settings.namespace)
    accepted = ("trialops_commands_total",
                (("route", "/enrollment/cohorts"), ("rule", ""), ("status", "201")))
    applied = ("trialops_worker_events_applied_total", (("topic", topic),))
    services_before = scrape(stack.service_url)
    worker_before = scrape(stack.projections_url)

    # When the review opens a cohort, its client sending a traceparent
    answer = requests.post(
        f"{stack.service_url}/enrollment/cohorts",
        data=orjson.dumps({"cohort_id": "DL1-IP", "dose_level": "DL1",
                           "recommendation_id": "REC-DL1-IP", "occurred_at": NOW}),
        headers={"Authorization": f"Bearer {INVESTIGATOR}", "traceparent": CALLER},
        timeout=30,
    )

    # Then the answer says the trace: the correlation id and a traceparent of the same trace
    assert answer.status_code == 201, answer.text
    assert answer.headers["X-Request-ID"] == str(CORRELATION_ID)
    trace, _span, flags = TRACEPARENT.match(answer.headers["traceparent"]).groups()
    assert (trace, flags) == (TRACE_ID, "01")
    event_id = answer.json()["events"][0]["event_id"]

    # And the event's correlation id is the trace id; its record's traceparent continues it
    records = {
        str(from_bytes(r.value).event_id): r for r in plain_read(
            settings.bootstrap_servers, topic, at_least=1)
    }
    record = records[event_id]
    envelope = from_bytes(record.value)
    assert envelope.correlation_id == CORRELATION_ID
    assert envelope.causation_id is None
    headers = {name: value.decode() for name, value in record.headers}
    trace, parent, flags = TRACEPARENT.match(headers["traceparent"]).groups()
    assert (trace, flags) == (TRACE_ID, "01")
    assert parent != "00f067aa0ba902b7"  # the append is a span of its own, the caller's child

    # And the services' log has the request's line, one JSON object, with that id
    logged = (stack.work_dir / "services.log").read_text(errors="replace")
    entries = [orjson.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert any(e.get("correlation_id") == str(CORRELATION_ID)
               and "/enrollment/cohorts" in e["message"] for e in entries), logged[-3000:]
    assert "\x1b" not in logged

    # And the services' /metrics counted the command and its append
    services_after = scrape(stack.service_url)
    assert services_after[accepted] == services_before.get(accepted, 0.0) + 1
    append = ("trialops_append_seconds_count", (("context", "enrollment"),))
    assert services_after[append] >= services_before.get(append, 0.0) + 1
    assert services_after[("trialops_context_ready", (("context", "enrollment"),))] == 1.0

    # And the worker's /metrics counts the event applied and says each partition's lag
    deadline = time.monotonic() + 30
    worker_after = scrape(stack.projections_url)
    while (worker_after.get(applied, 0.0) <= worker_before.get(applied, 0.0)
           and time.monotonic() < deadline):
        time.sleep(0.5)
        worker_after = scrape(stack.projections_url)
    assert worker_after.get(applied, 0.0) >= worker_before.get(applied, 0.0) + 1
    assert ("trialops_worker_lag", (("partition", f"{topic}:0"),)) in worker_after
    assert "\x1b" not in (stack.work_dir / "projections.log").read_text(errors="replace")

    # And the worker answers under a caller's request id too
    request_id = "0f5e2a1c-9b7d-4e3f-8a6b-1c2d3e4f5a6b"
    ready = requests.get(f"{stack.projections_url}/ready", headers={"X-Request-ID": request_id},
                         timeout=30)
    assert ready.headers["X-Request-ID"] == request_id
