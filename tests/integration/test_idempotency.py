"""Idempotent commands on the real broker: a retry with the same ``Idempotency-Key`` and body
gets the first answer and appends nothing, also after a restart; the same key with another
body is refused."""

from __future__ import annotations

import orjson
import pytest

from tests.integration.helpers import enrollment_events

pytestmark = pytest.mark.kafka


def register(stack, body: dict, key: str | None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{stack.service_url}/enrollment/subjects", data=orjson.dumps(body), method="POST"
    )
    request.add_header("Authorization", "Bearer demo-site_coordinator")
    if key is not None:
        request.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def test_the_same_key_twice_appends_one_event_and_answers_the_same(stack, settings):
    body = {"subject_id": "MSK-0901", "site_id": "MSK"}

    first = register(stack, body, "3f6d0c1e-retry-1")
    again = register(stack, body, "3f6d0c1e-retry-1")

    assert first[0] == 201, first
    assert again == first
    assert [e.payload["subject_id"] for e in enrollment_events(settings)] == ["MSK-0901"]
    [event] = enrollment_events(settings)
    assert event.idempotency is not None and event.idempotency.key == "3f6d0c1e-retry-1"
    assert event.hash_is_valid()

    # The same key with another request is refused, and appends nothing
    status, answer = register(stack, {**body, "site_id": "SITE-02"}, "3f6d0c1e-retry-1")
    assert (status, answer["error"]) == (422, "idempotency-key-reused")
    # Without a key, the retry is a new command, refused by the rule it breaks
    status, answer = register(stack, body, None)
    assert (status, answer["error"]) == (409, "subject-registered-once")

    # After a restart the key is known again: it is rebuilt from the log
    stack.kill("services")
    stack.restart_services(timeout=60)
    assert register(stack, body, "3f6d0c1e-retry-1") == first
    assert len(enrollment_events(settings)) == 1


def test_a_malformed_key_is_refused(stack):
    status, answer = register(stack, {"subject_id": "MSK-0902", "site_id": "MSK"}, "x" * 129)

    assert (status, answer["error"]) == (400, "invalid-idempotency-key")
