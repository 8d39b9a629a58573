"""An unreadable record on a topic, on the real broker: no reader moves past it, nothing valid
beside it is lost, every reader ends in the same state, and a signed quarantine releases it.

The finding this answers: garbage on the enrollment topic, then a withdrawal through the API,
then an infusion for the withdrawn subject was recorded (201), because the dosing service's
tail had moved past the whole batch; and ``trialops serve`` no longer started."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import orjson
import pytest

from clients.http import call, get_bytes
from clients.journey import Journey, JourneyStepRefused, open_cohort
from events.reading import digest
from tests.integration.helpers import events_of, eventually, whole_view
from tests.integration.raw_events import RawWriter

pytestmark = pytest.mark.kafka

START = datetime(2026, 3, 2, tzinfo=UTC)
SPONSOR = "demo-sponsor"
INVESTIGATOR = "demo-investigator"
GARBAGE = b"\x00not an event"


def quarantine(stack, halt: dict, reason: str = "test garbage, no clinical content"):
    return call(
        "POST",
        f"{stack.service_url}/quarantines",
        {
            "topic": halt["topic"],
            "partition": halt["partition"],
            "offset": halt["offset"],
            "record_sha256": halt["record_sha256"],
            "problem": f"{halt['kind']}: {halt['detail']}"[:500],
            "reason": reason,
            "signature": {"token": SPONSOR, "meaning": "approval"},
        },
        token=SPONSOR,
    )


def withdraw(stack, subject_id: str):
    return call(
        "POST",
        f"{stack.service_url}/enrollment/withdrawals",
        {
            "subject_id": subject_id,
            "reason_code": "consent-withdrawn",
            "occurred_at": "2026-04-20T09:00:00+00:00",
        },
        token=INVESTIGATOR,
    )


def ready(url: str) -> tuple[int, dict]:
    return call("GET", f"{url}/ready")


def run(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trialops", *args],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120,
    )


def subject_ready_for_infusion(stack, subject_id: str) -> Journey:
    cohort = open_cohort(stack.service_url, "DL1", occurred_at=START)
    j = Journey(stack.service_url, subject_id, "MSK", START)
    j.to_enrolled(cohort)
    j.to_released_lot()
    for step in (j.cryopreserve, j.ship, j.receive_at_site, j.reconfirm_eligibility):
        step()
    for day in range(1, j.trial.conditioning.days + 1):
        j.condition(day)
    j.thaw()
    j.verify_bedside_coi(INVESTIGATOR)
    j.verify_bedside_coi("demo-site_coordinator")
    return j


def test_garbage_then_a_withdrawal_never_lets_the_withdrawn_subject_be_infused(stack, settings):
    # Given a subject ready for infusion
    j = subject_ready_for_infusion(stack, "MSK-0701")
    # and a garbage record on the enrollment topic, written by someone other than its writer
    garbage = RawWriter(settings, "enrollment").send_bytes("junk", GARBAGE)

    # When the investigator withdraws the subject
    status, answer = withdraw(stack, "MSK-0701")

    # Then enrollment decides nothing past the garbage: 503 naming the record and its digest
    assert status == 503, answer
    assert answer["error"] == "context-halted"
    halt = answer["details"]["unreadable_record"]
    assert (halt["topic"], halt["offset"]) == (garbage.topic, garbage.offset)
    assert halt["record_sha256"] == digest(GARBAGE)
    # and the infusion is not recorded either: dosing follows enrollment and stands at it
    with pytest.raises(JourneyStepRefused) as refused:
        j.infuse()
    assert (refused.value.status, refused.value.rule) == (503, "context-halted")
    # and /ready says why, while /health still answers
    status, body = ready(stack.service_url)
    assert status == 503 and not body["contexts"]["enrollment"]["ready"]
    assert str(garbage.offset) in body["contexts"]["enrollment"]["problem"]
    assert call("GET", f"{stack.service_url}/health")[0] == 200

    # When the services are restarted, they start (no crash in catch-up) and still refuse
    stack.kill("services")
    stack.restart_services(timeout=60)
    assert withdraw(stack, "MSK-0701")[0] == 503

    # When the sponsor quarantines exactly that record, with a signed reason
    status, answer = quarantine(stack, halt)
    assert status == 201, answer
    assert [e["event_type"] for e in answer["events"]] == ["RecordQuarantined", "RecordSigned"]
    # Then the withdrawal is recorded, and the infusion of the withdrawn subject is refused
    status, answer = withdraw(stack, "MSK-0701")
    assert status == 201, answer
    with pytest.raises(JourneyStepRefused) as refused:
        j.infuse()
    assert refused.value.status == 409, refused.value.answer
    assert not any(e.event_type == "InfusionRecorded" for e in events_of(settings, "dosing"))
    eventually(lambda: ready(stack.service_url)[0] == 200, timeout=30)
    # and the same quarantine again is refused: one decision per record
    assert quarantine(stack, halt)[0] == 409


def test_the_worker_halts_at_an_unreadable_record_and_agrees_with_replay_after_quarantine(
    stack, settings
):
    # Given a cohort, then garbage, then a subject enrolled (written straight to the topic)
    writer = RawWriter(settings, "enrollment")
    from events.enrollment import CohortOpened, SubjectEnrolled

    writer.append(
        "cohort-DL2-IP",
        CohortOpened(cohort_id="DL2-IP", dose_level="DL2", dose_cells_per_kg=3e6,
                     route="intraperitoneal", capacity=3),
    )
    garbage = writer.send_bytes("junk", GARBAGE)
    last = writer.append(
        "subject-MSK-0704", SubjectEnrolled(subject_id="MSK-0704", cohort_id="DL2-IP", slot=1)
    )

    # Then the worker stands at the garbage: /ready names it, the enrollment after it is not
    # applied, and the replay shows exactly the same
    # (a 503 may also say a partition is not assigned yet: wait for the halt itself)
    status, body = eventually(lambda: (lambda r: r if r[0] == 503 and r[1].get("halted") else None)(
        ready(stack.projections_url)), timeout=60)
    [halt] = body["halted"].values()
    assert (halt["offset"], halt["record_sha256"]) == (garbage.offset, digest(GARBAGE))
    # (an RFC 9457 problem, as the services' own /ready answers when not ready)
    assert (body["status"], body["error"]) == (503, "not-ready")
    assert str(garbage.offset) in body["detail"]
    occupancy = f"{stack.projections_url}/projections/cohort-occupancy"
    assert orjson.loads(get_bytes(occupancy))["cohorts"][0]["enrolled"] == []
    replayed = run(settings, "replay", "cohort-occupancy")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == whole_view(occupancy)
    assert b"halted" in replayed.stderr and str(garbage.offset).encode() in replayed.stderr
    # and verify reports the record and exits 1
    verified = run(settings, "verify")
    assert verified.returncode == 1
    assert b"unreadable" in verified.stdout and b"readers halt at" in verified.stdout

    # When it is quarantined
    assert quarantine(stack, halt)[0] == 201

    # Then the worker passes over it and applies what follows, and the replay agrees
    status, _ = call(
        "GET", f"{occupancy}?wait_for={last.topic}:{last.partition}:{last.offset}&timeout=30",
        token="demo-auditor",
    )
    assert status == 200
    assert orjson.loads(get_bytes(occupancy))["cohorts"][0]["enrolled"] == ["MSK-0704"]
    assert ready(stack.projections_url)[0] == 200
    replayed = run(settings, "replay", "cohort-occupancy")
    assert replayed.stdout == whole_view(occupancy)
    verified = run(settings, "verify")
    assert b"quarantined (readers pass over it)" in verified.stdout
    assert verified.returncode == 0, verified.stdout
