"""Two instances of the services on the real broker (decision 59): the writers' group gives the
contexts' partitions to one, the other stands by and passes it the commands it receives. An
instance that stalls past the session timeout loses them to the other, which fences it; when
it wakes it has retired from writing and stands by, so every accepted command is on the log
once and no command is written by two writers."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request

import orjson
import pytest

from clients.http import call, wait_until_up
from tests.conftest import free_port
from tests.integration.helpers import enrollment_events, post

pytestmark = pytest.mark.kafka


def register(url: str, subject_id: str, key: str) -> tuple[int, dict]:
    """Register a subject through ``url`` with an ``Idempotency-Key``."""
    request = urllib.request.Request(
        f"{url}/enrollment/subjects",
        data=orjson.dumps({"subject_id": subject_id, "site_id": "MSK"}), method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key,
                 "Authorization": "Bearer demo-site_coordinator"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read() or b"null")


def ready(url: str) -> dict:
    return call("GET", f"{url}/ready")[1]


def until(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def test_a_standby_passes_commands_on_and_takes_over_from_a_stalled_holder(stack, settings):
    # Given the first instance holds the partitions and wrote something
    first = post(stack, "/enrollment/subjects", {"subject_id": "MSK-0801", "site_id": "MSK"})
    assert first[0] == 201
    old = stack.service_url
    assert "standby_for" not in ready(old)
    # When a second instance starts for the same contexts
    port = free_port()
    stack.spawn("services-2", ["serve", "--demo", "--port", str(port)])
    new = f"http://127.0.0.1:{port}"
    wait_until_up(f"{new}/health", timeout=90, still_starting=stack.check_alive)

    # Then it stands by for the first, and the first keeps the partitions
    said = until("the second instance stands by", lambda: ready(new).get("standby_for"))
    assert said == old
    assert "standby_for" not in ready(old)
    # and commands sent to the two in turn are all decided, by the holder
    accepted = []
    for n in range(2, 12):
        url = new if n % 2 == 0 else old
        status, answer = register(url, f"MSK-08{n:02d}", f"key-{n}")
        assert status == 201, (url, answer)
        accepted.append(f"MSK-08{n:02d}")

    # When the holder stalls past the session timeout (SIGSTOP: alive, not heartbeating)
    holder = stack.processes["services"]
    os.killpg(holder.pid, signal.SIGSTOP)
    try:
        # Then the standby takes the partitions over and decides commands itself; a command
        # that reached it while the holder was stalled is answered 503 and sent again with its
        # key, so it is decided once
        def taken() -> bool:
            status, answer = register(new, "MSK-0850", "key-50")
            assert status in (201, 503), answer
            return status == 201

        until("the standby takes over", taken, timeout=90)
        accepted.append("MSK-0850")
        assert "standby_for" not in ready(new)
    finally:
        os.killpg(holder.pid, signal.SIGCONT)

    # When the stalled instance wakes: it was fenced, and the group tells it to stand by
    said = until("the woken instance stands by", lambda: ready(old).get("standby_for"), 60)
    assert said == new
    # and commands sent to it are passed on and decided once
    for n in range(51, 55):
        status, answer = register(old, f"MSK-08{n:02d}", f"key-{n}")
        assert status == 201, answer
        accepted.append(f"MSK-08{n:02d}")
    status, again = register(old, "MSK-0850", "key-50")  # a retry of a decided command
    assert status == 201, again

    # and exactly the accepted registrations are on the log, each once, in order
    registered = [e.payload["subject_id"] for e in enrollment_events(settings)]
    assert registered == ["MSK-0801", *accepted]
    stack.check_alive()


def test_a_killed_holder_leaves_the_partitions_to_the_standby(stack, settings):
    # Given a second instance standing by
    port = free_port()
    stack.spawn("services-2", ["serve", "--demo", "--port", str(port)])
    new = f"http://127.0.0.1:{port}"
    wait_until_up(f"{new}/health", timeout=90, still_starting=stack.check_alive)
    until("the second instance stands by", lambda: ready(new).get("standby_for"))
    assert register(new, "MSK-0901", "k-1")[0] == 201
    # When the holder is killed without a word
    stack.kill("services")
    # Then the standby holds the partitions once the session has timed out
    started = time.monotonic()
    until("the standby takes over", lambda: register(new, "MSK-0902", "k-2")[0] == 201, 90)
    took = time.monotonic() - started
    assert ready(new)["ready"] is True
    # and the log holds each accepted registration once
    registered = [e.payload["subject_id"] for e in enrollment_events(settings)]
    assert registered == ["MSK-0901", "MSK-0902"], (registered, took)
