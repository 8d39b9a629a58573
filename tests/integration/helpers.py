"""Small helpers for the integration tests: HTTP calls as the demo users, reading topics back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from events.envelope import Envelope, from_bytes
from events.topics import event_topic
from trialops.http_client import call
from trialops.kafka_io import read_to_end
from trialops.settings import Settings

INVESTIGATOR = "demo-investigator"
COORDINATOR = "demo-site_coordinator"
NOW = "2026-11-26T09:00:00+00:00"


def post(stack, path: str, body: Any, token: str = COORDINATOR) -> tuple[int, Any]:
    return call("POST", f"{stack.service_url}{path}", body, token=token)


def open_cohort(stack, cohort_id: str, capacity: int, dose_level: str = "DL1") -> None:
    status, answer = post(
        stack,
        "/enrollment/cohorts",
        {
            "cohort_id": cohort_id,
            "dose_level": dose_level,
            "dose_cells_per_kg": 1e6,
            "route": "intraperitoneal",
            "capacity": capacity,
            "occurred_at": NOW,
        },
        token=INVESTIGATOR,
    )
    assert status == 201, answer


def register(stack, subject_id: str) -> None:
    status, answer = post(
        stack, "/enrollment/subjects", {"subject_id": subject_id, "site_id": "MSK"}
    )
    assert status == 201, answer


def enrollment_events(settings: Settings) -> list[Envelope]:
    topic = event_topic("enrollment", settings.namespace)
    return [
        from_bytes(value) for _pos, _key, value in read_to_end(settings.bootstrap_servers, [topic])
    ]


def eventually(check: Callable[[], Any], timeout: float = 30, interval: float = 0.25) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with its last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last answer: {last!r}")
