"""Fenced means retired, on the real broker: a second instance of the services takes over each
context's topic; the first one, once it learns it was fenced, never writes again and never
re-opens by itself, so the two do not fence each other back and forth."""

from __future__ import annotations

import pytest

from clients.http import call, wait_until_up
from tests.conftest import free_port
from tests.integration.helpers import enrollment_events, post

pytestmark = pytest.mark.kafka


def register(url: str, subject_id: str) -> tuple[int, dict]:
    return call(
        "POST",
        f"{url}/enrollment/subjects",
        {"subject_id": subject_id, "site_id": "MSK"},
        token="demo-site_coordinator",
    )


def test_a_fenced_instance_stays_retired_while_the_new_one_accepts_every_command(stack, settings):
    # Given the first instance wrote something
    first = post(stack, "/enrollment/subjects", {"subject_id": "MSK-0801", "site_id": "MSK"})
    assert first[0] == 201
    old = stack.service_url
    # When a second instance starts for the same contexts
    port = free_port()
    stack.spawn("services-2", ["serve", "--demo", "--port", str(port)])
    new = f"http://127.0.0.1:{port}"
    wait_until_up(f"{new}/health", timeout=90, still_starting=stack.check_alive)

    # Then commands sent to the two in turn: the new one takes every one, the old one none
    answers = []
    for n in range(2, 22):
        url = new if n % 2 == 0 else old
        answers.append((url, *register(url, f"MSK-08{n:02d}")))
    assert all(status == 201 for url, status, _ in answers if url == new), answers
    refused = [answer for url, status, answer in answers if url == old]
    assert all(a["error"] == "writer-retired" for a in refused), refused
    # and the old one says so on /ready, for good
    status, body = call("GET", f"{old}/ready")
    assert status == 503 and body["contexts"]["enrollment"]["problem"].startswith(
        "this instance no longer writes"
    )
    # and exactly the new one's registrations are on the log, each once
    registered = [e.payload["subject_id"] for e in enrollment_events(settings)]
    assert registered == ["MSK-0801", *[f"MSK-08{n:02d}" for n in range(2, 22, 2)]]
