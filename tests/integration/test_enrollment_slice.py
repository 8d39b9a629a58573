"""The walking skeleton end to end on a real Kafka broker: HTTP command -> event on the topic
-> Faust projection -> replay, plus the single-writer race and refused commands."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import orjson
import pytest

from clients.http import DEMO_READER, call
from events.envelope import GENESIS_HASH
from tests.integration.helpers import (
    COORDINATOR,
    enroll,
    enrollment_events,
    eventually,
    make_eligible,
    open_cohort,
    register,
    whole_view,
)

pytestmark = pytest.mark.kafka


def replay_cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trialops", "replay", "cohort-occupancy", *args],
        env={**os.environ, **settings.env()},
        capture_output=True,
        timeout=120,
        check=True,
    )


def test_enroll_command_reaches_topic_projection_and_replay(stack, settings):
    # Given an open cohort of three and a subject who went through screening to eligibility
    open_cohort(stack, "DL1-IP")
    make_eligible(stack, "MSK-0001")

    # When the site coordinator enrolls the subject over HTTP
    status, answer = enroll(stack, "MSK-0001", "DL1-IP")

    # Then the command is accepted and names the event and where it was written
    assert status == 201, answer
    [summary] = answer["events"]
    assert summary["event_type"] == "SubjectEnrolled"
    assert summary["stream_id"] == "subject-MSK-0001"
    assert summary["stream_seq"] == 5  # registered, pre-screened, consented, assessed, enrolled

    # and the event is on the topic, sealed, chained to the subject's stream, by the coordinator
    events = enrollment_events(settings)
    enrolled = [e for e in events if e.event_type == "SubjectEnrolled"]
    assert len(enrolled) == 1
    event = enrolled[0]
    assert event.hash_is_valid()
    assert str(event.event_id) == summary["event_id"]
    stream = [e for e in events if e.stream_id == "subject-MSK-0001"]
    assert [e.event_type for e in stream] == [
        "SubjectRegistered",
        "PrescreeningRecorded",
        "ConsentRecorded",
        "EligibilityAssessed",
        "SubjectEnrolled",
    ]
    assert stream[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(stream))
    assert event.payload == {
        "subject_id": "MSK-0001",
        "cohort_id": "DL1-IP",
        "slot": 1,
        "passed_over": [],
    }
    assert (event.actor.user_id, event.actor.role) == ("demo-site-coordinator", "site_coordinator")
    assert event.trial_id == settings.trial_id

    # and the Faust worker's view shows one of three slots taken
    def occupancy_shows_enrollment():
        document = orjson.loads(stack.occupancy())
        cohort = next((c for c in document["cohorts"] if c["cohort_id"] == "DL1-IP"), None)
        return document if cohort and cohort["enrolled"] == ["MSK-0001"] else None

    document = eventually(occupancy_shows_enrollment)
    [cohort] = document["cohorts"]
    assert (cohort["slots_planned"], cohort["slots_taken"], cohort["slots_free"]) == (3, 1, 2)

    # and the replay from the topic prints byte-identical JSON
    live = whole_view(f"{stack.projections_url}/projections/cohort-occupancy",
                      token=DEMO_READER)
    assert replay_cli(settings).stdout == live


def test_two_enrollments_racing_for_the_last_slot_exactly_one_wins(stack, settings):
    # Given a cohort of three with one free slot and two more eligible subjects
    open_cohort(stack, "DL2-IP", dose_level="DL2")
    for subject in ["MSK-0103", "MSK-0104", "MSK-0101", "MSK-0102"]:
        make_eligible(stack, subject)
    assert enroll(stack, "MSK-0103", "DL2-IP")[0] == 201
    assert enroll(stack, "MSK-0104", "DL2-IP")[0] == 201

    # When both are enrolled at the same moment
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda s: enroll(stack, s, "DL2-IP"), ["MSK-0101", "MSK-0102"]))

    # Then exactly one wins and the other is told the cohort is full
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409], results
    refusal = next(answer for status, answer in results if status == 409)
    assert refusal["error"] == "cohort-capacity"
    assert refusal["message"] == "cohort DL2-IP is full: 3 of 3 slots taken"

    # and the topic holds exactly one enrollment into the last slot
    enrolled = [
        e for e in enrollment_events(settings)
        if e.event_type == "SubjectEnrolled" and e.payload["cohort_id"] == "DL2-IP"
    ]
    assert sorted(e.payload["slot"] for e in enrolled) == [1, 2, 3]


def test_many_concurrent_enrollments_fill_the_cohort_exactly(stack, settings):
    open_cohort(stack, "DL3-IP", dose_level="DL3")
    subjects = [f"MSK-02{n:02d}" for n in range(8)]
    for subject in subjects:
        make_eligible(stack, subject)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda s: enroll(stack, s, "DL3-IP")[0], subjects))

    assert sorted(statuses) == [201] * 3 + [409] * 5
    slots = sorted(
        e.payload["slot"] for e in enrollment_events(settings) if e.event_type == "SubjectEnrolled"
    )
    assert slots == [1, 2, 3]


BAD_REQUESTS = [
    # (what, path, raw body, token, expected status, expected error, text the message must name)
    ("malformed JSON", "/enrollment/enrollments", b'{"subject_id": "MSK-0301",', COORDINATOR,
     400, "malformed-json", "not JSON"),
    ("a JSON array", "/enrollment/enrollments", b"[]", COORDINATOR,
     400, "malformed-json", "JSON object"),
    ("missing cohort_id", "/enrollment/enrollments", b'{"subject_id": "MSK-0301"}', COORDINATOR,
     422, "invalid-command", "cohort_id"),
    ("unknown cohort", "/enrollment/enrollments",
     b'{"subject_id": "MSK-0301", "cohort_id": "DL9-IP"}', COORDINATOR,
     404, "cohort-must-be-open", "DL9-IP"),
    ("unregistered subject", "/enrollment/enrollments",
     b'{"subject_id": "MSK-0399", "cohort_id": "DL4-IP"}', COORDINATOR,
     404, "subject-must-be-registered", "MSK-0399"),
    ("a name instead of a pseudonymous code", "/enrollment/subjects",
     b'{"subject_id": "Jane Doe", "site_id": "MSK"}', COORDINATOR,
     422, "invalid-command", "subject_id"),
    ("an actor smuggled in the body", "/enrollment/subjects",
     b'{"subject_id": "MSK-0302", "site_id": "MSK", "actor": {"user_id": "x", "role": "y"}}',
     COORDINATOR, 422, "invalid-command", "actor"),
    ("no token", "/enrollment/subjects", b'{"subject_id": "MSK-0303", "site_id": "MSK"}', None,
     401, "unauthenticated", "Bearer"),
    ("a role that may not open cohorts", "/enrollment/cohorts",
     b'{"cohort_id": "DL5-IP", "dose_level": "DL5", "dose_cells_per_kg": 3e7,'
     b' "route": "intraperitoneal", "capacity": 3}', COORDINATOR,
     403, "role-not-permitted", "investigator"),
]


def test_refused_commands_get_4xx_naming_the_field_or_rule_and_append_nothing(stack, settings):
    open_cohort(stack, "DL4-IP", dose_level="DL4")
    register(stack, "MSK-0301")
    before = len(enrollment_events(settings))

    for what, path, raw, token, status, error, named in BAD_REQUESTS:
        got_status, answer = call("POST", f"{stack.service_url}{path}", raw, token=token)
        assert got_status == status, (what, answer)
        assert answer["error"] == error, (what, answer)
        assert named in answer["message"], (what, answer)

    assert len(enrollment_events(settings)) == before


def test_restarted_service_catches_up_and_still_refuses_a_full_cohort(stack, settings):
    # Given a full cohort of three and a fourth eligible subject
    open_cohort(stack, "DL1-IP")
    for subject in ["MSK-0401", "MSK-0402", "MSK-0403", "MSK-0404"]:
        make_eligible(stack, subject)
    for subject in ["MSK-0401", "MSK-0402", "MSK-0403"]:
        assert enroll(stack, subject, "DL1-IP")[0] == 201

    # When the service is killed and started again
    stack.kill("services")
    stack.restart_services(timeout=60)

    # Then its state came back from the topic: the cohort is still full
    status, answer = enroll(stack, "MSK-0404", "DL1-IP")
    assert status == 409 and answer["error"] == "cohort-capacity", answer
    # and the next event of an existing stream continues its chain
    status, answer = enroll(stack, "MSK-0404", "DL1-IP", waitlist_if_full=True)
    assert status == 201 and answer["events"][0]["stream_seq"] == 5, answer
