"""Electronic signatures (21 CFR 11.50, 11.200) on a real broker: a lot release needs the
signer to re-authenticate; the signature is its own event, right after the record it signs, in
the same stream; the audit trail shows its manifestation (printed name, time, meaning)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import orjson
import pytest

from clients.http import call
from clients.journey import Journey, open_cohort
from events.envelope import from_bytes
from events.topics import event_topic
from infra.kafka_io import read_to_end

pytestmark = pytest.mark.kafka

START = datetime(2026, 3, 2, tzinfo=UTC)


def released_to_qc(stack) -> Journey:
    cohort = open_cohort(stack.service_url, "DL1", occurred_at=START)
    journey = Journey(stack.service_url, "MSK-0801", "MSK", START)
    journey.to_enrolled(cohort)
    for step in ("apheresis", "custody_to_courier", "receive_apheresis", "manufacture", "harvest",
                 "qc_results"):
        getattr(journey, step)()
    return journey


def manufacturing_events(settings):
    topic = event_topic("manufacturing", settings.namespace)
    return [from_bytes(v) for _p, _k, v in read_to_end(settings.bootstrap_servers, [topic])]


def test_a_release_without_a_valid_signature_is_refused_and_a_signed_one_is_recorded(
    stack, settings
):
    journey = released_to_qc(stack)
    url = f"{stack.service_url}/manufacturing/dispositions"
    body = {"lot_id": journey.lot_id, "occurred_at": journey.when("disposition").isoformat()}
    before = len(manufacturing_events(settings))

    # Given no signature, the wrong meaning, or another user's credentials: refused
    status, answer = call("POST", url, body, token="demo-manufacturing_qa")
    assert (status, answer["error"]) == (422, "signature-required")
    wrong_meaning = {**body, "signature": {"token": "demo-manufacturing_qa", "meaning": "review"}}
    status, answer = call("POST", url, wrong_meaning, token="demo-manufacturing_qa")
    assert (status, answer["error"]) == (422, "signature-meaning")
    someone_else = {**body, "signature": {"token": "demo-investigator", "meaning": "approval"}}
    status, answer = call("POST", url, someone_else, token="demo-manufacturing_qa")
    assert (status, answer["error"]) == (401, "signature-reauthentication-failed")
    assert len(manufacturing_events(settings)) == before

    # When the QA signer re-authenticates
    signed = {**body, "signature": {"token": "demo-manufacturing_qa", "meaning": "approval"}}
    status, answer = call("POST", url, signed, token="demo-manufacturing_qa")
    assert status == 201, answer

    # Then the release is followed in its stream by its signature, bound to its hash
    events = manufacturing_events(settings)[before:]
    assert [e.event_type for e in events] == ["LotReleased", "RecordSigned"]
    release, signature = events
    assert signature.stream_id == release.stream_id
    assert signature.stream_seq == release.stream_seq + 1
    assert signature.prev_hash == release.hash
    assert signature.payload["signed_hash"] == release.hash
    assert signature.payload["signed_event_id"] == str(release.event_id)
    assert (signature.payload["printed_name"], signature.payload["meaning"]) == (
        "Demo Manufacturing Qa", "approval",
    )

    # and the audit trail shows the manifestation on the release's row
    trail = subprocess.run(
        [sys.executable, "-m", "trialops", "audit", "trail", "--lot", journey.lot_id,
         "--format", "json"],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120, check=True,
    ).stdout
    rows = orjson.loads(trail)
    released = next(r for r in rows if r["event_type"] == "LotReleased")
    assert not any(r["event_type"] == "RecordSigned" for r in rows)
    [manifestation] = released["signatures"]
    assert manifestation["printed_name"] == "Demo Manufacturing Qa"
    assert manifestation["meaning"] == "approval"
