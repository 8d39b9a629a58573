"""A fold that raises on an event: the worker (apply_once) and the replay (fold) both skip the
event for that key, keep the key's state, report the error and go on with the next event."""

from __future__ import annotations

import pytest

from events.enrollment import SubjectRegistered
from events.reading import Unreadable
from projections.applying import apply_once, states
from projections.base import Projection, fold
from services.decider import NewEvent

from .builders import TRIAL_ID, at, history

TOPIC = "ns.enrollment.events"


def registrations(*subjects: str):
    return history(
        NewEvent(f"subject-{s}", SubjectRegistered(subject_id=s, site_id="S1"), at(n))
        for n, s in enumerate(subjects)
    )


def _count(state, recorded):
    if recorded.payload.subject_id == "MSK-0002":
        raise ZeroDivisionError("a bug in the fold")
    return {"registered": [*state["registered"], recorded.payload.subject_id]}


COUNTING = Projection(
    name="registrations",
    contexts=("enrollment",),
    key_of=lambda r: "all",
    initial=lambda key: {"registered": []},
    apply=_count,
    render=lambda s: s,
)


def test_the_replay_skips_the_event_its_fold_cannot_take_and_reports_it():
    errors: list[str] = []

    states_ = fold(COUNTING, registrations("MSK-0001", "MSK-0002", "MSK-0003"), errors=errors)

    assert states_ == {"all": {"registered": ["MSK-0001", "MSK-0003"]}}
    [error] = errors
    assert "registrations cannot apply SubjectRegistered" in error
    assert "ZeroDivisionError: a bug in the fold" in error


def test_the_worker_does_the_same_as_the_replay():
    table: dict = {}
    applied: dict = {}
    errors: list[str] = []

    for offset, recorded in enumerate(registrations("MSK-0001", "MSK-0002", "MSK-0003")):
        apply_once([COUNTING], {"registrations": table}, applied, f"{TOPIC}:0", offset,
                   recorded, errors)

    assert states(table, TRIAL_ID) == fold(  # the table's keys are scoped by trial (decision 61)
        COUNTING, registrations("MSK-0001", "MSK-0002", "MSK-0003"))
    assert len(errors) == 1


def test_the_worker_refuses_an_event_that_skips_one_of_its_stream():
    first, second = history(
        NewEvent("subject-MSK-0001", SubjectRegistered(subject_id="MSK-0001", site_id="S1"),
                 at(n))
        for n in range(2)
    )
    table: dict = {}
    applied: dict = {}

    apply_once([COUNTING], {"registrations": table}, applied, f"{TOPIC}:0", 0, first)
    # a copy at a later offset is skipped
    assert not apply_once([COUNTING], {"registrations": table}, applied, f"{TOPIC}:0", 5, first)
    # the stream's seq 3 with seq 2 missing breaks the chain: the reading rule refuses it
    forged = second.envelope.model_copy(update={"stream_seq": 3})
    with pytest.raises(Unreadable) as caught:
        apply_once([COUNTING], {"registrations": table}, applied, f"{TOPIC}:0", 6,
                   type(second)(forged, second.payload))
    assert caught.value.kind == "broken-chain"
