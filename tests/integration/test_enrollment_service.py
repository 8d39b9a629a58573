"""The enrollment service on the real broker: a subject from pre-screening to a slot and the
re-confirmation of eligibility after the lot's release, the review's cohort decisions; and
refusals (before consent, during a safety pause, without a released lot, a dose not in the
trial file) that append nothing.

Sources: DOMAIN.md sections 1-3, DESIGN.md section 5. Facts of other contexts (a lot
released, the stopping rule) are appended by a stand-in writer (helpers.append_upstream)."""

from __future__ import annotations

import orjson
import pytest

from events.manufacturing import LotReleased
from events.safety import EnrollmentPaused, EnrollmentResumed
from tests.integration.helpers import (
    CONSENT_SIGNED,
    INVESTIGATOR,
    NOW,
    append_upstream,
    enroll,
    enrollment_events,
    eventually,
    make_eligible,
    post,
    posted,
    register,
)

pytestmark = pytest.mark.kafka

LOT = "LOT-0501-A"


def event_types(answer) -> list[str]:
    return [e["event_type"] for e in answer["events"]]


def test_a_subject_goes_from_pre_screening_to_a_slot_and_is_reconfirmed_after_release(
    stack, settings
):
    # Given the review opens DL1 at the protocol's start level (dose and route from the file)
    answer = posted(
        stack, "/enrollment/cohorts", {"cohort_id": "DL1-IP", "dose_level": "DL1"}, INVESTIGATOR
    )
    assert event_types(answer) == ["CohortOpened"]

    # When MSK-0501 goes through screening and MSK-0502's tumour stains 12% for MSLN
    make_eligible(stack, "MSK-0501")
    register(stack, "MSK-0502")
    failed = posted(
        stack, "/enrollment/prescreenings", {"subject_id": "MSK-0502", "msln_ihc_percent": 12}
    )
    # and MSK-0501 is enrolled, MSK-0503 enrolled then withdrawn before infusion
    assert event_types(
        posted(stack, "/enrollment/enrollments", {"subject_id": "MSK-0501", "cohort_id": "DL1-IP"})
    ) == ["SubjectEnrolled"]
    make_eligible(stack, "MSK-0503")
    assert enroll(stack, "MSK-0503", "DL1-IP")[0] == 201
    withdrawn = posted(
        stack,
        "/enrollment/withdrawals",
        {"subject_id": "MSK-0503", "reason_code": "consent-withdrawn", "reason": "moved abroad"},
        INVESTIGATOR,
    )
    # and manufacturing releases MSK-0501's lot, and the investigator re-confirms eligibility
    append_upstream(
        settings,
        "manufacturing",
        f"lot-{LOT}",
        LotReleased(
            lot_id=LOT,
            subject_id="MSK-0501",
            coi_id="COI-MSK-0501-01",
            total_car_t_cells=2.0e9,
            conditional=True,
        ),
        role="manufacturing_qa",
    )
    reconfirmed = posted(
        stack,
        "/enrollment/eligibility-reconfirmations",
        {"subject_id": "MSK-0501", "lot_id": LOT},
        INVESTIGATOR,
    )
    # and the review expands DL1 by three and closes it
    posted(
        stack,
        "/enrollment/cohorts/expansions",
        {"cohort_id": "DL1-IP", "additional_slots": 3, "recommendation_id": "REC-DL1-1"},
        INVESTIGATOR,
    )
    posted(
        stack,
        "/enrollment/cohorts/closures",
        {"cohort_id": "DL1-IP", "reason": "escalate to DL2"},
        INVESTIGATOR,
    )

    # Then the pre-screen failure is recorded with the percentage as evidence
    assert event_types(failed) == ["PrescreeningRecorded", "SubjectScreenFailed"]
    assert event_types(withdrawn) == ["SubjectWithdrawn", "SlotReleased"]
    assert event_types(reconfirmed) == ["EligibilityReconfirmed"]
    events = enrollment_events(settings)
    by_type = {}
    for e in events:
        by_type.setdefault(e.event_type, []).append(e)
    [screen_failure] = by_type["SubjectScreenFailed"]
    assert screen_failure.payload["failed_criteria"][0]["evidence"] == "12% of tumour cells"
    # and the eligibility assessment holds every criterion, met, with its evidence
    assessment = by_type["EligibilityAssessed"][0]
    assert assessment.stream_id == "subject-MSK-0501"
    assert all(c["met"] for c in assessment.payload["criteria"])
    assert assessment.payload["criteria"][0]["evidence"] == "60% of tumour cells (pre-screening)"
    assert (assessment.actor.role, by_type["ConsentRecorded"][0].payload["signed_at"]) == (
        "investigator",
        CONSENT_SIGNED.replace("+00:00", "Z"),
    )
    # and the cohort carries the trial file's dose, route and 3+3 size
    [opened] = by_type["CohortOpened"]
    assert opened.payload["dose_cells_per_kg"] == 1e6
    assert (opened.payload["route"], opened.payload["capacity"]) == ("intraperitoneal", 3)
    # and the withdrawal's reason is on the envelope, the closure's in payload and envelope
    assert by_type["SubjectWithdrawn"][0].reason == "moved abroad"
    assert by_type["CohortClosed"][0].reason == "escalate to DL2"
    assert by_type["EligibilityReconfirmed"][0].payload == {
        "subject_id": "MSK-0501",
        "lot_id": LOT,
    }

    # and the Faust worker shows DL1-IP closed, 6 planned, MSK-0501 in it, no slot free
    def occupancy_settled():
        document = orjson.loads(stack.occupancy())
        cohorts = {c["cohort_id"]: c for c in document["cohorts"]}
        dl1 = cohorts.get("DL1-IP")
        return dl1 if dl1 and dl1["status"] == "closed" else None

    dl1 = eventually(occupancy_settled)
    assert (dl1["slots_planned"], dl1["enrolled"], dl1["slots_free"]) == (6, ["MSK-0501"], 0)


def test_refused_commands_name_the_rule_and_append_nothing(stack, settings):
    # Given DL1 open, MSK-0601 eligible, MSK-0602 pre-screened but not consented
    posted(stack, "/enrollment/cohorts", {"cohort_id": "DL1-IP", "dose_level": "DL1"}, INVESTIGATOR)
    make_eligible(stack, "MSK-0601")
    register(stack, "MSK-0602")
    posted(stack, "/enrollment/prescreenings", {"subject_id": "MSK-0602", "msln_ihc_percent": 80})
    # and the stopping rule has paused enrollment after AE-0009-01
    append_upstream(
        settings,
        "safety",
        "stopping-rule-stand-in",
        EnrollmentPaused(ae_id="AE-0009-01", subject_id="MSK-0009", rule="grade5-related"),
        role="safety_officer",
    )
    before = len(enrollment_events(settings))

    refusals = [
        # (path, body, token, status, error, text the message names)
        (
            "/enrollment/enrollments",
            {"subject_id": "MSK-0601", "cohort_id": "DL1-IP"},
            None,
            409,
            "enrollment-paused",
            "AE-0009-01",
        ),
        (
            "/enrollment/eligibility-assessments",
            {"subject_id": "MSK-0602"},
            INVESTIGATOR,
            422,
            "invalid-command",
            "labs",
        ),
        (
            "/enrollment/withdrawals",
            {"subject_id": "MSK-0602", "reason_code": "death"},
            INVESTIGATOR,
            409,
            "consent-before-study-procedures",
            "MSK-0602",
        ),
        (
            "/enrollment/eligibility-reconfirmations",
            {"subject_id": "MSK-0601", "lot_id": LOT},
            INVESTIGATOR,
            409,
            "subject-must-hold-a-slot",
            "MSK-0601",
        ),
        (
            "/enrollment/cohorts",
            {"cohort_id": "DL5-IP", "dose_level": "DL5", "recommendation_id": "REC-1"},
            INVESTIGATOR,
            404,
            "dose-level-from-trial-file",
            "DL5",
        ),
        (
            "/enrollment/cohorts",
            {
                "cohort_id": "DL2-IV",
                "dose_level": "DL2",
                "route": "intravenous",
                "recommendation_id": "REC-1",
            },
            INVESTIGATOR,
            409,
            "route-from-trial-file",
            "intraperitoneal",
        ),
        (
            "/enrollment/cohorts",
            {"cohort_id": "DL2-IP", "dose_level": "DL2"},
            INVESTIGATOR,
            409,
            "decision-cites-recommendation",
            "recommendation",
        ),
        (
            "/enrollment/consents",
            {
                "subject_id": "MSK-0602",
                "form_version": "ICF-v1",
                "signed_at": "2030-01-01T00:00:00Z",
                "occurred_at": NOW,
            },
            None,
            422,
            "invalid-command",
            "signed_at",
        ),
        (
            "/enrollment/eligibility-assessments",
            {"subject_id": "MSK-0602"},
            None,
            403,
            "role-not-permitted",
            "investigator",
        ),
    ]
    for path, body, token, status, error, named in refusals:
        got, answer = post(stack, path, body, **({"token": token} if token else {}))
        assert (got, answer["error"]) == (status, error), (path, answer)
        assert named in answer["message"], (path, answer)

    # Then nothing was appended
    assert len(enrollment_events(settings)) == before

    # When a documented safety review resumes enrollment Then the subject takes slot 1
    append_upstream(
        settings,
        "safety",
        "stopping-rule-stand-in",
        EnrollmentResumed(review_id="SR-0001", summary="not product related"),
        role="safety_officer",
    )
    status, answer = enroll(stack, "MSK-0601", "DL1-IP")
    assert status == 201, answer
