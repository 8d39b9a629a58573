"""A lot that turns out of specification after its infusion reaches safety, on the real broker,
through the public HTTP API (issue 11, item 3; decision 32).

Source: DOMAIN.md section 2.4: a lot released while sterility is "negative to date" may turn
out of specification later; "after infusion it becomes a safety event with notice to the
investigator". Manufacturing appends the late failure to its topic, dosing the infusion to its
own; the safety service follows both, and the safety board shows the follow-up until the
investigator records the notice and the assessment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import orjson
import pytest

from clients.http import get_bytes
from clients.journey import Journey, JourneyStepRefused, open_cohort, send
from clients.journey_steps import INVESTIGATOR, moment
from tests.integration.helpers import eventually

pytestmark = pytest.mark.kafka

START = datetime(2026, 3, 2, tzinfo=UTC)


def test_a_late_sterility_failure_after_infusion_needs_the_investigators_follow_up(stack):
    cohort = open_cohort(stack.service_url, "DL1", occurred_at=START)
    # Given MSK-0731's lot released while sterility was negative to date, and infused
    subject = Journey(stack.service_url, "MSK-0731", "MSK", START)
    subject.to_enrolled(cohort)
    subject.to_released_lot(sterility="negative-to-date")
    subject.to_infused()
    infused_at = moment(START, "infuse")
    follow_up = {
        "lot_id": subject.lot_id,
        "investigator_notified_at": (infused_at + timedelta(days=5, hours=2)).isoformat(),
        "assessment": "no-adverse-event",
        "summary": "Subject seen on day 5: afebrile, cultures negative, no sign of infection",
        "occurred_at": (infused_at + timedelta(days=5, hours=3)).isoformat(),
    }
    path = "/safety/late-oos-follow-ups"
    # Before any late failure there is nothing to follow up
    with pytest.raises(JourneyStepRefused) as nothing_open:
        send(stack.service_url, "late-oos-follow-up", path, follow_up, INVESTIGATOR)
    assert nothing_open.value.rule == "late-oos-follow-up-needs-an-open-item"

    # When the sterility culture turns positive on day 5
    late = subject.qc_result("sterility", "positive", infused_at + timedelta(days=5))
    assert [e["event_type"] for e in late["events"]] == [
        "QcResultRecorded",
        "LotOutOfSpecification",
    ]

    # Then the safety board shows the follow-up
    as_of = quote(follow_up["occurred_at"])
    board = f"{stack.projections_url}/projections/safety?as_of={as_of}"

    def follow_ups(count: int):
        items = orjson.loads(get_bytes(board))["late_oos_follow_ups"]
        return items if len(items) == count else None

    [item] = eventually(lambda: follow_ups(1), timeout=60)
    assert (item["lot_id"], item["subject_id"], item["failed_tests"]) == (
        subject.lot_id,
        "MSK-0731",
        ["sterility"],
    )

    # And the investigator's notice and assessment are recorded, after which the board is clear
    answer = send(stack.service_url, "late-oos-follow-up", path, follow_up, INVESTIGATOR)
    assert [e["event_type"] for e in answer["events"]] == ["LateOosFollowUpRecorded"]
    assert eventually(lambda: follow_ups(0) == [] or None, timeout=60)
