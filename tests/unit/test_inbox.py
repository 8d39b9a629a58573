"""The inbox per role (issue 15), at chosen moments of a trial simulated in process (the
simulator's plan for 6 patients, seed 1, run through the real deciders).

Deadlines are counted from the regulation, not read from the code: 21 CFR 312.32(c)(1), a
serious and unexpected suspected adverse reaction is reported no later than 15 calendar days
after the sponsor determines that it qualifies (day 0 the determination's calendar day in the
sponsor's time zone); 21 CFR 312.32(c)(2), an unexpected fatal or life-threatening suspected
adverse reaction no later than 7 calendar days after the sponsor's initial receipt."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

from typer.testing import CliRunner

from clients.journey_steps import INVESTIGATOR
from events.registry import Recorded
from projections.inbox import inbox
from trial.calendar import calendar_day
from trial.config import TrialConfig
from trialops import cli_inbox
from trialops.cli import app

from .in_process import URL
from .test_simulate_plan import run_in_process

FIFTEEN_CALENDAR_DAYS = timedelta(days=15)  # 21 CFR 312.32(c)(1)
SEVEN_CALENDAR_DAYS = timedelta(days=7)  # 21 CFR 312.32(c)(2), from the sponsor's receipt


@cache
def trial_events() -> tuple[TrialConfig, tuple[Recorded, ...]]:
    api, _report, _lines = run_in_process(6, 1)
    return api.trial, tuple(r for _c, r in api.recorded())


def first(event_type: str) -> Recorded:
    _trial, events = trial_events()
    return next(r for r in events if r.payload.event_type == event_type)


def items_at(as_of: datetime, role: str, *, leave_out: str | None = None):
    trial, events = trial_events()
    kept = [r for r in events if r.payload.event_type != leave_out]
    return inbox(kept, trial, as_of, role)


def test_the_safety_officer_must_determine_a_new_serious_unexpected_related_ae():
    determined = first("ExpeditedReportDetermined")
    ae_id = determined.payload.ae_id
    items = items_at(determined.envelope.occurred_at - timedelta(hours=1), "safety_officer")
    [item] = [i for i in items if i.kind == "determination" and i.subject == ae_id]
    assert item.route == "POST /safety/expedited-report-determinations"
    assert not item.overdue
    reported = next(
        r for r in trial_events()[1]
        if r.payload.event_type == "AdverseEventReported" and r.payload.ae_id == ae_id
    )
    assert str(reported.envelope.event_id) in item.why


def test_the_fifteen_day_report_is_due_fifteen_calendar_days_after_the_determination():
    trial, _ = trial_events()
    determined = first("ExpeditedReportDetermined")
    day_zero = calendar_day(determined.payload.determined_at, trial.zone())
    items = items_at(determined.envelope.occurred_at + timedelta(days=1), "safety_officer")
    [item] = [i for i in items if i.kind == "expedited-report"]
    assert item.due == day_zero + FIFTEEN_CALENDAR_DAYS
    assert item.route == "POST /safety/expedited-reports"
    assert not item.overdue
    assert str(determined.envelope.event_id) in item.why
    assert "investigator" not in item.roles


def test_an_unsubmitted_fifteen_day_report_is_overdue_on_the_sixteenth_day():
    trial, _ = trial_events()
    determined = first("ExpeditedReportDetermined")
    day_zero = calendar_day(determined.payload.determined_at, trial.zone())
    sixteenth = datetime.combine(day_zero + timedelta(days=16), datetime.min.time(), trial.zone())
    items = items_at(sixteenth + timedelta(hours=12), "safety_officer",
                     leave_out="ExpeditedReportSubmitted")
    [item] = [i for i in items if i.kind == "expedited-report"]
    assert item.overdue
    assert items[0] is item  # overdue first
    fifteenth_evening = sixteenth - timedelta(hours=1)
    [on_the_day] = [
        i
        for i in items_at(fifteenth_evening, "safety_officer", leave_out="ExpeditedReportSubmitted")
        if i.kind == "expedited-report"
    ]
    assert not on_the_day.overdue


def test_a_submitted_report_leaves_the_inbox():
    submitted = first("ExpeditedReportSubmitted")
    items = items_at(submitted.envelope.occurred_at + timedelta(minutes=1), "safety_officer")
    assert [i for i in items if i.kind == "expedited-report"] == []


def test_an_out_of_specification_lot_waits_for_the_investigator_and_the_sponsor():
    oos = first("LotOutOfSpecification")
    moment = oos.envelope.occurred_at + timedelta(minutes=1)
    for role in ("investigator", "sponsor"):
        [item] = [i for i in items_at(moment, role) if i.kind == "exceptional-release"]
        assert item.subject == oos.payload.lot_id
        assert item.roles == (role,)
        assert str(oos.envelope.event_id) in item.why
    assert [i for i in items_at(moment, "safety_officer") if i.kind == "exceptional-release"] == []


def test_quality_records_the_missing_qc_results_of_a_lot_in_testing():
    harvested = first("LotHarvested")
    items = items_at(harvested.envelope.occurred_at + timedelta(minutes=1), "manufacturing_qa")
    [item] = [i for i in items if i.kind == "qc-results"]
    assert item.subject == harvested.payload.lot_id
    assert item.route == "POST /manufacturing/qc-results"


def test_the_investigator_adjudicates_a_severe_ae_in_the_dlt_window():
    _trial, events = trial_events()
    graded = next(
        r for r in events if r.payload.event_type == "CrsGraded" and r.payload.grade >= 3
    )
    ae_id = graded.payload.ae_id
    adjudicated = next(
        r for r in events
        if r.payload.event_type == "DltAdjudicated" and r.payload.ae_id == ae_id
    )
    # offered while the service would take it: a second before the simulator's adjudication
    items = items_at(adjudicated.envelope.occurred_at - timedelta(seconds=1), "investigator")
    [item] = [i for i in items if i.kind == "dlt-adjudication" and i.subject == ae_id]
    assert item.route == "POST /safety/dlt-adjudications"
    assert str(graded.envelope.event_id) in item.why
    assert [i for i in items_at(graded.envelope.occurred_at, "safety_officer")
            if i.kind == "dlt-adjudication"] == []


def test_the_investigator_evaluates_a_subject_once_the_dlt_window_is_over():
    """DOMAIN.md section 3: the DLT window runs from the infusion (day 0) for the trial's
    configured days (28 by default); a day either side of the end is checked, not the end."""
    trial, _events = trial_events()
    infusion = first("InfusionRecorded")
    subject = infusion.payload.subject_id
    day_zero = calendar_day(infusion.payload.infused_at, trial.zone())
    midnight = datetime.min.time()
    inside = datetime.combine(
        day_zero + timedelta(days=trial.dlt.window_days - 1), midnight, trial.zone()
    )
    after = datetime.combine(
        day_zero + timedelta(days=trial.dlt.window_days + 2), midnight, trial.zone()
    )

    def evaluations(moment: datetime) -> list[str]:
        items = items_at(moment, "investigator", leave_out="DltEvaluationCompleted")
        return [i.subject for i in items if i.kind == "dlt-evaluation"]

    assert subject not in evaluations(inside)
    assert subject in evaluations(after)
    [due] = [
        i for i in items_at(after, "investigator", leave_out="DltEvaluationCompleted")
        if i.kind == "dlt-evaluation" and i.subject == subject
    ]
    assert due.why == (str(infusion.envelope.event_id),)
    assert due.route == "POST /safety/dlt-evaluations"
    assert subject not in [
        i.subject for i in items_at(after, "investigator") if i.kind == "dlt-evaluation"
    ]


@cache
def with_a_fatal_ae() -> tuple[TrialConfig, tuple[Recorded, ...], datetime]:
    """The same trial, and a day after its last event a fatal, possibly related, unexpected AE
    of an infused subject: DOMAIN.md section 3, it pauses enrollment (stopping rule) and is on
    the 7-day clock from the sponsor's receipt."""
    api, _report, _lines = run_in_process(6, 1)
    last = api.recorded()[-1][1].envelope.occurred_at
    received = last + timedelta(days=1)
    body = {
        "ae_id": "AE-MSK-0002-F1",
        "subject_id": "MSK-0002",
        "term": "Respiratory failure",
        "grade": 5,
        "onset_at": (received - timedelta(hours=2)).isoformat(),
        "serious_criteria": ["death"],
        "attribution": "possible",
        "expected": False,
        "sponsor_received_at": received.isoformat(),
        "occurred_at": received.isoformat(),
    }
    status, answer = api("POST", f"{URL}/safety/adverse-events", body, token=INVESTIGATOR)
    assert status == 201, answer
    return api.trial, tuple(r for _c, r in api.recorded()), received


def test_a_fatal_ae_puts_a_seven_day_report_and_a_safety_review_in_the_inboxes():
    trial, events, received = with_a_fatal_ae()
    day_zero = calendar_day(received, trial.zone())
    as_of = received + timedelta(hours=1)
    officer = inbox(events, trial, as_of, "safety_officer")
    [seven] = [i for i in officer if i.kind == "expedited-report" and "7-day report" in i.detail]
    assert seven.due == day_zero + SEVEN_CALENDAR_DAYS
    assert {i.kind for i in officer} >= {"determination", "safety-review"}
    investigator = inbox(events, trial, as_of, "investigator")
    [review] = [i for i in investigator if i.kind == "safety-review"]
    assert review.route == "POST /safety/reviews"
    paused = [r for r in events if r.payload.event_type == "EnrollmentPaused"]
    assert review.why == tuple(str(r.envelope.event_id) for r in paused)
    assert all(i.kind != "expedited-report" for i in investigator)
    late = inbox(events, trial, as_of + timedelta(days=8), "safety_officer")
    assert [i for i in late if i.subject == "AE-MSK-0002-F1" and i.overdue]


def test_the_inbox_command_prints_the_overdue_report_first_and_counts_it():
    trial, events, received = with_a_fatal_ae()
    as_of = received + timedelta(days=9)
    items = inbox(events, trial, as_of, "safety_officer")
    lines = cli_inbox.to_table(items).splitlines()
    assert lines[2].startswith("OVERDUE") and "AE-MSK-0002-F1" in lines[2]
    overdue = sum(1 for i in items if i.overdue)
    assert overdue >= 1
    assert cli_inbox.summary(items, "safety_officer", as_of).endswith(
        f"{len(items)} pending, {overdue} overdue"
    )
    document = cli_inbox.document(items, "safety_officer", as_of)
    assert document["items"][0]["overdue"] and document["overdue"] == overdue


def test_the_inbox_command_refuses_a_role_the_trial_file_does_not_name():
    result = CliRunner().invoke(app, ["inbox", "--role", "courier"])
    assert result.exit_code == 2
    assert "unknown role 'courier'" in result.output


def test_the_investigator_reconfirms_eligibility_once_the_lot_is_released():
    """DOMAIN.md section 2 item 5 and the sibling trial NCT04577326: eligibility is re-checked
    after successful manufacturing, before conditioning."""
    released = first("LotReleased")
    lot_id = released.payload.lot_id
    moment = released.envelope.occurred_at + timedelta(seconds=1)
    [item] = [
        i for i in items_at(moment, "investigator")
        if i.kind == "eligibility-reconfirmation" and i.subject == lot_id
    ]
    assert item.route == "POST /enrollment/eligibility-reconfirmations"
    assert str(released.envelope.event_id) in item.why
    _trial, events = trial_events()
    reconfirmed = next(
        r for r in events
        if r.payload.event_type == "EligibilityReconfirmed" and r.payload.lot_id == lot_id
    )
    later = items_at(reconfirmed.envelope.occurred_at + timedelta(seconds=1), "investigator")
    kinds = [i.kind for i in later if i.subject == lot_id]
    assert "eligibility-reconfirmation" not in kinds
