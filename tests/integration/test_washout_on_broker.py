"""A prior therapy recorded by enrollment holds the leukapheresis (manufacturing) and the
infusion (dosing), on the real broker, through the public HTTP API: both services follow
enrollment's topic.

Source: the shipped trial file's ``washout`` (the project's defaults): checkpoint inhibitors 28
days before leukapheresis, chemotherapy 14 days before infusion, calendar days in
America/New_York (EDT, UTC-4, from 8 March 2026). The journey's calendar starts on 2 March 2026:
apheresis on study day 7 (9 March), infusion on study day 35 (6 April), both in the morning in
New York."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clients.journey import Journey, JourneyStepRefused, open_cohort, send
from clients.journey_steps import COORDINATOR, moment

pytestmark = pytest.mark.kafka

START = datetime(2026, 3, 2, tzinfo=UTC)


def record_prior_therapy(stack, subject_id: str, therapy_class: str, last_dose_on: str,
                         at: datetime) -> dict:
    body = {
        "subject_id": subject_id,
        "therapy_class": therapy_class,
        "last_dose_on": last_dose_on,
        "occurred_at": at.isoformat(),
    }
    return send(stack.service_url, "record-prior-therapy", "/enrollment/prior-therapies", body,
                COORDINATOR)


def test_a_checkpoint_inhibitor_22_days_ago_holds_the_leukapheresis_until_day_28(stack):
    cohort = open_cohort(stack.service_url, "DL1", occurred_at=START)
    subject = Journey(stack.service_url, "MSK-0721", "MSK", START)
    subject.to_enrolled(cohort)
    # Given nivolumab was last given on 15 February, recorded at enrollment
    recorded = record_prior_therapy(stack, "MSK-0721", "checkpoint-inhibitor", "2026-02-15",
                                    moment(START, "enroll") + timedelta(hours=1))
    assert [e["event_type"] for e in recorded["events"]] == ["PriorTherapyRecorded"]

    # When the apheresis is recorded on 9 March (22 days later)
    with pytest.raises(JourneyStepRefused) as refusal:
        subject.apheresis()

    # Then manufacturing refuses it, naming the therapy and the first day allowed
    assert (refusal.value.status, refusal.value.rule) == (409, "washout-complete")
    [violation] = refusal.value.answer["details"]["violations"]
    assert violation == {"therapy_class": "checkpoint-inhibitor", "last_dose_on": "2026-02-15",
                         "days_since": 22, "required_days": 28, "earliest_on": "2026-03-15"}

    # And on 15 March (day 28) the collection is recorded
    collected = subject.apheresis(at=datetime(2026, 3, 15, 14, tzinfo=UTC))
    assert [e["event_type"] for e in collected["events"]] == ["ApheresisCollected"]


def test_bridging_chemotherapy_six_days_before_the_infusion_holds_it(stack):
    cohort = open_cohort(stack.service_url, "DL1", occurred_at=START)
    subject = Journey(stack.service_url, "MSK-0722", "MSK", START)
    subject.to_enrolled(cohort)
    subject.to_released_lot()
    for step in (subject.cryopreserve, subject.ship, subject.receive_at_site):
        step()
    subject.reconfirm_eligibility()
    # Given bridging chemotherapy was last given on 31 March, recorded the same day
    record_prior_therapy(stack, "MSK-0722", "chemotherapy", "2026-03-31",
                         datetime(2026, 3, 31, 20, tzinfo=UTC))
    subject.conditioning()
    subject.thaw()
    subject.bedside_checks()

    # When the infusion is recorded on 6 April (6 days later)
    with pytest.raises(JourneyStepRefused) as refusal:
        subject.infuse()

    # Then dosing refuses it: 14 days are needed, the first day allowed is 14 April
    assert (refusal.value.status, refusal.value.rule) == (409, "washout-complete")
    assert refusal.value.answer["details"]["milestone"] == "infusion"
    [violation] = refusal.value.answer["details"]["violations"]
    assert (violation["days_since"], violation["earliest_on"]) == (6, "2026-04-14")
