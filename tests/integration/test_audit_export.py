"""``trialops audit trail`` and ``trialops export`` on a real broker: a subject registered,
enrolled, an adverse event reported then regraded with a reason and the regrade signed, written
straight onto the topics; the commands run as processes and read them back.

Given that history, the trail shows the regrade with what it changed next to the original
report, the signature on the regrade, in JSON, CSV, a table and CDISC ODM 1.3.2 valid against
the official schema; the JSON Lines export verifies line by line."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import timedelta

import orjson
import pytest
from lxml import etree

from audit.export import envelope_from_csv
from events.envelope import Envelope, from_bytes
from events.registry import EventPayload
from events.signatures import RecordSigned
from events.topics import CONTEXTS
from infra.topic_admin import ensure_topics
from tests.integration.raw_events import START, RawWriter
from tests.unit.test_audit_trail import (
    ae_regraded,
    ae_reported,
    cohort_opened,
    enrolled,
    registered,
)
from tests.unit.test_odm import official_odm_schema

pytestmark = pytest.mark.kafka

AUDIT = "from trialops.cli_audit import audit_app; audit_app()"
EXPORT = "from trialops.cli_audit import export_app; export_app()"
REASON = "echocardiogram reviewed by cardiology: grade 2"


class Log:
    """One RawWriter per context on one clock, so the topics merge in the order written."""

    def __init__(self, settings):
        ensure_topics(settings.bootstrap_servers, settings.namespace)
        self.writers = {context: RawWriter(settings, context) for context in CONTEXTS}
        self.clock = START

    def append(self, context: str, stream_id: str, event: EventPayload, **overrides) -> Envelope:
        writer = self.writers[context]
        writer.clock = self.clock
        envelope = writer.envelope(stream_id, event, **overrides)
        self.clock = writer.clock
        writer.resend(envelope)
        return envelope

    def sign(self, context: str, signed: Envelope, printed_name: str) -> Envelope:
        signature = RecordSigned(
            signed_event_id=signed.event_id,
            signed_event_type=signed.event_type,
            signed_hash=signed.hash,
            signer_id="test-writer",
            printed_name=printed_name,
            role="investigator",
            meaning="approval",
            signed_at=self.clock + timedelta(seconds=30),
        )
        return self.append(context, signed.stream_id, signature)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.producer.flush()
            writer.close()


@pytest.fixture
def history(settings):
    """Subject 101's story, subject 102 registered beside it, and one unreadable record."""
    log = Log(settings)
    story = {
        "opened": log.append("enrollment", "cohort-DL1-IP", cohort_opened()),
        "registered": log.append("enrollment", "subject-MSK-0101", registered(101)),
    }
    log.append("enrollment", "subject-MSK-0102", registered(102, site="SITE-02"))
    story["enrolled"] = log.append("enrollment", "subject-MSK-0101", enrolled(101))
    story["reported"] = log.append("safety", "ae-AE-0101-01", ae_reported(101))
    story["regraded"] = log.append(
        "safety", "ae-AE-0101-01", ae_regraded(101, grade=2), reason=REASON
    )
    story["signature"] = log.sign("safety", story["regraded"], "P. Investigator")
    log.writers["dosing"].send_bytes("subject-MSK-0101", b"\x00not an event")
    log.close()
    return story


def run(settings, program: str, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", program, *arguments],
        env={**os.environ, **settings.env(), "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_the_subject_trail_as_json_shows_the_regrade_beside_the_original_and_its_signature(
    settings, history
):
    result = run(settings, AUDIT, "trail", "--subject", "MSK-0101", "--format", "json")

    assert result.returncode == 0, result.stderr.decode()
    rows = orjson.loads(result.stdout)
    assert [r["event_type"] for r in rows] == [
        "SubjectRegistered",
        "SubjectEnrolled",
        "AdverseEventReported",
        "AdverseEventRegraded",
    ]
    reported, regraded = rows[2], rows[3]
    assert reported["payload"]["grade"] == 3 and reported["changes"] is None
    assert regraded["changes"] == {"grade": {"from": 3, "to": 2}}
    assert regraded["reason"] == REASON
    assert regraded["event_id"] == str(history["regraded"].event_id)
    assert [(s["printed_name"], s["meaning"], s["valid"]) for s in regraded["signatures"]] == [
        ("P. Investigator", "approval", True)
    ]
    assert (regraded["user_id"], regraded["role"]) == ("test-writer", "investigator")
    stderr = result.stderr.decode()
    assert "4 events" in stderr
    # Like every reader, the audit stops its dosing partition at the unreadable record, and says so
    assert f"halted: {settings.namespace}.dosing.events@0:0 is unreadable" in stderr


def test_the_subject_trail_as_csv_and_as_a_table(settings, history):
    as_csv = run(settings, AUDIT, "trail", "--subject", "MSK-0101", "--format", "csv")
    as_table = run(settings, AUDIT, "trail", "--subject", "MSK-0101")

    assert as_csv.returncode == 0, as_csv.stderr.decode()
    lines = list(csv.DictReader(io.StringIO(as_csv.stdout.decode())))
    assert len(lines) == 4
    assert orjson.loads(lines[3]["changes"]) == {"grade": {"from": 3, "to": 2}}
    assert orjson.loads(lines[3]["signatures"])[0]["printed_name"] == "P. Investigator"
    assert lines[3]["reason"] == REASON
    assert as_table.returncode == 0, as_table.stderr.decode()
    table = as_table.stdout.decode()
    assert "changed grade: 3 -> 2" in table
    assert "signed by P. Investigator" in table


def test_the_subject_trail_as_odm_validates_and_has_an_audit_record_per_event(settings, history):
    result = run(settings, AUDIT, "trail", "--subject", "MSK-0101", "--format", "odm")

    assert result.returncode == 0, result.stderr.decode()
    root = etree.fromstring(result.stdout)
    schema = official_odm_schema()
    assert schema.validate(root), "\n".join(str(e) for e in schema.error_log)
    ns = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}
    records = root.findall(".//odm:AuditRecord", ns)
    assert len(records) == 4
    assert {r.find("odm:UserRef", ns).get("UserOID") for r in records} == {"test-writer"}
    assert root.find("odm:ClinicalData", ns).get("StudyOID") == settings.trial_id
    (signed,) = root.xpath(
        f"//odm:ItemGroupData[@ItemGroupRepeatKey='{history['regraded'].event_id}']",
        namespaces=ns,
    )
    assert signed.findtext("odm:AuditRecord/odm:ReasonForChange", namespaces=ns) == REASON
    assert signed.find("odm:Signature/odm:SignatureRef", ns).get("SignatureOID") == "SD.APPROVAL"


def test_a_window_on_recorded_time_narrows_the_trail(settings, history):
    start = history["enrolled"].recorded_at.isoformat()
    end = history["reported"].recorded_at.isoformat()

    result = run(
        settings,
        AUDIT,
        "trail",
        "--subject",
        "MSK-0101",
        "--from",
        start,
        "--to",
        end,
        "--format",
        "json",
    )

    assert result.returncode == 0, result.stderr.decode()
    assert [r["event_type"] for r in orjson.loads(result.stdout)] == [
        "SubjectEnrolled",
        "AdverseEventReported",
    ]


def test_the_whole_log_exported_as_json_lines_verifies_line_by_line(settings, history):
    result = run(settings, EXPORT, "--format", "jsonl")

    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.splitlines()
    envelopes = [from_bytes(line) for line in lines]
    assert len(envelopes) == 7  # every event written; the unreadable record is not a line
    assert all(envelope.hash_is_valid() for envelope in envelopes)
    assert str(history["signature"].event_id) in {str(e.event_id) for e in envelopes}
    stderr = result.stderr.decode()
    assert "exported 7 of 8 events" in stderr
    assert "1 unreadable record(s) skipped" in stderr


def test_one_subjects_export_to_a_csv_file_holds_its_events_and_their_signature(
    settings, history, tmp_path
):
    target = tmp_path / "msk-0101.csv"

    result = run(
        settings, EXPORT, "--format", "csv", "--subject", "MSK-0101", "--output", str(target)
    )

    assert result.returncode == 0, result.stderr.decode()
    with target.open(newline="", encoding="utf-8") as text:
        envelopes = [envelope_from_csv(row) for row in csv.DictReader(text)]
    assert [e.event_type for e in envelopes] == [
        "SubjectRegistered",
        "SubjectEnrolled",
        "AdverseEventReported",
        "AdverseEventRegraded",
        "RecordSigned",
    ]
    assert all(envelope.hash_is_valid() for envelope in envelopes)
    assert not list(tmp_path.glob("*.partial"))
    assert result.stdout == b""
