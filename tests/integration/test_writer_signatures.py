"""Every event is signed by its topic's writer, on the real broker: a correctly hashed and
chained event appended by a plain producer, unsigned or signed with a key that is not the
writer's, is reported by ``verify`` and kept out of every projection and every decision; the
events of one transaction, signed once (decision 70), are read by every reader."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.replay import replay
from audit.verify import verify
from clients.http import DEMO_READER, call, get_bytes
from events.enrollment import SubjectEnrolled
from events.signing import Signer
from projections.base import to_json
from tests.integration.helpers import (
    CONSENT_SIGNED,
    enrollment_events,
    eventually,
    open_cohort,
    posted,
    register,
    whole_view,
)
from tests.integration.raw_events import RawWriter

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(
    ("forger", "kind"),
    [(None, "unsigned"), (Signer("enrollment-1", Ed25519PrivateKey.generate()), "bad-signature")],
    ids=["unsigned", "signed-with-another-key"],
)
def test_a_forged_correctly_hashed_event_is_reported_and_kept_out(stack, settings, forger, kind):
    # Given a cohort opened through the enrollment service
    open_cohort(stack, "DL1-IP", "DL1")
    # When someone who reaches Kafka appends a well-formed, correctly hashed and chained event
    forged = RawWriter(settings, "enrollment", signer=forger).append(
        "subject-FORGED-999",
        SubjectEnrolled(subject_id="FOR-0999", cohort_id="DL1-IP", slot=1),
        actor={"user_id": "dr-nobody", "role": "investigator"},
    )

    # Then the worker stands at it, and the cohort never lists the forged subject
    def halted():
        status, body = call("GET", f"{stack.projections_url}/ready")
        return status == 503 and body["halted"] and body
    body = eventually(halted, timeout=60)
    [halt] = body["halted"].values()
    assert (halt["offset"], halt["kind"]) == (forged.offset, kind)
    occupancy = orjson.loads(get_bytes(f"{stack.projections_url}/projections/cohort-occupancy"))
    assert [c["enrolled"] for c in occupancy["cohorts"]] == [[]]
    # and verify reports it and exits 1
    result = subprocess.run(
        [sys.executable, "-m", "trialops", "verify", "--json"],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120,
    )
    assert result.returncode == 1
    report = orjson.loads(result.stdout)
    assert report["problems_by_kind"] == {kind: 1}, report
    # and the enrollment service decides nothing past it
    status, answer = call(
        "POST", f"{stack.service_url}/enrollment/subjects",
        {"subject_id": "MSK-0991", "site_id": "MSK"}, token="demo-site_coordinator",
    )
    assert (status, answer["error"]) == (503, "context-halted"), answer


def test_the_events_of_one_transaction_are_signed_once_and_every_reader_reads_them(
    stack, settings
):
    # Given a subject registered through the enrollment service
    register(stack, "MSK-0101")
    # When a pre-screening below the MSLN threshold records two events in one transaction
    answer = posted(stack, "/enrollment/prescreenings", {
        "subject_id": "MSK-0101", "msln_ihc_percent": 10.0, "occurred_at": CONSENT_SIGNED,
    })
    assert [e["event_type"] for e in answer["events"]] == [
        "PrescreeningRecorded", "SubjectScreenFailed"
    ], answer

    # Then both carry one signature of their tree head, each with its place and proof
    both = [e for e in enrollment_events(settings) if e.stream_id == "subject-MSK-0101"][-2:]
    signed = [e.writer_signature for e in both]
    assert [(s.batch.index, s.batch.size, len(s.batch.path)) for s in signed] == [
        (0, 2, 1), (1, 2, 1)
    ]
    assert signed[0].signature == signed[1].signature
    # and verify finds nothing wrong, the worker applies them, and its view equals the replay
    assert verify(settings).by_kind() == {}
    url = f"{stack.projections_url}/projections/patient-timeline?subject_id=MSK-0101"

    def screen_failed():
        status, body = call("GET", url, token=DEMO_READER)
        return status == 200 and "SubjectScreenFailed" in orjson.dumps(body).decode() and body
    eventually(screen_failed, timeout=60)
    live = whole_view(f"{stack.projections_url}/projections/patient-timeline", DEMO_READER)
    assert to_json(replay(settings, "patient-timeline")) == live
