"""The worker's alert tick and its channels (decision 52), without Kafka or a network: a desk
fed by hand, the command services and apprise's channels stood in for.

Reference deadline: 21 CFR 312.32(c)(2), the 7-day report of a fatal unexpected suspected
adverse reaction is due 7 calendar days after the sponsor's receipt (5 March -> 12 March, in
the sponsor's New York calendar); the trial file's lead time is 24 hours."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from events.notifications import AlertDelivered, AlertRaised
from events.registry import Recorded
from infra.alerts import (
    ALERTS_FILE_ENV,
    ALERTS_INTERVAL_ENV,
    NOTIFIER_TOKEN_ENV,
    AlertsConfigError,
    AlertSettings,
    Channels,
)
from projections.inbox import Desk
from projections.notifier import TAKEOVER, Notifier, http_post, start_alerts
from services.errors import DomainError
from services.notifications.decider import RaiseAlert, RecordAlertDelivery, decide, evolve
from services.notifications.decider import initial_state as no_alerts
from trial.config import load_trial

from .test_alerts import SEVEN_DAY_DUE, at, fatal_ae, notice

ALERT_ID = "approaching/expedited-report/AE-0007-01/2026-03-12"
ON_THE_LAST_DAY = at(SEVEN_DAY_DUE, 9)
STAGE_BEGAN = at(SEVEN_DAY_DUE, 0)  # the deadline (13 March 00:00) less the 24-hour lead time
NOTIFICATIONS_TOPIC = "trialops.events.notifications"


class StandInDesk:
    """Stands in for ``LiveDesk``: the desk as folded so far, and what the services have
    appended since (``log``), folded at each catch-up; ``halts`` as the tail reports them."""

    def __init__(self, desk: Desk, log: list[Recorded] | None = None) -> None:
        self.desk, self.log, self.read = desk, log if log is not None else [], 0
        self.standing_at: list[str] = []

    async def catch_up(self) -> Desk:
        for recorded in self.log[self.read:]:
            self.desk.fold(recorded)
        self.read = len(self.log)
        return self.desk

    def halts(self) -> list[str]:
        return self.standing_at


class StandInChannels:
    """Channels by name, each tagged with roles; ``refusing`` names those that do not accept."""

    def __init__(self, problem: str | None = None,
                 tagged: dict[str, tuple[str, ...]] | None = None) -> None:
        self.tagged = tagged if tagged is not None else {"#1 json://hook": ("safety_officer",)}
        self.refusing: set[str] = set(self.tagged) if problem else set()
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def names_for(self, roles: Sequence[str]) -> list[str]:
        return [n for n, tags in self.tagged.items() if set(tags) & set(roles)]

    def send(self, name: str, title: str, body: str) -> bool:
        self.sent.append((name, title, orjson.loads(body)))
        return name not in self.refusing


class StandInServices:
    """The notifications service as the command services answer (services/runtime.py and
    services/http.py): the real decider, a refusal as a problem with the rule's status, a
    request with an Idempotency-Key already used by this user answered as the first when it is
    the same request (path and body) and 422 ``idempotency-key-reused`` otherwise; what it
    appends goes to ``log``. ``down`` answers as a connection refused; ``records`` False makes
    the deliveries' route answer 503."""

    def __init__(self, log: list[Recorded] | None = None, raise_status: int | None = None,
                 raise_answer: Any = None) -> None:
        self.log = log if log is not None else []
        self.posts: list[tuple[str, dict[str, Any], str | None]] = []
        self.raise_status, self.raise_answer = raise_status, raise_answer
        self.down, self.records = False, True
        self.state = no_alerts
        self.answered: dict[str, tuple[str, dict[str, Any]]] = {}

    async def post(self, path: str, body: dict[str, Any], key: str | None) -> tuple[int, Any]:
        self.posts.append((path, body, key))
        if self.down:
            return 0, "ClientConnectorError(Connection refused)"
        if path == "/notifications/alerts" and self.raise_status is not None:
            return self.raise_status, self.raise_answer
        if path == "/notifications/alert-deliveries" and not self.records:
            return 503, {"error": "store-unavailable"}
        digest = hashlib.sha256(orjson.dumps({"path": path, "body": body},
                                             option=orjson.OPT_SORT_KEYS)).hexdigest()
        if key is not None and key in self.answered:
            first, answer = self.answered[key]
            if first != digest:
                return 422, {"error": "idempotency-key-reused"}
            return 201, answer
        command = (RaiseAlert if path == "/notifications/alerts" else RecordAlertDelivery)(
            **body)
        try:
            new = decide(command, self.state)
        except DomainError as exc:
            return exc.status, exc.as_dict()
        for event in new:
            self.state = evolve(self.state, event.payload)
            self.log.append(notice(event.payload, event.occurred_at, len(self.log) + 1))
        answer = {"events": [e.payload.event_type for e in new]}
        if key is not None:
            self.answered[key] = (digest, answer)
        return 201, answer

    def appended(self) -> list[str]:
        return [r.payload.event_type for r in self.log]


def tick(desk: Desk, channels: StandInChannels, services: StandInServices,
         moment: datetime = ON_THE_LAST_DAY) -> int:
    notifier = Notifier(StandInDesk(desk), load_trial(), channels,  # type: ignore[arg-type]
                        services.post, clock=lambda: moment)
    return asyncio.run(notifier.tick())


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def notifier_of(services: StandInServices, channels: StandInChannels, clock: Clock,
                name: str | None = "trialops-projections-new", desk: Desk | None = None
                ) -> tuple[Notifier, StandInDesk]:
    live = StandInDesk(desk or desk_with_ae(), services.log)
    return Notifier(live, load_trial(), channels, services.post,  # type: ignore[arg-type]
                    clock=clock, name=name, notifications_topic=NOTIFICATIONS_TOPIC), live


def ticks(notifier: Notifier, clock: Clock, count: int, every: timedelta) -> int:
    delivered = 0
    for _ in range(count):
        delivered += asyncio.run(notifier.tick())
        clock.now += every
    return delivered


def test_a_tick_raises_the_alert_with_its_id_as_idempotency_key_delivers_and_records_it():
    channels, services = StandInChannels(), StandInServices()
    assert tick(desk_with_ae(), channels, services) == 1
    [(_name, title, body)] = channels.sent
    assert ALERT_ID in title
    assert body["alert_id"] == ALERT_ID and body["due"] == "2026-03-12"
    assert body["roles"] == ["safety_officer"]
    [(raise_path, raised, key), (record_path, record, _key)] = services.posts
    assert (raise_path, key) == ("/notifications/alerts", ALERT_ID)
    assert raised["stage"] == "approaching" and raised["roles"] == ["safety_officer"]
    assert record_path == "/notifications/alert-deliveries"
    assert record["outcome"] == "delivered" and record["channels"] == 1
    assert services.appended() == ["AlertRaised", "AlertDelivered"]


def desk_with_ae() -> Desk:
    desk = Desk()
    desk.fold(fatal_ae())
    return desk


def test_an_alert_the_desk_shows_raised_is_delivered_once_the_services_answer_its_raise():
    services = StandInServices()
    desk = desk_with_ae()
    asyncio.run(services.post("/notifications/alerts", raise_body(), ALERT_ID))
    for recorded in services.log:
        desk.fold(recorded)
    channels = StandInChannels()
    assert tick(desk, channels, services) == 1
    assert len(channels.sent) == 1
    assert services.appended() == ["AlertRaised", "AlertDelivered"]


def test_an_alert_the_desk_shows_delivered_is_not_sent():
    desk = desk_with_ae()
    desk.fold(notice(raised_event(), ON_THE_LAST_DAY, 1))
    desk.fold(notice(AlertDelivered(alert_id=ALERT_ID, roles=("safety_officer",), channels=1),
                     ON_THE_LAST_DAY, 2))
    channels, services = StandInChannels(), StandInServices()
    assert tick(desk, channels, services) == 0
    assert channels.sent == [] and services.posts == []


def test_a_raise_refused_by_another_rule_sends_nothing():
    refused = StandInServices(raise_status=403, raise_answer={"error": "role-not-permitted"})
    channels = StandInChannels()
    assert tick(desk_with_ae(), channels, refused) == 0
    assert channels.sent == [] and [p for p, _b, _k in refused.posts] == ["/notifications/alerts"]


def test_a_failed_delivery_is_recorded_naming_the_channel_that_refused():
    channels, services = StandInChannels("refused"), StandInServices()
    assert tick(desk_with_ae(), channels, services) == 0
    record = services.posts[-1][1]
    assert record["outcome"] == "failed"
    assert record["problem"] == "1 of 1 channel(s) did not accept the alert: #1 json://hook"


def test_nothing_is_alerted_while_the_deadline_is_more_than_the_lead_time_away():
    channels, services = StandInChannels(), StandInServices()
    assert tick(desk_with_ae(), channels, services, at(date(2026, 3, 10), 9)) == 0
    assert services.posts == []


# Finding 4: an alert re-sent on every tick when its delivery cannot be recorded or read back.

def test_an_alert_raised_while_the_services_are_down_is_not_sent_on_any_tick():
    # Given the desk shows the alert raised, and then the command services go down
    services = StandInServices()
    asyncio.run(services.post("/notifications/alerts", raise_body(), ALERT_ID))
    services.down = True
    channels, clock = StandInChannels(), Clock(ON_THE_LAST_DAY)
    notifier, _live = notifier_of(services, channels, clock)
    # When the worker ticks every minute for an hour
    ticks(notifier, clock, 60, timedelta(minutes=1))
    # Then nothing was sent (the raise, sent first, gets no answer), and a worker started
    # afresh each minute (rv_spam) sends nothing either
    assert channels.sent == []
    for minute in range(5):
        assert tick(desk_with_ae(), channels, services,
                    ON_THE_LAST_DAY + timedelta(minutes=minute)) == 0
    assert channels.sent == []
    raises = [p for p, _b, _k in services.posts if p == "/notifications/alerts"]
    assert len(raises) < 20  # a doubling wait, not one every minute


def test_an_alert_whose_delivery_cannot_be_recorded_is_sent_once_and_recorded_later():
    # Given the services accept the raise but cannot record the delivery
    services = StandInServices()
    services.records = False
    channels, clock = StandInChannels(), Clock(ON_THE_LAST_DAY)
    notifier, _live = notifier_of(services, channels, clock)
    # When the worker ticks every minute for half an hour
    ticks(notifier, clock, 30, timedelta(minutes=1))
    # Then the channel got it once, and the log only the raise
    assert len(channels.sent) == 1
    assert services.appended() == ["AlertRaised"]
    # and once the services record again, the one delivery is recorded, and nothing resent
    services.records = True
    ticks(notifier, clock, 90, timedelta(minutes=1))
    assert len(channels.sent) == 1
    assert services.appended() == ["AlertRaised", "AlertDelivered"]


def test_a_delivery_not_yet_recorded_is_recorded_after_its_report_is_submitted():
    services, channels = StandInServices(), StandInChannels()
    services.records = False
    clock = Clock(ON_THE_LAST_DAY)
    notifier, live = notifier_of(services, channels, clock)
    ticks(notifier, clock, 1, timedelta(minutes=1))
    assert len(channels.sent) == 1
    # the report is submitted meanwhile: the item, and its alert, are no longer due
    live.desk = Desk()
    services.records = True
    ticks(notifier, clock, 10, timedelta(minutes=1))
    assert services.appended() == ["AlertRaised", "AlertDelivered"]
    assert len(channels.sent) == 1


def test_nothing_is_sent_while_the_desk_stands_at_an_unreadable_notifications_record():
    services, channels, clock = StandInServices(), StandInChannels(), Clock(ON_THE_LAST_DAY)
    notifier, live = notifier_of(services, channels, clock)
    live.standing_at = [f"{NOTIFICATIONS_TOPIC}@0:17 is unreadable (signature: bad)"]
    ticks(notifier, clock, 10, timedelta(minutes=1))
    assert channels.sent == [] and services.posts == []
    # a halt on another topic does not hold the alerts back
    live.standing_at = ["trialops.events.safety@0:3 is unreadable (signature: bad)"]
    assert ticks(notifier, clock, 1, timedelta(minutes=1)) == 1


# Finding 6: two notifiers at once, and a retry the services must recognise.

def test_the_raise_is_the_same_request_on_every_try_and_begins_when_the_stage_began():
    services, channels = StandInServices(), StandInChannels()
    services.records = False  # the worker stops before the delivery is recorded
    assert tick(desk_with_ae(), channels, services) == 1
    services.records = True
    # a worker started again, later, with no memory of it: the services answer its raise as
    # the first (same key, same body), and it is delivered (at least once)
    assert tick(desk_with_ae(), channels, services, ON_THE_LAST_DAY + timedelta(hours=2)) == 1
    first, second = [(b, k) for p, b, k in services.posts if p == "/notifications/alerts"]
    assert first == second and first[1] == ALERT_ID
    assert datetime.fromisoformat(first[0]["occurred_at"]) == STAGE_BEGAN
    assert services.appended() == ["AlertRaised", "AlertDelivered"]


def test_an_alert_raised_by_another_notifier_is_delivered_by_it_alone_until_the_takeover():
    # Given the older worker's notifier raised the alert and stopped before delivering it
    services = StandInServices()
    asyncio.run(services.post("/notifications/alerts",
                              raise_body(notifier="trialops-projections-old"), ALERT_ID))
    channels, clock = StandInChannels(), Clock(ON_THE_LAST_DAY)
    notifier, _live = notifier_of(services, channels, clock)
    # When the newer worker ticks every minute
    ticks(notifier, clock, int(TAKEOVER / timedelta(minutes=1)), timedelta(minutes=1))
    # Then it sends nothing during the takeover time (decision 52: 10 minutes)
    assert channels.sent == []
    # and then delivers it, once
    ticks(notifier, clock, 30, timedelta(minutes=1))
    assert len(channels.sent) == 1
    assert services.appended() == ["AlertRaised", "AlertDelivered"]


def test_two_notifiers_ticking_together_send_an_alert_once():
    services = StandInServices()
    channels, clock = StandInChannels(), Clock(ON_THE_LAST_DAY)
    old, _ = notifier_of(services, channels, clock, "trialops-projections-old")
    new, _ = notifier_of(services, channels, clock, "trialops-projections-new")
    for _ in range(60):
        asyncio.run(old.tick())
        asyncio.run(new.tick())
        clock.now += timedelta(minutes=1)
    assert len(channels.sent) == 1
    assert services.appended() == ["AlertRaised", "AlertDelivered"]
    [raised] = [r.payload for r in services.log if isinstance(r.payload, AlertRaised)]
    assert raised.notifier == "trialops-projections-old"


# Finding 10: one outcome per channel; no channel for a role is reported once.

def test_a_channel_that_accepted_is_not_sent_again_while_another_is_retried():
    channels = StandInChannels(tagged={"#1 json://a": ("safety_officer",),
                                       "#2 json://b": ("safety_officer", "investigator")})
    channels.refusing = {"#2 json://b"}
    services, clock = StandInServices(), Clock(ON_THE_LAST_DAY)
    notifier, _live = notifier_of(services, channels, clock)
    ticks(notifier, clock, 3, timedelta(minutes=1))
    channels.refusing = set()
    ticks(notifier, clock, 30, timedelta(minutes=1))
    assert [name for name, _t, _b in channels.sent].count("#1 json://a") == 1
    assert [name for name, _t, _b in channels.sent].count("#2 json://b") >= 2
    outcomes = [r.payload for r in services.log][1:]
    assert [o.event_type for o in outcomes][-1] == "AlertDelivered"
    assert outcomes[-1].channels == 2
    assert "#2 json://b" in outcomes[0].problem


def test_no_channel_for_the_roles_is_recorded_once_as_a_configuration_problem():
    channels = StandInChannels(tagged={"#1 json://qa": ("manufacturing_qa",)})
    services, clock = StandInServices(), Clock(ON_THE_LAST_DAY)
    notifier, _live = notifier_of(services, channels, clock)
    ticks(notifier, clock, 6 * 60, timedelta(minutes=1))  # six hours
    assert channels.sent == []
    assert services.appended() == ["AlertRaised", "AlertDeliveryFailed"]
    assert "no alert channel is tagged with safety_officer" in services.log[1].payload.problem


# The lower findings: a bad alerts file, the token, two items under one id.

class StandInApp:
    def __init__(self) -> None:
        self.conf = SimpleNamespace(id="trialops-projections-0123")
        self.timers: list[Any] = []

    def timer(self, interval: float, on_leader: bool):
        def register(fn):
            self.timers.append((interval, on_leader, fn))
            return fn
        return register


def test_a_bad_alerts_file_turns_the_alerts_off_and_says_why_without_stopping_the_worker(
    monkeypatch, tmp_path, caplog
):
    live = SimpleNamespace(settings=SimpleNamespace(namespace="trialops"))
    app = StandInApp()
    monkeypatch.setenv(ALERTS_FILE_ENV, str(channels_file(tmp_path, 0o644)))
    monkeypatch.setenv(NOTIFIER_TOKEN_ENV, "secret-notifier-token")
    with caplog.at_level(logging.ERROR, logger="projections.notifier"):
        said = start_alerts(app, live, load_trial(), demo=False)
    assert said.startswith("off: ") and "open to group or others" in said
    assert "alerts are off" in caplog.text and app.timers == []
    monkeypatch.delenv(NOTIFIER_TOKEN_ENV)
    assert NOTIFIER_TOKEN_ENV in start_alerts(app, live, load_trial(),
                                              demo=False)
    monkeypatch.setenv(NOTIFIER_TOKEN_ENV, "secret-notifier-token")
    channels_file(tmp_path, 0o600)
    assert start_alerts(app, live, load_trial(), demo=False) == "on"
    [(interval, on_leader, _fn)] = app.timers
    assert (interval, on_leader) == (60, True)


def test_the_notifiers_token_is_in_no_repr_and_no_log_line(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(ALERTS_FILE_ENV, str(tmp_path / "alerts.yml"))
    monkeypatch.setenv(NOTIFIER_TOKEN_ENV, "secret-notifier-token")
    monkeypatch.delenv(ALERTS_INTERVAL_ENV, raising=False)
    settings = AlertSettings.from_env()
    assert settings is not None and settings.token == "secret-notifier-token"
    assert "secret-notifier-token" not in repr(settings)
    settings = AlertSettings(settings.channels_file, 1, "http://127.0.0.1:9", settings.token)
    services = SimpleNamespace(post=http_post(settings))
    with caplog.at_level(logging.DEBUG):
        assert tick(desk_with_ae(), StandInChannels(), services) == 0
    assert "not raised" in caplog.text and "secret-notifier-token" not in caplog.text


def raise_body(**changes: Any) -> dict[str, Any]:
    """The raise a notifier sends for the 7-day report on its last day."""
    return {
        "occurred_at": STAGE_BEGAN.isoformat(), "alert_id": ALERT_ID, "stage": "approaching",
        "kind": "expedited-report", "subject": "AE-0007-01", "due": "2026-03-12",
        "roles": ["safety_officer"], "route": "POST /safety/expedited-reports",
        "detail": "7-day report", "why": [], **changes,
    }


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


# Several trials in one deployment (decision 64): a notifier per trial.

SECOND_TRIAL = "NCT00000001"


class RecordingServices:
    """The command services' HTTP port as the notifier reaches it: every POST's path and body
    kept, each answered 201 (what the raise and the record answer when they append)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posted: list[tuple[str, dict[str, Any], str | None]] = []
        posted = self.posted

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                posted.append((self.path, orjson.loads(self.rfile.read(length)),
                               self.headers.get("Authorization")))
                answer = b'{"events": []}'
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recording(monkeypatch, tmp_path) -> Iterator[RecordingServices]:
    """The notifier's settings pointing at a ``RecordingServices``."""
    from infra.alerts import SERVICE_URL_ENV

    services = RecordingServices()
    try:
        monkeypatch.setenv(ALERTS_FILE_ENV, str(channels_file(tmp_path, 0o600)))
        monkeypatch.setenv(NOTIFIER_TOKEN_ENV, "secret-notifier-token")
        monkeypatch.setenv(SERVICE_URL_ENV, services.url)
        yield services
    finally:
        services.close()


def test_a_worker_of_several_trials_raises_each_trials_alerts_through_that_trials_routes(
    recording
):
    from projections.notifier import start_trials_alerts

    services = recording
    first = load_trial()
    second = first.model_copy(update={"trial_id": SECOND_TRIAL})
    app = StandInApp()
    # Given each trial's desk holding a fatal AE of the same id (AE-0007-01)
    desks = {trial.trial_id: (StandInDesk(desk_with_ae()), trial)
             for trial in (first, second)}
    for live, _trial in desks.values():
        live.settings = SimpleNamespace(namespace="trialops")
    assert start_trials_alerts(app, desks, demo=False) == "on"

    # When every registered timer ticks once
    assert [(interval, leader) for interval, leader, _fn in app.timers] == [(60, True)] * 2
    for _interval, _leader, alert in app.timers:
        asyncio.run(alert())

    # Then each trial's alerts (the AE's reports, overdue by now) were raised, and their
    # outcomes recorded, under that trial's routes only, the same alerts in both
    def alerts_of(trial_id: str, route: str) -> list[str]:
        return sorted(body["alert_id"] for path, body, _auth in services.posted
                      if path == f"/trials/{trial_id}/notifications/{route}")

    raised = alerts_of(first.trial_id, "alerts")
    assert ALERT_ID.replace("approaching", "overdue") in raised
    assert alerts_of(SECOND_TRIAL, "alerts") == raised
    assert alerts_of(first.trial_id, "alert-deliveries") == raised
    assert alerts_of(SECOND_TRIAL, "alert-deliveries") == raised
    assert len(services.posted) == 4 * len(raised)  # nothing posted outside the two
    assert {auth for _p, _b, auth in services.posted} == {"Bearer secret-notifier-token"}


def test_with_one_trial_the_routes_have_no_trial_prefix(recording):
    services = recording
    app = StandInApp()
    live = StandInDesk(desk_with_ae())
    live.settings = SimpleNamespace(namespace="trialops")
    assert start_alerts(app, live, load_trial(), demo=False) == "on"
    [(_interval, _leader, alert)] = app.timers
    asyncio.run(alert())
    assert {path for path, _b, _a in services.posted} == {
        "/notifications/alerts", "/notifications/alert-deliveries"}


def test_the_channel_hears_which_trial_an_alert_is_for():
    second = load_trial().model_copy(update={"trial_id": SECOND_TRIAL})
    channels, services = StandInChannels(), StandInServices()
    notifier = Notifier(StandInDesk(desk_with_ae()), second, channels,
                        services.post, clock=lambda: ON_THE_LAST_DAY)
    assert asyncio.run(notifier.tick()) == 1
    [(_name, title, body)] = channels.sent
    assert title.startswith(f"trialops {SECOND_TRIAL} approaching: ")
    assert body["trial_id"] == SECOND_TRIAL and body["alert_id"] == ALERT_ID
