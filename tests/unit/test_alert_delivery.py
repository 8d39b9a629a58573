"""The worker's alert tick and its channels (decision 52), without Kafka or a network: a desk
fed by hand, the command services and apprise's channels stood in for.

Reference deadline: 21 CFR 312.32(c)(2), the 7-day report of a fatal unexpected suspected
adverse reaction is due 7 calendar days after the sponsor's receipt (5 March -> 12 March, in
the sponsor's New York calendar); the trial file's lead time is 24 hours."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.notifications import AlertDelivered, AlertRaised
from infra.alerts import (
    ALERTS_FILE_ENV,
    ALERTS_INTERVAL_ENV,
    NOTIFIER_TOKEN_ENV,
    AlertsConfigError,
    AlertSettings,
    Channels,
)
from projections.inbox import Desk
from projections.notifier import Notifier
from trial.config import load_trial

from .test_alerts import SEVEN_DAY_DUE, at, fatal_ae, notice

ALERT_ID = "approaching/expedited-report/AE-0007-01/2026-03-12"
ON_THE_LAST_DAY = at(SEVEN_DAY_DUE, 9)


class StandInDesk:
    """Stands in for ``LiveDesk``: the desk as folded so far."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def catch_up(self) -> Desk:
        return self.desk


class StandInChannels:
    def __init__(self, problem: str | None = None) -> None:
        self.sent: list[tuple[list[str], str, dict[str, Any]]] = []
        self.problem = problem

    def deliver(self, roles, title: str, body: str) -> tuple[int, str | None]:
        self.sent.append((list(roles), title, orjson.loads(body)))
        return (0, self.problem) if self.problem else (1, None)


class StandInServices:
    def __init__(self, raise_status: int = 201, raise_answer: Any = None) -> None:
        self.posts: list[tuple[str, dict[str, Any], str | None]] = []
        self.raise_status, self.raise_answer = raise_status, raise_answer

    async def post(self, path: str, body: dict[str, Any], key: str | None) -> tuple[int, Any]:
        self.posts.append((path, body, key))
        if path == "/notifications/alerts":
            return self.raise_status, self.raise_answer
        return 201, {}


def tick(desk: Desk, channels: StandInChannels, services: StandInServices,
         moment: datetime = ON_THE_LAST_DAY) -> int:
    notifier = Notifier(StandInDesk(desk), load_trial(), channels,  # type: ignore[arg-type]
                        services.post, clock=lambda: moment)
    return asyncio.run(notifier.tick())


def test_a_tick_raises_the_alert_with_its_id_as_idempotency_key_delivers_and_records_it():
    channels, services = StandInChannels(), StandInServices()
    assert tick(desk_with_ae(), channels, services) == 1
    [(roles, title, body)] = channels.sent
    assert roles == ["safety_officer"] and ALERT_ID in title
    assert body["alert_id"] == ALERT_ID and body["due"] == "2026-03-12"
    [(raise_path, raised, key), (record_path, record, no_key)] = services.posts
    assert (raise_path, key) == ("/notifications/alerts", ALERT_ID)
    assert raised["stage"] == "approaching" and raised["roles"] == ["safety_officer"]
    assert (record_path, no_key) == ("/notifications/alert-deliveries", None)
    assert record["outcome"] == "delivered" and record["channels"] == 1


def desk_with_ae() -> Desk:
    desk = Desk()
    desk.fold(fatal_ae())
    return desk


def test_an_alert_the_desk_shows_raised_is_delivered_without_a_second_raise():
    desk = desk_with_ae()
    desk.fold(notice(raised_event(), ON_THE_LAST_DAY, 1))
    channels, services = StandInChannels(), StandInServices()
    assert tick(desk, channels, services) == 1
    assert [p for p, _b, _k in services.posts] == ["/notifications/alert-deliveries"]


def test_an_alert_the_desk_shows_delivered_is_not_sent():
    desk = desk_with_ae()
    desk.fold(notice(raised_event(), ON_THE_LAST_DAY, 1))
    desk.fold(notice(AlertDelivered(alert_id=ALERT_ID, roles=("safety_officer",), channels=1),
                     ON_THE_LAST_DAY, 2))
    channels, services = StandInChannels(), StandInServices()
    assert tick(desk, channels, services) == 0
    assert channels.sent == [] and services.posts == []


def test_a_raise_refused_as_already_raised_is_delivered_and_another_refusal_is_not():
    channels = StandInChannels()
    already = StandInServices(409, {"error": "alert-raised-once"})
    assert tick(desk_with_ae(), channels, already) == 1
    refused = StandInServices(403, {"error": "role-not-permitted"})
    channels = StandInChannels()
    assert tick(desk_with_ae(), channels, refused) == 0
    assert channels.sent == [] and [p for p, _b, _k in refused.posts] == ["/notifications/alerts"]


def test_a_failed_delivery_is_recorded_with_its_problem():
    channels, services = StandInChannels("connection refused"), StandInServices()
    assert tick(desk_with_ae(), channels, services) == 0
    record = services.posts[-1][1]
    assert record["outcome"] == "failed" and record["problem"] == "connection refused"


def test_nothing_is_alerted_while_the_deadline_is_more_than_the_lead_time_away():
    channels, services = StandInChannels(), StandInServices()
    assert tick(desk_with_ae(), channels, services, at(date(2026, 3, 10), 9)) == 0
    assert services.posts == []


def raised_event() -> AlertRaised:
    return AlertRaised(alert_id=ALERT_ID, stage="approaching", kind="expedited-report",
                       subject="AE-0007-01", due="2026-03-12", roles=("safety_officer",),
                       route="POST /safety/expedited-reports", detail="7-day report", why=())


def channels_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "alerts.yml"
    path.write_text("version: 1\nurls:\n  - json://127.0.0.1:9/alerts:\n"
                    "      tag: safety_officer\n")
    path.chmod(mode)
    return path


def test_an_alerts_file_open_to_others_is_refused(tmp_path):
    with pytest.raises(AlertsConfigError, match="open to group or others"):
        Channels(channels_file(tmp_path, 0o644))


def test_an_alerts_file_without_a_usable_url_is_refused(tmp_path):
    path = tmp_path / "alerts.yml"
    path.write_text("version: 1\nurls: []\n")
    path.chmod(0o600)
    with pytest.raises(AlertsConfigError, match="holds no URL"):
        Channels(path)


def test_no_channel_for_the_roles_is_a_failed_delivery_not_a_silent_one(tmp_path):
    channels = Channels(channels_file(tmp_path, 0o600))
    sent, problem = channels.deliver(["manufacturing_qa"], "t", "{}")
    assert sent == 0 and problem == "no alert channel is tagged with manufacturing_qa"


def test_alerts_need_the_notifiers_token_unless_the_demo_users_are_asked_for(monkeypatch,
                                                                             tmp_path):
    monkeypatch.delenv(NOTIFIER_TOKEN_ENV, raising=False)
    monkeypatch.delenv(ALERTS_INTERVAL_ENV, raising=False)
    monkeypatch.delenv(ALERTS_FILE_ENV, raising=False)
    assert AlertSettings.from_env() is None  # no alerts file: no alerts
    monkeypatch.setenv(ALERTS_FILE_ENV, str(tmp_path / "alerts.yml"))
    with pytest.raises(AlertsConfigError, match=NOTIFIER_TOKEN_ENV):
        AlertSettings.from_env()
    demo = AlertSettings.from_env(demo=True)
    assert demo is not None and demo.token == "demo-notifier"
    assert demo.interval_seconds == 60
    monkeypatch.setenv(ALERTS_INTERVAL_ENV, "0")
    with pytest.raises(AlertsConfigError, match=ALERTS_INTERVAL_ENV):
        AlertSettings.from_env(demo=True)


def test_an_alert_recorded_later_does_not_move_the_moment_the_live_inbox_can_be_read_at():
    desk = desk_with_ae()
    latest = desk.latest
    desk.fold(notice(raised_event(), ON_THE_LAST_DAY, 1))
    assert desk.latest == latest == fatal_ae().envelope.recorded_at
    assert ALERT_ID in desk.notifications.raised
