"""The live inbox in the worker on a real broker (issue 15, decision 51): after a short
simulated trial, ``GET /projections/inbox?role=ROLE&as_of=T`` answers what
``trialops inbox --role ROLE --as-of T --json`` computes from a replay of the log."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from clients.http import DEMO_READER, call, get_bytes
from clients.simulate import Simulation, plan
from events.safety import AdverseEventReported
from tests.integration.helpers import append_upstream
from trial.config import load_trial

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
