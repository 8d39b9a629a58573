"""The worker's list views page on a real broker: following ``next_cursor`` with a small
``limit`` gives every subject (and every lot) once, in key order, and the pages put together
are what ``trialops replay`` prints for the same events; a bad ``limit`` or ``cursor`` is
refused with HTTP 400 naming the parameter (decision 41).

Events are written straight onto the topics (tests/integration/raw_events.py), as in
test_projection_worker.py, so this exercises the worker's views alone."""

from __future__ import annotations

import urllib.parse

import pytest

from clients.http import DEMO_READER, call
from events.enrollment import CohortOpened, SubjectEnrolled, SubjectWaitlisted
from events.manufacturing import ApheresisCollected
from infra.kafka_io import Position
from projections.base import to_json
from projections.catalog import get
from projections.paging import assemble
from tests.integration.raw_events import RawWriter
from tests.integration.test_projection_worker import replay

pytestmark = pytest.mark.kafka

SITES = ("MSK", "MDA", "FHC")
SUBJECTS = [f"{SITES[n % 3]}-{(n * 37) % 101:04d}" for n in range(1, 24)]
"""23 pseudonymous subjects of three sites, written in an order that is not the key order."""
LOTS = [f"LOT-{s.replace('-', '')}-A" for s in SUBJECTS[:7]]


def page(stack, name: str, **query: str) -> tuple[int, dict]:
    url = f"{stack.projections_url}/projections/{name}?{urllib.parse.urlencode(query)}"
    return call("GET", url, token=DEMO_READER)


def applied(stack, name: str, *positions: Position) -> None:
    """Wait until the worker applied ``positions`` to ``name`` (read-your-writes)."""
    for at in positions:
        status, body = page(stack, name, limit="1", timeout="60",
                            wait_for=f"{at.topic}:{at.partition}:{at.offset}")
        assert status == 200, body


def pages(stack, name: str, limit: int) -> list[dict]:
    """Every page of ``name``'s list, following the cursors from the first page."""
    status, first = page(stack, name, limit=str(limit))
    assert status == 200, first
    got = [first]
    while got[-1]["next_cursor"] is not None:
        status, next_page = page(stack, name, limit=str(limit), cursor=got[-1]["next_cursor"])
        assert status == 200, next_page
        got.append(next_page)
    return got


def test_paging_through_a_list_view_gives_every_key_once_in_order_as_the_replay(
    stack, settings
):
    # Given 23 subjects in one cohort and the waiting list, and 7 of them with a lot collected
    enrollment = RawWriter(settings)
    enrollment.append("cohort-DL1-IP", CohortOpened(
        cohort_id="DL1-IP", dose_level="DL1", dose_cells_per_kg=1e6, route="intraperitoneal",
        capacity=3))
    for n, subject in enumerate(SUBJECTS, start=1):
        enrollment.append(f"subject-{subject}", (
            SubjectEnrolled(subject_id=subject, cohort_id="DL1-IP", slot=n)
            if n <= 3
            else SubjectWaitlisted(subject_id=subject, cohort_id="DL1-IP", position=n - 3)
        ))
    last_subject = enrollment.append(
        "subject-MSK-0999", SubjectWaitlisted(subject_id="MSK-0999", cohort_id="DL1-IP",
                                              position=21))
    manufacturing = RawWriter(settings, "manufacturing")
    for n, (subject, lot) in enumerate(zip(SUBJECTS, LOTS, strict=False)):
        last_lot = manufacturing.append(lot, ApheresisCollected(
            lot_id=lot, subject_id=subject, coi_id=f"W1234250000{n:02d}S",
            din=f"A99992512345{n:02d}", collection_site="MSK Apheresis Unit", volume_ml=250.0,
            total_nucleated_cells=1.2e10, cd3_cells=6.0e9, weight_kg=70.0))
    everyone = sorted([*SUBJECTS, "MSK-0999"])
    applied(stack, "patient-timeline", last_subject, last_lot)
    applied(stack, "manufacturing-pipeline", last_lot)

    # When a reader pages through the patient timeline four subjects at a time
    timeline = pages(stack, "patient-timeline", 4)

    # Then every subject comes once, in key order, at most four to a page
    listed = [s["subject_id"] for p in timeline for s in p["subjects"]]
    assert listed == everyone
    assert [len(p["subjects"]) for p in timeline] == [4, 4, 4, 4, 4, 4]
    # and the pages put together are, byte for byte, what the replay prints
    assert to_json(put_together("patient-timeline", timeline)) == replay(
        settings, "patient-timeline"
    )

    # When a reader pages through the lots three at a time
    lots = pages(stack, "manufacturing-pipeline", 3)

    # Then every lot comes once in key order; the first page carries the counts of all seven
    assert [lot["lot_id"] for p in lots for lot in p["lots"]] == sorted(LOTS)
    assert lots[0]["by_stage"] == {"collected": 7}
    assert all(set(p) == {"projection", "lots", "next_cursor"} for p in lots[1:])
    assert to_json(put_together("manufacturing-pipeline", lots)) == replay(
        settings, "manufacturing-pipeline"
    )

    # And a filter on one subject still reads that one subject
    status, one = page(stack, "patient-timeline", subject_id=everyone[5])
    assert status == 200
    assert [s["subject_id"] for s in one["subjects"]] == [everyone[5]]

    # And a bad limit or cursor is refused, naming the parameter and the rule
    for query, named in [
        ({"limit": "0"}, "limit must be a whole number from 1 to 1000"),
        ({"limit": "1001"}, "limit must be a whole number from 1 to 1000"),
        ({"limit": "ten"}, "limit must be a whole number from 1 to 1000"),
        ({"cursor": "not a cursor"}, "is not a next_cursor this view gave"),
    ]:
        status, body = page(stack, "patient-timeline", **query)
        assert (status, body["error"]) == (400, "bad-query"), body
        assert named in body["message"]


def put_together(name: str, got: list[dict]) -> dict:
    listing = get(name).listing
    assert listing is not None
    return assemble(listing, got)
