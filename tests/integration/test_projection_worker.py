"""The Faust projection worker on a real broker: at-most-once application under redelivery,
poison events to the dead-letter topic and a halt until their quarantine, read-your-writes,
and recovery after SIGKILL.

Events are written straight onto the topic (tests/integration/raw_events.py) so these tests
exercise the worker alone, whatever the services' rules."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from clients.http import DEMO_READER, call, get_bytes
from events.enrollment import CohortOpened, SubjectEnrolled, SubjectWaitlisted
from events.envelope import to_bytes
from events.topics import dead_letter_topic
from infra.topic_admin import worker_group
from tests.integration.helpers import eventually, whole_view
from tests.integration.raw_events import RawWriter
from tests.integration.test_unreadable_records import quarantine

pytestmark = pytest.mark.kafka


def cohort(cohort_id: str, capacity: int = 3) -> CohortOpened:
    return CohortOpened(cohort_id=cohort_id, dose_level="DL1", dose_cells_per_kg=1e6,
                        route="intraperitoneal", capacity=capacity)


def occupancy(stack, **query) -> dict:
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return orjson.loads(get_bytes(f"{stack.projections_url}/projections/cohort-occupancy?{suffix}"))


def replay(settings, name: str) -> bytes:
    return subprocess.run(
        [sys.executable, "-m", "trialops", "replay", name],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120, check=True,
    ).stdout


def test_a_redelivered_event_is_applied_once(stack, settings):
    writer = RawWriter(settings)
    writer.append("cohort-DL1-IP", cohort("DL1-IP"))
    enrolled = writer.envelope(
        "subject-MSK-0001", SubjectEnrolled(subject_id="MSK-0001", cohort_id="DL1-IP", slot=1)
    )
    writer.resend(enrolled)
    last = writer.resend(enrolled)  # Kafka's at-least-once delivery, made visible

    document = occupancy(stack, wait_for=f"{last.topic}:{last.partition}:{last.offset}")

    [row] = document["cohorts"]
    assert row["enrolled"] == ["MSK-0001"]
    assert replay(settings, "cohort-occupancy") == whole_view(
        f"{stack.projections_url}/projections/cohort-occupancy"
    )


def halted_at(stack) -> dict | None:
    """Where the worker stands halted, or None (ready, or not ready for another reason: a
    partition still catching up)."""
    status, body = call("GET", f"{stack.projections_url}/ready")
    return None if status == 200 else next(iter(body.get("halted", {}).values()), None)


def test_a_poison_event_is_dead_lettered_once_and_the_worker_goes_on_after_its_quarantine(
    stack, settings
):
    writer = RawWriter(settings)
    writer.append("cohort-DL2-IP", cohort("DL2-IP"))
    garbage = writer.send_bytes("subject-MSK-0002", b"{not json")
    forged = writer.envelope(
        "subject-MSK-0003", SubjectEnrolled(subject_id="MSK-0003", cohort_id="DL2-IP", slot=1)
    )
    tampered = to_bytes(forged).replace(b'"MSK-0003"', b'"MSK-0666"')
    writer.send_bytes("subject-MSK-0003", tampered)
    last = writer.append(
        "subject-MSK-0004", SubjectEnrolled(subject_id="MSK-0004", cohort_id="DL2-IP", slot=1)
    )

    # The worker stands at each poison event until it is quarantined, then goes on
    for offset in (garbage.offset, garbage.offset + 1):
        halt = eventually(
            lambda offset=offset: (h := halted_at(stack)) and h["offset"] == offset and h,
            timeout=30,
        )
        assert occupancy(stack)["cohorts"][0]["enrolled"] == []
        assert quarantine(stack, halt)[0] == 201
    document = occupancy(stack, wait_for=f"{last.topic}:{last.partition}:{last.offset}")
    assert document["cohorts"][0]["enrolled"] == ["MSK-0004"]

    dlq = dead_letter_topic(worker_group(settings.namespace), settings.namespace)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=15_000)
    consumer.assign([TopicPartition(dlq, 0)])
    partition = TopicPartition(dlq, 0)
    # The worker hands a dead letter to its producer before recording the position; the
    # producer may still be sending it.
    eventually(lambda: consumer.end_offsets([partition])[partition] >= 2, timeout=15)
    dead_letter_count = consumer.end_offsets([partition])[partition]
    letters = []
    for record in consumer:
        letters.append(record)
        if len(letters) >= dead_letter_count:
            break
    consumer.close()
    headers = [dict(r.headers) for r in letters]
    sources = {h["source"].decode() for h in headers}
    assert sources == {
        f"{garbage.topic}:{garbage.partition}:{garbage.offset}",
        f"{last.topic}:{last.partition}:{last.offset - 1}",
    }
    reasons = " ".join(h["reason"].decode() for h in headers)
    assert "hash-mismatch" in reasons and "unreadable" in reasons
    assert dead_letter_count == 2  # each poison event once, however many projections read it
    status, body = call("GET", f"{stack.projections_url}/projections", token=DEMO_READER)
    assert status == 200 and body["dead_lettered"] == {last.topic: 2}
    assert body["halted"] == {}


def test_a_query_waits_for_a_position_and_says_so_when_it_times_out(stack, settings):
    writer = RawWriter(settings)
    last = writer.append("cohort-DL3-IP", cohort("DL3-IP"))
    future = f"{last.topic}:{last.partition}:{last.offset + 100}"

    status, body = call(
        "GET",
        f"{stack.projections_url}/projections/cohort-occupancy?wait_for={future}&timeout=0.5",
        token=DEMO_READER,
    )

    assert status == 504
    assert body["error"] == "projection-behind"
    assert f"not yet {last.offset + 100}" in body["message"]
    status, body = call(
        "GET", f"{stack.projections_url}/projections/cohort-occupancy?wait_for=nonsense",
        token=DEMO_READER,
    )
    assert status == 400 and "TOPIC:PARTITION:OFFSET" in body["message"]
    status, body = call(
        "GET", f"{stack.projections_url}/projections/cohort-occupancy?cohort_id=DL9-IP",
        token=DEMO_READER,
    )
    assert status == 404 and "DL9-IP" in body["message"]


def test_a_worker_killed_mid_stream_recovers_to_the_replay(stack, settings):
    # Given a stream of events the worker is busy applying
    writer = RawWriter(settings)
    writer.append("cohort-DL4-IP", cohort("DL4-IP", capacity=18))
    for n in range(1, 151):
        subject = f"MSK-{n:04d}"
        payload = (
            SubjectEnrolled(subject_id=subject, cohort_id="DL4-IP", slot=n)
            if n <= 18
            else SubjectWaitlisted(subject_id=subject, cohort_id="DL4-IP", position=n - 18)
        )
        writer.append(f"subject-{subject}", payload)
        if n == 75:
            # When the worker is killed without warning half-way through
            stack.kill("projections")
    writer.producer.flush()
    stack.spawn(
        "projections",
        ["worker", "--demo", "--loglevel", "info", "--web-port", str(stack.web_port), "--data-dir",
         str(stack.work_dir)],
    )

    # Then, restarted, it converges to exactly what a replay from scratch computes
    expected = replay(settings, "cohort-occupancy")
    deadline = time.monotonic() + 90

    last: list[object] = [None]

    def converged():
        try:
            last[0] = whole_view(f"{stack.projections_url}/projections/cohort-occupancy")
        except OSError as exc:  # a 4xx/5xx answer, or none
            last[0] = exc
            return False
        return last[0] == expected

    try:
        eventually(converged, timeout=deadline - time.monotonic())
    except AssertionError:
        # What the worker said last, and what it says of itself, for the next reader
        answer = last[0]
        if isinstance(answer, urllib.error.HTTPError):
            answer = f"{answer.code} {answer.read()[:500]!r}"
        ready = call("GET", f"{stack.projections_url}/ready")
        log = (stack.work_dir / "projections.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"no convergence in 90 s; last answer: {str(answer)[:3000]}\n"
                             f"replay: {expected[:1500]!r}\n/ready: {ready}\n"
                             f"the worker's log, its end:\n{log}") from None
    row = orjson.loads(expected)["cohorts"][0]
    assert (len(row["enrolled"]), len(row["waiting_list"])) == (18, 132)
    assert replay(settings, "patient-timeline") == whole_view(
        f"{stack.projections_url}/projections/patient-timeline"
    )


def test_a_worker_that_dies_by_itself_is_started_again_and_folds_the_log_anew(stack, settings):
    # Given events the worker applied
    writer = RawWriter(settings)
    writer.append("cohort-DL4-IP", cohort("DL4-IP"))
    first = writer.append(
        "subject-MSK-0041", SubjectEnrolled(subject_id="MSK-0041", cohort_id="DL4-IP", slot=1)
    )
    occupancy(stack, wait_for=f"{first.topic}:{first.partition}:{first.offset}")
    # When the Faust process dies on its own (its supervisor, `trialops worker`, stays)
    found = subprocess.run(
        ["pgrep", "-P", str(stack.processes["projections"].pid)],
        capture_output=True, text=True, check=True,
    )
    [child] = found.stdout.split()
    # forked from its supervisor (decision 80): a new interpreter would show `worker --once`
    supervisor = stack.processes["projections"].pid
    assert Path(f"/proc/{child}/cmdline").read_bytes() == Path(
        f"/proc/{supervisor}/cmdline").read_bytes()
    os.kill(int(child), 9)
    last = writer.append(
        "subject-MSK-0042", SubjectEnrolled(subject_id="MSK-0042", cohort_id="DL4-IP", slot=2)
    )

    # Then it is started again, rebuilds its projections from the log, and equals the replay
    def caught_up():
        try:
            return occupancy(stack, wait_for=f"{last.topic}:{last.partition}:{last.offset}")
        except OSError:
            return None
    document = eventually(caught_up, timeout=120, interval=1)
    assert document["cohorts"][0]["enrolled"] == ["MSK-0041", "MSK-0042"]
    log = (stack.work_dir / "projections.log").read_text(errors="replace")
    assert "the projections are folded anew" in log
    assert replay(settings, "cohort-occupancy") == whole_view(
        f"{stack.projections_url}/projections/cohort-occupancy"
    )
