"""Projection table values stay small whatever the free text (decisions 13): each value is
rewritten to its changelog on every change and must fit a Kafka message (1 MB by default).

Given events carrying the longest free text their types allow (2,000-character reasons and
rationales in 4-byte characters) and a subject with far more events than a real one has,
When every projection folds them, Then the serialised state of every key stays under its
stated bound, and the shortened text says it was shortened."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from uuid import UUID

import orjson

from events.enrollment import CohortClosed, CohortOpened, SubjectRegistered
from events.manufacturing import CustodyTransferred, ExceptionalReleaseApproved
from events.registry import read
from events.safety import AdverseEventReported, DltAdjudicated
from projections import patient_timeline
from projections.base import fold
from projections.bounded import TEXT_LIMIT, bounded, shorten
from projections.catalog import build
from services.fields import REASON_MAX_LENGTH
from trial.config import load_trial

from .builders import sealed

TRIAL = load_trial()
PROJECTIONS = build(TRIAL)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LONGEST = "\U0001d538" * REASON_MAX_LENGTH
"""2,000 characters of MATHEMATICAL DOUBLE-STRUCK CAPITAL A: 8,000 bytes in UTF-8."""
BOUND = 64 * 1024
"""Every projection's value but the timeline's."""
_ids = itertools.count(1)


def rec(payload, minute: int, reason: str | None = LONGEST):
    n = next(_ids)
    at = T0 + timedelta(minutes=minute)
    return read(
        sealed(payload, event_id=UUID(int=n), occurred_at=at, recorded_at=at, reason=reason,
               stream_id="s", trial_id=TRIAL.trial_id)
    )


def noisy_trial(events_per_subject: int) -> list:
    subject, lot, ae = "MSK-0001", "LOT-0001-A", "AE-0001-01"
    events = [
        rec(CohortOpened(cohort_id="DL1-IP", dose_level="DL1", dose_cells_per_kg=1e6,
                         route="intraperitoneal", capacity=3, departure_reason=LONGEST), 0),
        rec(SubjectRegistered(subject_id=subject, site_id="S" * 32), 1),
        rec(ExceptionalReleaseApproved(lot_id=lot, subject_id=subject,
                                       investigator_id="i" * 128, sponsor_id="s" * 128), 2),
        rec(AdverseEventReported(
            ae_id=ae, subject_id=subject, term="T" * 120, grade=3, ctcae_version="5.0",
            onset_at=T0, serious_criteria=("hospitalisation",), attribution="probable",
            expected=False, sponsor_received_at=T0, special_interest=None,
            haematological=False, conditioning_lab_effect=False), 3),
        rec(DltAdjudicated(
            ae_id=ae, subject_id=subject, cohort_id="DL1-IP", dose_level="DL1",
            adjudicated_at=T0, rule_verdict="dlt", rule_criterion="c" * 500,
            rule_findings=("f" * 500,) * 5, verdict="not-dlt", departure_reason=LONGEST), 4),
        rec(CohortClosed(cohort_id="DL1-IP", reason=LONGEST), 5),
    ]
    for i in range(events_per_subject):
        events.append(rec(CustodyTransferred(
            lot_id=lot, subject_id=subject, coi_id="W123425000007S", din="W123425000008Q",
            from_party="p" * 128, to_party="q" * 128, location="L" * 200, temperature_c=-150,
        ), 10 + i))
    return events


def sizes(events) -> dict[tuple[str, str], int]:
    return {
        (name, key): len(orjson.dumps(state))
        for name, projection in PROJECTIONS.items()
        for key, state in fold(projection, events).items()
    }


def test_every_projection_value_stays_under_its_bound_whatever_the_free_text():
    measured = sizes(noisy_trial(events_per_subject=1_000))

    timeline = {k: v for k, v in measured.items() if k[0] == patient_timeline.NAME}
    others = {k: v for k, v in measured.items() if k[0] != patient_timeline.NAME}
    assert timeline and others
    assert max(timeline.values()) < patient_timeline.MAX_VALUE_BYTES, timeline
    assert max(others.values()) < BOUND, others


def test_a_long_reason_is_kept_shortened_with_a_mark_and_its_length():
    events = noisy_trial(events_per_subject=0)
    projection = PROJECTIONS[patient_timeline.NAME]

    [state] = fold(projection, events).values()

    reason = state["entries"][0]["reason"]
    assert reason.startswith(LONGEST[:TEXT_LIMIT])
    assert f"shortened from {REASON_MAX_LENGTH} characters" in reason
    assert len(reason) < TEXT_LIMIT + 100


def test_the_timeline_keeps_the_latest_entries_and_counts_the_earlier_ones():
    events = noisy_trial(events_per_subject=patient_timeline.MAX_ENTRIES + 50)
    projection = PROJECTIONS[patient_timeline.NAME]

    forwards = fold(projection, events)
    backwards = fold(projection, list(reversed(events)))

    [state] = forwards.values()
    assert len(state["entries"]) == patient_timeline.MAX_ENTRIES
    assert state["earlier_entries_omitted"] == len(events) - 2 - patient_timeline.MAX_ENTRIES
    assert forwards == backwards  # arrival order does not matter, live or replayed
    [subject] = projection.render(forwards)["subjects"]
    assert subject["events"] == len(events) - 2  # the two cohort events are not the subject's


def test_short_text_is_kept_as_it_is():
    assert shorten("moved abroad") == "moved abroad"
    assert bounded({"a": ["x" * TEXT_LIMIT], "n": 3}) == {"a": ["x" * TEXT_LIMIT], "n": 3}
