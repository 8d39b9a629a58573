"""Issue 9, findings 2 and 7, on the real broker: a body that breaks a rule of the HTTP edge is
refused with a 4xx naming the field and the rule, and nothing reaches the topic; a good
command after it is recorded and the worker stays up.

Sources: services/validation.py (the rules), the trial file's ``records`` (the time window)."""

from __future__ import annotations

import pytest
import requests

from clients.http import DEMO_READER, call
from tests.integration.helpers import (
    INVESTIGATOR,
    enrollment_events,
    eventually,
    post,
    posted,
)

pytestmark = pytest.mark.kafka


def test_bad_reasons_times_and_characters_are_refused_and_nothing_is_appended(stack, settings):
    # Given a registered subject and an open cohort
    posted(stack, "/enrollment/subjects", {"subject_id": "MSK-0901", "site_id": "MSK"})
    posted(
        stack, "/enrollment/cohorts", {"cohort_id": "DL1-IP", "dose_level": "DL1"}, INVESTIGATOR
    )
    before = len(enrollment_events(settings))

    # When bodies break the edge's rules, on routes with and without a reason field
    refusals = [
        ("/enrollment/prescreenings", {"subject_id": "MSK-0901", "msln_ihc_percent": 60,
                                       "reason": 123}, None, "reason", "string_type"),
        ("/enrollment/prescreenings", {"subject_id": "MSK-0901", "msln_ihc_percent": 60,
                                       "reason": "x" * 1_047_000}, None, "reason",
         "string_too_long"),
        ("/enrollment/cohorts/closures", {"cohort_id": "DL1-IP", "reason": 123}, INVESTIGATOR,
         "reason", "string_type"),
        ("/enrollment/cohorts/closures", {"cohort_id": "DL1-IP", "reason": "x" * 1_047_000},
         INVESTIGATOR, "reason", "string_too_long"),
        ("/enrollment/subjects", {"subject_id": "MSK-0902", "site_id": "   "}, None, "site_id",
         "string_pattern_mismatch"),
        ("/enrollment/subjects", {"subject_id": "MSK-0902", "site_id": "MSK\u202e"}, None,
         "site_id", "forbidden-character"),
        ("/enrollment/consents", {"subject_id": "MSK-0901", "form_version": "ICF-v1",
                                  "signed_at": "0001-01-01T00:00:00Z"}, None, "signed_at",
         "business-time-before-trial-start"),
        ("/enrollment/prescreenings", {"subject_id": "MSK-0901", "msln_ihc_percent": 60,
                                       "occurred_at": "9999-01-01T00:00:00Z"}, None,
         "occurred_at", "business-time-in-future"),
    ]
    answers = [
        (post(stack, path, body, **({"token": token} if token else {})), field, rule)
        for path, body, token, field, rule in refusals
    ]
    oversized = requests.post(
        f"{stack.service_url}/enrollment/subjects",
        data=b'{"padding": "' + b"x" * (1024 * 1024) + b'"}',
        headers={"Authorization": "Bearer demo-site_coordinator",
                 "Content-Type": "application/json"},
        timeout=30,
    )

    # Then each is a 422 naming the field and the rule, the large body a 413 in JSON
    for (status, answer), field, rule in answers:
        assert status == 422, (field, answer)
        assert {"field": field, "rule": rule} in [
            {"field": f["field"], "rule": f["rule"]} for f in answer["fields"]
        ], answer
    assert oversized.status_code == 413
    assert oversized.json()["error"] == "body-too-large"
    # and nothing reached the topic, while a good command still does
    assert len(enrollment_events(settings)) == before
    posted(stack, "/enrollment/prescreenings",
           {"subject_id": "MSK-0901", "msln_ihc_percent": 60, "reason": "late entry"})
    assert len(enrollment_events(settings)) == before + 1
    # and the worker is up, its timeline showing the accepted prescreening with its reason
    def prescreened():
        status, timeline = call(
            "GET", f"{stack.projections_url}/projections/patient-timeline?subject_id=MSK-0901",
            token=DEMO_READER,
        )
        if status != 200:
            return None
        return next(
            (e for s in timeline["subjects"] for e in s["entries"]
             if e["event_type"] == "PrescreeningRecorded"),
            None,
        )

    assert eventually(prescreened)["reason"] == "late entry"
    stack.check_alive()
