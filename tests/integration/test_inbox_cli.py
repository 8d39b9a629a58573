"""``trialops inbox`` on a real broker (issue 15): the inbox is computed from a replay of the
log, through the one reading rule, as of the moment asked.

Reference: 21 CFR 312.32(c)(2), an unexpected fatal or life-threatening suspected adverse
reaction is reported no later than 7 calendar days after the sponsor's initial receipt."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from events.safety import AdverseEventReported
from infra.topic_admin import ensure_topics
from tests.integration.raw_events import RawWriter

pytestmark = pytest.mark.kafka

CLI = "from trialops.cli import app; app()"
RECEIVED = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)  # 10:00 in New York, the sponsor's zone
SEVEN_DAYS_LATER = "2026-03-12"  # 21 CFR 312.32(c)(2): day 0 is 5 March


def inbox(settings, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "inbox", *arguments],
        env={**os.environ, **settings.env(), "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_a_fatal_unexpected_related_ae_is_in_the_safety_officers_inbox_and_overdue_later(
    settings,
):
    ensure_topics(settings.bootstrap_servers, settings.namespace)
    writer = RawWriter(settings, context="safety")
    # Given a fatal, possibly related, unexpected AE the sponsor received on 5 March
    reported = writer.envelope(
        "ae-AE-0007-01",
        AdverseEventReported(
            ae_id="AE-0007-01",
            subject_id="MSK-0007",
            term="Respiratory failure",
            grade=5,
            onset_at=RECEIVED - timedelta(hours=3),
            serious_criteria=("death",),
            attribution="possible",
            expected=False,
            sponsor_received_at=RECEIVED,
            special_interest=None,
            haematological=False,
            conditioning_lab_effect=False,
            ctcae_version="5.0",
        ),
        occurred_at=RECEIVED,
        recorded_at=RECEIVED,
    )
    writer.resend(reported)
    writer.producer.flush()

    # When the safety officer's inbox is read the next day, and on the 13th
    next_day = inbox(settings, "--role", "safety_officer", "--as-of", "2026-03-06T12:00:00Z",
                     "--json")
    later = inbox(settings, "--role", "safety_officer", "--as-of", "2026-03-13T17:00:00Z")
    before = inbox(settings, "--role", "safety_officer", "--as-of", "2026-03-05T12:00:00Z")

    # Then the determination and the 7-day report are due, the report by 12 March
    assert next_day.returncode == 0, next_day.stderr.decode()
    document = orjson.loads(next_day.stdout)
    by_kind = {(i["kind"], i["detail"].split(" ")[0]): i for i in document["items"]}
    seven = by_kind[("expedited-report", "7-day")]
    assert seven["due"] == SEVEN_DAYS_LATER and not seven["overdue"]
    assert seven["route"] == "POST /safety/expedited-reports"
    assert seven["why"] == [str(reported.event_id)]
    assert ("determination", "Respiratory") in by_kind
    assert b"0 overdue" in next_day.stderr
    # and on the 13th it is overdue, first in the table
    assert later.returncode == 0, later.stderr.decode()
    assert later.stdout.decode().splitlines()[2].startswith("OVERDUE")
    assert b"1 overdue" in later.stderr
    # and before the sponsor's receipt was recorded, nothing is pending
    assert before.returncode == 0, before.stderr.decode()
    assert b"0 pending" in before.stderr
