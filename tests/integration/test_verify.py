"""``trialops verify`` on a real broker: a clean log passes; every kind of damage a forger, a
lost write or a misbehaving producer can leave is found and named, and the command exits 1."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from audit.verify import verify
from events.enrollment import CohortOpened, SubjectEnrolled, SubjectRegistered
from events.envelope import to_bytes
from infra.topic_admin import ensure_topics
from tests.integration.raw_events import RawWriter

pytestmark = pytest.mark.kafka


@pytest.fixture
def writer(settings):
    ensure_topics(settings.bootstrap_servers, settings.namespace)
    w = RawWriter(settings)
    yield w
    w.close()


def registered(n: int) -> SubjectRegistered:
    return SubjectRegistered(subject_id=f"MSK-{n:04d}", site_id="MSK")


def enrolled(n: int, slot: int = 1) -> SubjectEnrolled:
    return SubjectEnrolled(subject_id=f"MSK-{n:04d}", cohort_id="DL1-IP", slot=slot)


def clean_history(writer: RawWriter) -> None:
    writer.append(
        "cohort-DL1-IP",
        CohortOpened(cohort_id="DL1-IP", dose_level="DL1", dose_cells_per_kg=1e6,
                     route="intraperitoneal", capacity=3),
    )
    for n in (1, 2):
        writer.append(f"subject-MSK-{n:04d}", registered(n))
        writer.append(f"subject-MSK-{n:04d}", enrolled(n, slot=n))
    writer.producer.flush()


def kinds(settings) -> dict[str, int]:
    return verify(settings).by_kind()


def test_a_clean_log_verifies_and_the_cli_exits_0(settings, writer):
    clean_history(writer)
    result = subprocess.run(
        [sys.executable, "-m", "trialops", "verify", "--json"],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    assert (report["ok"], report["events"], report["streams"]) == (True, 5, 3)


def test_an_altered_event_is_a_hash_mismatch_and_the_cli_exits_1(settings, writer):
    clean_history(writer)
    forged = writer.envelope("subject-MSK-0003", registered(3))
    writer.send_bytes("subject-MSK-0003", to_bytes(forged).replace(b"MSK-0003", b"MSK-0009"))
    result = subprocess.run(
        [sys.executable, "-m", "trialops", "verify"],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120, text=True,
    )
    assert result.returncode == 1
    assert "hash-mismatch 1" in result.stdout


def test_an_altered_event_with_a_recomputed_hash_breaks_the_chain_of_the_next(settings, writer):
    first = writer.envelope("subject-MSK-0004", registered(4))
    second = writer.envelope("subject-MSK-0004", enrolled(4))
    # The forger rewrites the first event and recomputes its hash; the second still points
    # at the original.
    forged = writer.envelope(
        "subject-MSK-0004", registered(5), stream_seq=1, prev_hash="0" * 64,
        event_id=first.event_id,
    )
    writer.resend(forged)
    writer.resend(second)
    writer.producer.flush()
    assert kinds(settings) == {"broken-chain": 1}


def test_a_dropped_event_is_missing_and_the_chain_gap_is_not_double_counted(settings, writer):
    writer.append("subject-MSK-0005", registered(5))
    writer.envelope("subject-MSK-0005", enrolled(5))  # sealed, never written: lost
    writer.append(
        "subject-MSK-0005",
        SubjectEnrolled(subject_id="MSK-0005", cohort_id="DL2-IP", slot=1),
    )
    writer.producer.flush()
    report = verify(settings)
    assert report.by_kind() == {"missing": 1}
    assert "seq 2 of 1..3" in report.problems[0].detail


def test_reordered_events_are_reported(settings, writer):
    one = writer.envelope("subject-MSK-0006", registered(6))
    two = writer.envelope("subject-MSK-0006", enrolled(6))
    writer.resend(two)
    writer.resend(one)
    writer.producer.flush()
    assert kinds(settings) == {"reordered": 1}


def test_duplicates_and_conflicting_duplicates_are_told_apart(settings, writer):
    one = writer.envelope("subject-MSK-0007", registered(7))
    writer.resend(one)
    writer.resend(one)
    other = writer.envelope(
        "subject-MSK-0007", registered(8), stream_seq=1, prev_hash="0" * 64
    )
    writer.resend(other)
    writer.producer.flush()
    assert kinds(settings) == {"duplicate": 1, "conflicting-duplicate": 1}


def test_unreadable_and_schema_invalid_events_are_reported(settings, writer):
    writer.send_bytes("subject-MSK-0010", b"\x00not an event")
    bad_payload = writer.envelope(
        "subject-MSK-0011", registered(11),
        payload={"subject_id": "Jane Doe", "site_id": "MSK"},
    )
    writer.resend(bad_payload)
    writer.producer.flush()
    assert kinds(settings) == {"unreadable": 1, "schema-invalid": 1}


def test_one_event_id_for_two_different_events_is_reported(settings, writer):
    one = writer.envelope("subject-MSK-0012", registered(12))
    writer.resend(one)
    writer.append("subject-MSK-0013", registered(13), event_id=one.event_id)
    writer.producer.flush()
    assert kinds(settings) == {"duplicate-event-id": 1}
