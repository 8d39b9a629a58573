"""The quarantine decider: one signed decision per unreadable record, with a reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.quarantine import RecordQuarantined
from services.errors import RuleViolated
from services.quarantine.decider import QuarantineRecord, decide, evolve, make_decider

from .builders import at

COMMAND = {
    "occurred_at": at(0),
    "topic": "trialops.enrollment.events",
    "partition": 0,
    "offset": 7,
    "record_sha256": "a" * 64,
    "problem": "unreadable: not JSON",
    "reason": "garbage written by a misconfigured test producer; no clinical content",
}


def test_a_quarantine_names_the_record_by_position_and_digest():
    decider = make_decider()

    [new] = decide(QuarantineRecord(**COMMAND), decider.initial_state)

    assert new.stream_id == "trialops.enrollment.events@0:7"
    assert isinstance(new.payload, RecordQuarantined)
    assert (new.payload.offset, new.payload.record_sha256) == (7, "a" * 64)


def test_a_record_is_quarantined_once():
    decider = make_decider()
    [new] = decide(QuarantineRecord(**COMMAND), decider.initial_state)
    state = evolve(decider.initial_state, new.payload)

    with pytest.raises(RuleViolated) as caught:
        decide(QuarantineRecord(**COMMAND), state)

    assert caught.value.rule == "quarantined-once"


@pytest.mark.parametrize(
    ("field", "value"),
    [("reason", "   "), ("record_sha256", "not-a-digest"), ("offset", -1), ("topic", "")],
)
def test_a_quarantine_without_a_reason_or_a_precise_record_is_refused(field, value):
    with pytest.raises(ValidationError):
        QuarantineRecord(**{**COMMAND, field: value})
