"""Every event is signed by its topic's writer, on the real broker: a correctly hashed and
chained event appended by a plain producer, unsigned or signed with a key that is not the
writer's, is reported by ``verify`` and kept out of every projection and every decision."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.http import call, get_bytes
from events.enrollment import SubjectEnrolled
from events.signing import Signer
from tests.integration.helpers import eventually, open_cohort
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
