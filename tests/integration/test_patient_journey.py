"""One patient's whole path through the four command services on the real broker, driven only
through the public HTTP command API (clients.journey): consent, eligibility, enrollment,
apheresis, manufacturing and release, conditioning, the two-person bedside check, the infusion,
a grade 3 CRS that does not improve within 72 hours, its DLT adjudication and the DLT
evaluation. Then two refusals: the infusion of a lot that is not released (still in QC, or out
of specification), and of a lot released conditionally whose sterility turned positive.

Sources: DOMAIN.md sections 2 (workflow, release, conditional release) and 3 (CRS grading, DLT
rule and evaluation); the rules are the deciders' (services/*)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from audit.verify import verify
from clients.journey import Journey, JourneyStepRefused, open_cohort
from clients.journey_steps import moment
from events.envelope import GENESIS_HASH, Envelope, from_bytes
from events.topics import CONTEXTS, event_topic
from infra.kafka_io import read_to_end
from infra.settings import Settings

pytestmark = pytest.mark.kafka

START = datetime(2026, 3, 2, tzinfo=UTC)
"""Day 0 of the journey's calendar, at midnight."""
INVESTIGATOR = "demo-investigator"
COORDINATOR = "demo-site-coordinator"
QA = "demo-manufacturing-qa"


def streams(settings: Settings) -> dict[tuple[str, str], list[Envelope]]:
    """Every event of the four event topics, per (context, stream), in topic order."""
    topics = {event_topic(c, settings.namespace): c for c in CONTEXTS}
    found: dict[tuple[str, str], list[Envelope]] = defaultdict(list)
    for position, _key, value in read_to_end(settings.bootstrap_servers, list(topics)):
        envelope = from_bytes(value)
        found[(topics[position.topic], envelope.stream_id)].append(envelope)
    return dict(found)


def types(answer) -> list[str]:
    return [e["event_type"] for e in answer["events"]]


def test_one_patient_from_consent_to_a_counted_dlt(stack, settings):
    cohort = open_cohort(stack.service_url, "DL1", occurred_at=START)
    j = Journey(stack.service_url, "MSK-0601", "MSK", START)
    ae = "AE-MSK-0601-01"

    j.to_enrolled(cohort)
    assert types(j.to_released_lot()) == ["LotReleased", "RecordSigned"]
    infused = j.to_infused()
    assert types(infused) == ["InfusionRecorded"]
    j.report_ae()  # CRS grade 1 the day after the infusion
    assert types(j.grade_crs()) == ["CrsGraded"]  # fever and one vasopressor: grade 3
    j.record_improvement(after=timedelta(hours=96))  # later than the rule's 72 h
    assert types(j.adjudicate_dlt()) == ["DltAdjudicated", "RecordSigned"]
    assert types(j.close_dlt_evaluation()) == ["DltEvaluationCompleted"]

    log = streams(settings)
    lot = "lot-LOT-MSK-0601-A"
    expected = {
        ("enrollment", "cohort-DL1-IP"): [("CohortOpened", INVESTIGATOR)],
        ("enrollment", "subject-MSK-0601"): [
            ("SubjectRegistered", COORDINATOR),
            ("PrescreeningRecorded", COORDINATOR),
            ("ConsentRecorded", COORDINATOR),
            ("EligibilityAssessed", INVESTIGATOR),
            ("SubjectEnrolled", COORDINATOR),
            ("EligibilityReconfirmed", INVESTIGATOR),
        ],
        ("manufacturing", lot): [
            ("ApheresisCollected", COORDINATOR),
            ("CustodyTransferred", COORDINATOR),
            ("CustodyTransferred", QA),
            ("ApheresisReceived", QA),
            ("ManufacturingStarted", QA),
            ("ManufacturingStepStarted", QA),
            ("ManufacturingStepStarted", QA),
            ("LotHarvested", QA),
            *[("QcResultRecorded", QA)] * 9,
            ("LotReleased", QA),
            ("RecordSigned", QA),
            ("LotCryopreserved", QA),
            ("CustodyTransferred", QA),
            ("LotShipped", QA),
            ("CustodyTransferred", COORDINATOR),
            ("LotReceivedAtSite", COORDINATOR),
            ("LotThawed", COORDINATOR),
        ],
        ("dosing", "subject-MSK-0601"): [
            *[("ConditioningDayRecorded", COORDINATOR)] * 3,
            ("BedsideCoiVerified", INVESTIGATOR),
            ("BedsideCoiVerified", COORDINATOR),
            ("InfusionRecorded", INVESTIGATOR),
        ],
        ("safety", f"ae-{ae}"): [
            ("AdverseEventReported", COORDINATOR),
            ("CrsGraded", INVESTIGATOR),
            ("AdverseEventImproved", COORDINATOR),
            ("DltAdjudicated", INVESTIGATOR),
            ("RecordSigned", INVESTIGATOR),
        ],
        ("safety", "dlt-evaluation-MSK-0601"): [("DltEvaluationCompleted", INVESTIGATOR)],
    }
    assert {k: [(e.event_type, e.actor.user_id) for e in v] for k, v in log.items()} == expected

    report = verify(settings)  # hashes, chains, sequence, schemas of every stream
    assert report.ok, report.as_dict()["problems"]
    roles = {INVESTIGATOR: "investigator", COORDINATOR: "site_coordinator", QA: "manufacturing_qa"}
    for key, events in log.items():
        assert [e.stream_seq for e in events] == list(range(1, len(events) + 1)), key
        assert [e.prev_hash for e in events] == [GENESIS_HASH, *(e.hash for e in events[:-1])]
        for e in events:
            assert e.hash_is_valid(), (key, e.event_type)
            assert e.actor.role == roles[e.actor.user_id]
            assert e.trial_id == "NCT06623396"

    # the infusion: business time from the journey's calendar, the dose within tolerance
    infusion = log[("dosing", "subject-MSK-0601")][-1]
    assert infusion.occurred_at == moment(START, "infuse")
    assert infusion.occurred_at < infusion.recorded_at  # recorded now, happened in 2026
    assert infusion.payload["cohort_id"] == "DL1-IP"
    assert abs(infusion.payload["cells_infused"] - 1e6 * 72.0) <= 0.2 * 1e6 * 72.0
    assert str(infusion.event_id) == infused["events"][0]["event_id"]
    assert infused["events"][0]["position"]["topic"] == event_topic("dosing", settings.namespace)
    bedside = log[("dosing", "subject-MSK-0601")][3:5]
    assert {e.payload["verified_by"] for e in bedside} == {INVESTIGATOR, COORDINATOR}
    # one chain of identity from the apheresis bag to the bedside
    by_type = {e.event_type: e.payload for e in log[("manufacturing", lot)]}
    assert by_type["LotReleased"]["conditional"] is False
    assert {
        by_type["ApheresisCollected"]["coi_id"],
        by_type["LotReleased"]["coi_id"],
        *(e.payload["coi_id"] for e in bedside),
    } == {j.coi_id}

    # the CRS: grade 3, improved only after 96 h; the rule and the investigator say DLT
    _reported, graded, _improved, adjudicated, _signed = log[("safety", f"ae-{ae}")]
    assert graded.payload["grade"] == 3
    assert adjudicated.payload["rule_verdict"] == adjudicated.payload["verdict"] == "dlt"
    assert adjudicated.payload["rule_criterion"] == "crs-icans-grade3-not-improved"
    assert adjudicated.payload["departure_reason"] is None
    (evaluation,) = log[("safety", "dlt-evaluation-MSK-0601")]
    assert evaluation.payload["dlt"] is True
    assert evaluation.payload["dlt_ae_ids"] == [ae]
    assert evaluation.payload["dose_level"] == "DL1"
    # closed at once with the DLT, well inside the 28-day window
    assert evaluation.occurred_at < infusion.occurred_at + timedelta(days=28)


def test_a_lot_in_qc_or_out_of_specification_is_not_infused(stack, settings):
    cohort = open_cohort(stack.service_url, "DL1", occurred_at=START)
    in_qc = Journey(stack.service_url, "MSK-0611", "MSK", START)
    in_qc.to_enrolled(cohort)
    in_qc.apheresis()
    in_qc.custody_to_courier()
    in_qc.receive_apheresis()
    in_qc.manufacture()
    in_qc.harvest()
    in_qc.qc_result("viability", 88.0)
    oos = Journey(stack.service_url, "MSK-0612", "MSK", START, weight_kg=64.0)
    oos.to_enrolled(cohort)
    assert types(oos.to_released_lot(viability=60)) == ["LotOutOfSpecification", "RecordSigned"]

    with pytest.raises(JourneyStepRefused) as still_in_qc:
        in_qc.infuse(cells_infused=7.2e7)
    with pytest.raises(JourneyStepRefused) as out_of_spec:
        oos.infuse(cells_infused=6.4e7)

    for refused in (still_in_qc.value, out_of_spec.value):
        assert (refused.step, refused.status, refused.rule) == (
            "infuse",
            409,
            "lot-must-be-released",
        )
    assert still_in_qc.value.answer["details"]["state"] == "not-released"
    assert "last manufacturing event: QcResultRecorded" in still_in_qc.value.message
    assert out_of_spec.value.answer["details"]["state"] == "out-of-specification"
    assert out_of_spec.value.answer["details"]["failed_tests"] == ["viability"]
    log = streams(settings)
    assert not [key for key in log if key[0] == "dosing"], "a refusal appends nothing"
    assert log[("manufacturing", "lot-LOT-MSK-0612-A")][-2].payload["failed_tests"] == ["viability"]


def test_a_late_positive_sterility_after_a_conditional_release_blocks_the_infusion(stack, settings):
    cohort = open_cohort(stack.service_url, "DL1", occurred_at=START)
    j = Journey(stack.service_url, "MSK-0621", "MSK", START)
    j.to_enrolled(cohort)
    assert types(j.to_released_lot(sterility="negative-to-date")) == [
        "LotReleased",
        "RecordSigned",
    ]
    j.cryopreserve()
    j.ship()
    j.receive_at_site()
    j.reconfirm_eligibility()
    j.conditioning()
    j.thaw()
    j.bedside_checks()
    # On the morning of the infusion the 14-day sterility culture turns positive
    late = j.qc_result("sterility", "positive", at=moment(START, "infuse") - timedelta(minutes=30))
    assert types(late) == ["QcResultRecorded", "LotOutOfSpecification"]

    with pytest.raises(JourneyStepRefused) as refused:
        j.infuse()

    assert (refused.value.status, refused.value.rule) == (409, "lot-must-be-released")
    assert "out of specification (sterility) after its release" in refused.value.message
    assert refused.value.answer["details"]["failed_tests"] == ["sterility"]
    log = streams(settings)
    lot = log[("manufacturing", "lot-LOT-MSK-0621-A")]
    released = next(e for e in lot if e.event_type == "LotReleased")
    assert released.payload["conditional"] is True
    assert lot[-1].event_type == "LotOutOfSpecification"
    assert lot[-1].payload["after_release"] is True
    # conditioning and both bedside checks were recorded; the infusion was not
    assert [e.event_type for e in log[("dosing", "subject-MSK-0621")]] == [
        *["ConditioningDayRecorded"] * 3,
        "BedsideCoiVerified",
        "BedsideCoiVerified",
    ]
