"""The journey's plan against the real deciders, in process (no Kafka, no HTTP server): each
request is checked for the role the trial file permits, validated by the route's command model
and decided by its context's decider; accepted events are evolved into every context that
follows that context, as the services' upstream tails do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clients.journey import Journey, JourneyStepRefused, open_cohort
from clients.journey_steps import CALENDAR, identifiers
from services.manufacturing.identifiers import check_character

from .in_process import URL, InProcess

START = datetime(2026, 3, 2, tzinfo=UTC)
"""Day 0 of the journey's calendar, at midnight."""


@pytest.fixture
def api() -> InProcess:
    return InProcess()


def journey(api: InProcess, subject_id: str = "MSK-0601") -> Journey:
    return Journey(URL, subject_id, "MSK", START, trial=api.trial, transport=api)


def test_the_whole_path_is_accepted_in_calendar_order(api):
    cohort = open_cohort(URL, "DL1", occurred_at=START, trial=api.trial, transport=api)
    j = journey(api)
    j.to_enrolled(cohort)
    j.to_released_lot()
    j.to_infused()
    j.report_ae()
    j.grade_crs()
    j.record_improvement()
    j.adjudicate_dlt()
    j.close_dlt_evaluation()

    assert api.types("dosing", "subject-MSK-0601") == [
        *["ConditioningDayRecorded"] * 3,
        "BedsideCoiVerified",
        "BedsideCoiVerified",
        "InfusionRecorded",
    ]
    assert api.types("safety", "dlt-evaluation-MSK-0601") == ["DltEvaluationCompleted"]
    assert api.states["safety"].subjects["MSK-0601"].dlt_evaluated
    # every stream's business times run forward
    streams: dict[tuple[str, str], list[datetime]] = {}
    for context, stream, _type, at, _user in api.appended:
        streams.setdefault((context, stream), []).append(at)
    for key, times in streams.items():
        assert times == sorted(times), key


def test_no_dlt_closes_the_evaluation_after_the_window(api):
    cohort = open_cohort(URL, "DL1", occurred_at=START, trial=api.trial, transport=api)
    j = journey(api)
    j.to_enrolled(cohort)
    j.to_infused()
    j.report_ae()
    j.grade_crs()
    j.record_improvement(after=timedelta(hours=48))
    j.adjudicate_dlt(verdict="not-dlt")
    with pytest.raises(JourneyStepRefused) as refused:
        j.close_dlt_evaluation(at=j.infused_at + timedelta(days=27))
    assert refused.value.rule == "dlt-window-open"
    j.close_dlt_evaluation()
    window = timedelta(days=api.trial.dlt.window_days)
    assert api.appended[-1][3] > j.infused_at + window


def test_an_out_of_specification_lot_goes_on_after_two_exceptional_release_decisions(api):
    cohort = open_cohort(URL, "DL1", occurred_at=START, trial=api.trial, transport=api)
    j = journey(api)
    j.to_enrolled(cohort)
    answer = j.to_released_lot(viability=60)
    assert [e["event_type"] for e in answer["events"]] == ["LotOutOfSpecification"]
    with pytest.raises(JourneyStepRefused) as refused:
        j.cryopreserve()
    assert (refused.value.step, refused.value.status) == ("cryopreserve", 409)
    assert refused.value.rule == "lot-must-be-released"
    j.exceptional_release()
    assert [e["event_type"] for e in j.to_infused()["events"]] == ["InfusionRecorded"]


def test_a_refused_step_is_named(api):
    cohort = open_cohort(URL, "DL1", occurred_at=START, trial=api.trial, transport=api)
    j = journey(api)
    j.to_enrolled(cohort)
    with pytest.raises(JourneyStepRefused) as refused:
        j.infuse()
    assert refused.value.step == "infuse"
    assert refused.value.status == 409
    assert "infuse: 409 lot-must-be-released" in str(refused.value)


def test_a_failed_criterion_is_a_screen_failure(api):
    open_cohort(URL, "DL1", occurred_at=START, trial=api.trial, transport=api)
    j = journey(api)
    j.register()
    j.prescreen()
    j.consent()
    answer = j.assess_eligibility(ecog=3)
    assert [e["event_type"] for e in answer["events"]] == [
        "EligibilityAssessed",
        "SubjectScreenFailed",
    ]


def test_identifiers_carry_valid_check_characters_and_follow_the_subject():
    coi, din = identifiers("MSK-0601", "A", 2026)
    assert coi != din
    for identifier in (coi, din):
        assert len(identifier) == 14
        assert check_character(identifier[:-1]) == identifier[-1]
    assert identifiers("MSK-0601", "A", 2026) == (coi, din)
    assert identifiers("MSK-0602", "A", 2026)[0] != coi
    assert identifiers("MSK-0601", "B", 2026)[0] != coi


def test_the_calendar_puts_conditioning_days_minus_5_to_minus_3_before_the_infusion():
    infusion_day = CALENDAR["infuse"][0]
    conditioning = [CALENDAR["conditioning"][0] + d for d in (1, 2, 3)]
    assert [day - infusion_day for day in conditioning] == [-5, -4, -3]
