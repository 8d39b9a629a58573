"""Which alerts are due, and when (issue 15, decision 52).

Reference deadlines, counted from the regulation and not read from the code: 21 CFR
312.32(c)(2), an unexpected fatal or life-threatening suspected adverse reaction is reported no
later than 7 calendar days after the sponsor's initial receipt; 21 CFR 312.32(c)(1), a serious
and unexpected suspected adverse reaction no later than 15 calendar days after the sponsor's
determination. Calendar days are the sponsor's (New York, the trial file's time zone). The
lead time is the trial file's default, 24 hours."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from events.envelope import Actor
from events.notifications import AlertDelivered, AlertDeliveryFailed, AlertRaised
from events.registry import Recorded
from events.safety import AdverseEventReported, ExpeditedReportDetermined, ReportDue
from projections.alerts import alerts_due, part_of, retry_after, to_send
from projections.inbox import Desk
from trial.config import load_trial

from .builders import sealed

NEW_YORK = ZoneInfo("America/New_York")
RECEIVED = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)  # 10:00 in New York on 5 March
SEVEN_DAY_DUE = date(2026, 3, 12)  # 21 CFR 312.32(c)(2): 5 March + 7 calendar days
DETERMINED = datetime(2026, 4, 1, 14, 0, tzinfo=UTC)  # 10:00 in New York on 1 April
FIFTEEN_DAY_DUE = date(2026, 4, 16)  # 21 CFR 312.32(c)(1): 1 April + 15 calendar days


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=NEW_YORK)


def recorded(payload, stream: str, when: datetime, seq: int = 1) -> Recorded:
    envelope = sealed(payload, stream_id=stream, stream_seq=seq, occurred_at=when,
                      recorded_at=when, actor=Actor(user_id="u-1", role="investigator"))
    return Recorded(envelope, payload)


def fatal_ae() -> Recorded:
    return recorded(AdverseEventReported(
        ae_id="AE-0007-01", subject_id="MSK-0007", term="Respiratory failure", grade=5,
        onset_at=RECEIVED - timedelta(hours=3), serious_criteria=("death",),
        attribution="possible", expected=False, sponsor_received_at=RECEIVED,
        special_interest=None, haematological=False, conditioning_lab_effect=False,
        ctcae_version="5.0",
    ), "ae-AE-0007-01", RECEIVED)


def serious_unexpected_ae() -> list[Recorded]:
    reported = recorded(AdverseEventReported(
        ae_id="AE-0008-01", subject_id="MSK-0008", term="Pneumonitis", grade=3,
        onset_at=DETERMINED - timedelta(days=2), serious_criteria=("hospitalisation",),
        attribution="probable", expected=False, sponsor_received_at=DETERMINED - timedelta(days=1),
        special_interest=None, haematological=False, conditioning_lab_effect=False,
        ctcae_version="5.0",
    ), "ae-AE-0008-01", DETERMINED - timedelta(days=1))
    determined = recorded(ExpeditedReportDetermined(
        ae_id="AE-0008-01", subject_id="MSK-0008", basis="initial", determined_at=DETERMINED,
        information_received_at=DETERMINED - timedelta(days=1),
        reports_due=(ReportDue(report="15-day", day_zero=date(2026, 4, 1),
                               due_on=FIFTEEN_DAY_DUE),),
    ), "ae-AE-0008-01", DETERMINED, seq=2)
    return [reported, determined]


def desk_of(*events: Recorded) -> Desk:
    desk = Desk()
    for event in events:
        desk.fold(event)
    return desk


def seven_day_alerts(as_of: datetime, desk: Desk | None = None, trial=None):
    trial = trial or load_trial()
    desk = desk or desk_of(fatal_ae())
    return [a for a in alerts_due(desk.pending(trial, as_of), trial, as_of)
            if a.item.kind == "expedited-report" and a.item.detail.startswith("7-day report")]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(date(2026, 3, 6), 9), []),  # the day after the receipt: 6 days to go
        (at(date(2026, 3, 11), 23), []),  # 11 March, 23:00: more than 24 hours left
        (at(SEVEN_DAY_DUE, 0), ["approaching"]),  # the last day begins: 24 hours left
        (at(SEVEN_DAY_DUE, 22), ["approaching"]),
        (at(date(2026, 3, 13), 0), ["overdue"]),  # the day after the last day
        (at(date(2026, 3, 20), 9), ["overdue"]),
    ],
)
def test_the_seven_day_report_is_alerted_a_day_before_its_last_day_ends_and_once_overdue(
    moment, expected
):
    alerts = seven_day_alerts(moment)
    assert [a.stage for a in alerts] == expected
    for alert in alerts:
        assert alert.item.due == SEVEN_DAY_DUE
        assert alert.deadline == at(date(2026, 3, 13), 0)
        assert alert.item.roles == ("safety_officer",)


def test_an_alert_id_names_the_stage_the_kind_the_subject_and_the_deadline():
    [approaching] = seven_day_alerts(at(SEVEN_DAY_DUE, 9))
    [overdue] = seven_day_alerts(at(date(2026, 3, 14), 9))
    assert approaching.alert_id == "approaching/expedited-report/AE-0007-01/2026-03-12"
    assert overdue.alert_id == "overdue/expedited-report/AE-0007-01/2026-03-12"
    document = approaching.as_json()
    assert document["alert_id"] == approaching.alert_id
    assert document["route"] == "POST /safety/expedited-reports"
    assert document["why"] == [str(fatal_ae().envelope.event_id)]


def test_the_fifteen_day_report_is_alerted_on_its_fifteenth_day():
    trial = load_trial()
    desk = desk_of(*serious_unexpected_ae())

    def stages(moment: datetime) -> list[str]:
        return [a.stage for a in alerts_due(desk.pending(trial, moment), trial, moment)
                if a.item.subject == "AE-0008-01"]

    assert stages(at(date(2026, 4, 15), 12)) == []
    assert stages(at(FIFTEEN_DAY_DUE, 1)) == ["approaching"]
    assert stages(at(FIFTEEN_DAY_DUE + timedelta(days=1), 1)) == ["overdue"]


def test_a_longer_lead_time_for_a_kind_alerts_it_earlier():
    trial = load_trial()
    trial = trial.model_copy(update={"alerts": trial.alerts.model_copy(
        update={"lead_hours_by_kind": {"expedited-report": 72}})})
    desk = desk_of(fatal_ae())
    moment = at(date(2026, 3, 10), 1)  # 3 days minus an hour before the deadline
    assert [a.stage for a in seven_day_alerts(moment, desk, trial)] == ["approaching"]


def test_items_without_a_deadline_raise_no_alert():
    trial = load_trial()
    desk = desk_of(fatal_ae())
    moment = at(SEVEN_DAY_DUE, 9)
    kinds = {i.kind for i in desk.pending(trial, moment)}
    assert "determination" in kinds  # pending, but with no regulatory clock of its own
    assert {a.item.kind for a in alerts_due(desk.pending(trial, moment), trial, moment)} == {
        "expedited-report"}


def notice(payload, when: datetime, seq: int) -> Recorded:
    return recorded(payload, f"alert-{payload.alert_id}", when, seq)


def raised(alert, when: datetime) -> Recorded:
    item = alert.item
    return notice(AlertRaised(
        alert_id=alert.alert_id, stage=alert.stage, kind=item.kind, subject=item.subject,
        due=alert.due, roles=item.roles, route=item.route, detail=item.detail, why=item.why,
    ), when, 1)


def test_an_alert_the_log_shows_delivered_is_not_sent_again():
    trial = load_trial()
    moment = at(SEVEN_DAY_DUE, 9)
    desk = desk_of(fatal_ae())
    [alert] = to_send(desk, trial, moment)
    desk.fold(raised(alert, moment))
    assert to_send(desk, trial, moment) == [alert]  # raised, not yet delivered: sent again
    desk.fold(notice(AlertDelivered(alert_id=alert.alert_id, roles=("safety_officer",),
                                    channels=1), moment, 2))
    assert to_send(desk, trial, moment + timedelta(hours=1)) == []
    # and once overdue, the next stage is a new alert
    [overdue] = to_send(desk, trial, at(date(2026, 3, 13), 9))
    assert overdue.stage == "overdue"


def test_a_failed_delivery_is_tried_again_after_a_growing_wait():
    trial = load_trial()
    moment = at(SEVEN_DAY_DUE, 9)
    desk = desk_of(fatal_ae())
    [alert] = to_send(desk, trial, moment)
    desk.fold(raised(alert, moment))
    desk.fold(notice(AlertDeliveryFailed(alert_id=alert.alert_id, roles=("safety_officer",),
                                         problem="connection refused"), moment, 2))
    assert to_send(desk, trial, moment + timedelta(seconds=30)) == []
    assert to_send(desk, trial, moment + timedelta(minutes=1)) == [alert]
    desk.fold(notice(AlertDeliveryFailed(alert_id=alert.alert_id, roles=("safety_officer",),
                                         problem="connection refused"), moment, 3))
    assert to_send(desk, trial, moment + timedelta(minutes=1)) == []
    assert to_send(desk, trial, moment + timedelta(minutes=2)) == [alert]
    assert retry_after(30) == timedelta(hours=1)


def test_two_reports_of_one_ae_due_the_same_day_each_get_their_alert():
    """Two items of one kind, subject and deadline (a 7-day report and a follow-up report of
    one AE, both due 12 March): two alerts, each id the shared one with its own part."""
    trial = load_trial()
    [item] = [i for i in desk_of(fatal_ae()).pending(trial, at(SEVEN_DAY_DUE, 9))
              if i.kind == "expedited-report" and i.detail.startswith("7-day report")]
    follow_up = replace(item, detail="follow-up report of AE-0007-01 (Respiratory failure, "
                                     "MSK-0007), day 0 2026-03-10")
    alerts = alerts_due([item, follow_up], trial, at(SEVEN_DAY_DUE, 9))
    assert [a.item for a in alerts] == [item, follow_up]
    base = "approaching/expedited-report/AE-0007-01/2026-03-12"
    first, second = (a.alert_id for a in alerts)
    assert first != second
    assert first == f"{base}/{part_of(item)}" and second == f"{base}/{part_of(follow_up)}"
    # an item alone keeps the id its stage, kind, subject and deadline give
    [alone] = alerts_due([item], trial, at(SEVEN_DAY_DUE, 9))
    assert alone.alert_id == base and alone.part is None


def test_a_stage_begins_at_the_deadline_less_the_lead_time_or_at_the_deadline():
    [approaching] = seven_day_alerts(at(SEVEN_DAY_DUE, 9))
    assert approaching.began == at(SEVEN_DAY_DUE, 0)  # 24 hours before 13 March 00:00
    [overdue] = seven_day_alerts(at(date(2026, 3, 14), 9))
    assert overdue.began == at(date(2026, 3, 13), 0)
