"""The stopping rule's pause reaches dosing, on the real broker, through the public HTTP API.

Source: DOMAIN.md section 3, stopping rules (the project's default): a grade 5 event at least
possibly related pauses the trial until a documented safety review; enrollment *and dosing*
are suspended. The safety service appends the pause to its topic; the dosing service follows
that topic and refuses the infusion of a subject who was ready for it, until the review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clients.journey import Journey, JourneyStepRefused, open_cohort, send
from clients.journey_steps import moment

pytestmark = pytest.mark.kafka

START = datetime(2026, 3, 2, tzinfo=UTC)
SAFETY_OFFICER = "demo-safety_officer"


def test_a_grade_5_related_event_pauses_the_infusion_until_the_safety_review(stack):
    cohort = open_cohort(stack.service_url, "DL1", occurred_at=START)
    # Given MSK-0712 is conditioned, the product thawed and checked at the bedside by two people
    ready = Journey(stack.service_url, "MSK-0712", "MSK", START)
    ready.to_enrolled(cohort)
    ready.to_released_lot()
    for step in (ready.cryopreserve, ready.ship, ready.receive_at_site):
        step()
    ready.reconfirm_eligibility()
    ready.conditioning()
    ready.thaw()
    ready.bedside_checks()
    # and another subject of the trial dies of a probably related CRS before the infusion
    other = Journey(stack.service_url, "MSK-0711", "MSK", START)
    other.to_enrolled(cohort)
    died_at = moment(START, "infuse") - timedelta(hours=6)
    reported = other.report_ae(
        grade=5, serious_criteria=["death"], onset_at=died_at, at=died_at + timedelta(hours=1)
    )
    assert [e["event_type"] for e in reported["events"]] == [
        "AdverseEventReported",
        "EnrollmentPaused",
    ]

    # When the investigator records the infusion
    with pytest.raises(JourneyStepRefused) as refusal:
        ready.infuse()

    # Then it is refused, naming the rule and the event that paused the trial
    assert refusal.value.status == 409
    assert refusal.value.rule == "dosing-paused"
    assert refusal.value.answer["details"]["ae_ids"] == [other.ae_ids[-1]]

    # When the documented safety review allows the trial to go on, the infusion is recorded
    review = {
        "review_id": "SR-2026-01",
        "reviewed_ae_ids": [other.ae_ids[-1]],
        "allows_resumption": True,
        "summary": "Death reviewed by the safety committee; dosing may resume.",
        "occurred_at": (died_at + timedelta(hours=3)).isoformat(),
    }
    send(stack.service_url, "safety-review", "/safety/reviews", review, SAFETY_OFFICER)
    infused = ready.infuse()
    assert [e["event_type"] for e in infused["events"]] == ["InfusionRecorded"]
