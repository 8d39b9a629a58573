"""The live inbox in the worker on a real broker (issue 15, decisions 51 and 52): after a short
simulated trial, ``GET /projections/inbox?role=ROLE&as_of=T`` answers what
``trialops inbox --role ROLE --as-of T --json`` computes from a replay of the log; and an alert
is delivered once to a local webhook, recorded on the log, and not sent again after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time as time_module
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from clients.http import DEMO_READER, TOKEN_ENV, call, get_bytes, wait_until_up
from clients.simulate import Simulation, plan
from events.safety import AdverseEventReported
from infra.alerts import ALERTS_FILE_ENV, ALERTS_INTERVAL_ENV, SERVICE_URL_ENV
from tests.conftest import free_port
from tests.integration.helpers import append_upstream, events_of, eventually
from trial.calendar import calendar_day
from trial.config import load_trial
from trialops.stack import Stack

pytestmark = pytest.mark.kafka

PATIENTS, SEED = 6, 7
CLI = "from trialops.cli import app; app()"
ROLES = ("safety_officer", "investigator", "manufacturing_qa", "sponsor", "site_coordinator")


def fatal_ae(ae_id: str, received: datetime) -> AdverseEventReported:
    return AdverseEventReported(
        ae_id=ae_id, subject_id="MSK-9001", term="Respiratory failure", grade=5,
        onset_at=received - timedelta(hours=3), serious_criteria=("death",),
        attribution="possible", expected=False, sponsor_received_at=received,
        special_interest=None, haematological=False, conditioning_lab_effect=False,
        ctcae_version="5.0",
    )


def cli_inbox(settings, role: str, as_of: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CLI, "inbox", "--role", role, "--as-of", as_of, "--json"],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return orjson.loads(done.stdout)


def test_the_workers_inbox_answers_what_the_inbox_command_replays_at_the_same_moment(stack):
    # Given a short simulated trial through the command services
    trial = load_trial()
    Simulation(stack.service_url, stack.projections_url, trial=trial, say=lambda _l: None).run(
        plan(PATIENTS, SEED, trial), patients=PATIENTS, seed=SEED
    )
    # and, after it, a fatal unexpected related AE the sponsor received an hour ago
    # (21 CFR 312.32(c)(2): a 7-day report)
    received = datetime.now(UTC) - timedelta(hours=1)
    append_upstream(stack.settings, "safety", "ae-AE-9001-01", fatal_ae("AE-9001-01", received),
                    "investigator")
    as_of = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    query = f"as_of={as_of.replace('+', '%2B')}"
    pending = 0
    for role in ROLES:
        # When the worker's inbox and the command's are read at the same moment
        live = orjson.loads(get_bytes(
            f"{stack.projections_url}/projections/inbox?role={role}&{query}", token=DEMO_READER
        ))
        # Then they are the same document
        assert live == cli_inbox(stack.settings, role, as_of), role
        pending += len(live["items"])
        if role == "safety_officer":
            assert {(i["kind"], i["subject"]) for i in live["items"]} >= {
                ("expedited-report", "AE-9001-01"), ("determination", "AE-9001-01")}
    assert pending > 2
    every = orjson.loads(get_bytes(f"{stack.projections_url}/projections/inbox?{query}",
                                   token=DEMO_READER))
    assert every["role"] is None
    assert len(every["items"]) >= max(
        len(orjson.loads(get_bytes(f"{stack.projections_url}/projections/inbox?role={r}&{query}",
                                   token=DEMO_READER))["items"]) for r in ROLES)
    # and a bad role is a problem naming the parameter, an unknown reader is refused
    status, problem = call("GET", f"{stack.projections_url}/projections/inbox?role=courier",
                           token=DEMO_READER)
    assert status == 400 and problem["detail"].startswith("role: unknown role 'courier'")
    status, _problem = call("GET", f"{stack.projections_url}/projections/inbox")
    assert status == 401


class Receiver:
    """A local webhook: keeps every JSON body POSTed to it (apprise's ``json://``)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                bodies.append(orjson.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_alert_is_delivered_once_recorded_and_not_sent_again_after_a_restart(
    settings, tmp_path, monkeypatch
):
    """21 CFR 312.32(c)(2): the 7-day report of a fatal unexpected suspected adverse reaction
    is due 7 calendar days after the sponsor's receipt (the sponsor's New York calendar). Ten
    days after the receipt it is overdue, whatever the hour (no midnight race: every date comes
    from one clock reading), while the AE's full report (the trial file's 7-day-complete, 15
    calendar days) is days beyond the 24-hour lead time: one alert per AE."""
    receiver = Receiver()
    channels = tmp_path / "alerts.yml"
    channels.write_text(
        f"version: 1\nurls:\n  - json://127.0.0.1:{receiver.port}/alerts:\n"
        "      tag: safety_officer\n"
    )
    channels.chmod(0o600)
    stack = Stack(settings, tmp_path / "stack", service_port=free_port(), web_port=free_port(),
                  say=lambda _m: None)
    monkeypatch.setenv(TOKEN_ENV, DEMO_READER)
    monkeypatch.setenv(ALERTS_FILE_ENV, str(channels))
    monkeypatch.setenv(ALERTS_INTERVAL_ENV, "1")
    monkeypatch.setenv(SERVICE_URL_ENV, stack.service_url)
    new_york = load_trial().zone()
    received = datetime.now(UTC) - timedelta(days=10)
    due = (calendar_day(received, new_york) + timedelta(days=7)).isoformat()

    def alert_id(ae_id: str) -> str:
        return f"overdue/expedited-report/{ae_id}/{due}"

    def notices() -> list:
        return events_of(stack.settings, "notifications")

    def delivered(ae_id: str) -> list:
        return [e for e in notices()
                if e.event_type == "AlertDelivered" and e.payload["alert_id"] == alert_id(ae_id)]

    try:
        stack.start(timeout=120)
        # Given a fatal unexpected related AE the sponsor received ten days ago
        append_upstream(stack.settings, "safety", "ae-AE-9002-01",
                        fatal_ae("AE-9002-01", received), "investigator")
        first_id = alert_id("AE-9002-01")

        # Then one alert reaches the safety officer's webhook, carrying its id
        eventually(lambda: receiver.bodies, timeout=90)
        [body] = receiver.bodies
        alert = orjson.loads(body["message"])
        assert alert["alert_id"] == first_id and first_id in body["title"]
        assert alert["stage"] == "overdue" and alert["due"] == due
        assert alert["roles"] == ["safety_officer"]
        assert alert["route"] == "POST /safety/expedited-reports"

        # and the log records it raised (naming the worker's notifier) and delivered
        eventually(lambda: delivered("AE-9002-01"))
        recorded = notices()
        assert [(e.event_type, e.payload["alert_id"]) for e in recorded] == [
            ("AlertRaised", first_id), ("AlertDelivered", first_id)]
        assert {(e.actor.user_id, e.actor.role) for e in recorded} == {
            ("demo-notifier", "notifier")}
        assert recorded[0].payload["notifier"].startswith(
            f"{stack.settings.namespace}-projections-")

        # When the worker is stopped and started again
        stack.kill("projections", signal.SIGTERM)
        stack.spawn("projections", ["worker", "--demo", "--web-port", str(stack.web_port),
                                    "--data-dir", str(stack.work_dir)])
        wait_until_up(f"{stack.projections_url}/projections/inbox", 120, "the worker",
                      stack.check_alive, token=DEMO_READER)
        _status, ready = call("GET", f"{stack.projections_url}/ready")
        assert ready["alerts"] == "on"
        # and, as evidence that the restarted worker's notifier ticks, a second AE is reported
        append_upstream(stack.settings, "safety", "ae-AE-9003-01",
                        fatal_ae("AE-9003-01", received), "investigator")
        eventually(lambda: delivered("AE-9003-01"), timeout=90)
        time_module.sleep(3)  # three more ticks

        # Then the receiver has the first alert once and the second once, and the log one raise
        # and one delivery of each, each raise naming the worker's notifier (its consumer group:
        # the same unless the sources changed meanwhile, decision 55)
        ids = [orjson.loads(b["message"])["alert_id"] for b in receiver.bodies]
        assert sorted(ids) == sorted([first_id, alert_id("AE-9003-01")])
        recorded = notices()
        assert sorted((e.event_type, e.payload["alert_id"]) for e in recorded) == sorted([
            ("AlertRaised", first_id), ("AlertDelivered", first_id),
            ("AlertRaised", alert_id("AE-9003-01")), ("AlertDelivered", alert_id("AE-9003-01"))])
        assert all(e.payload["notifier"].startswith(f"{stack.settings.namespace}-projections-")
                   for e in recorded if e.event_type == "AlertRaised")
    finally:
        stack.stop()
        receiver.close()
