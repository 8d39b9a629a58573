"""Patient timeline: everything that happened to one subject, in business-time order, with who
recorded it and when. Any event whose payload names a ``subject_id`` belongs to that subject."""

from __future__ import annotations

from collections.abc import Mapping

from events.registry import Recorded
from events.topics import CONTEXTS
from projections.base import Projection, State

NAME = "patient-timeline"


def key_of(recorded: Recorded) -> str | None:
    return getattr(recorded.payload, "subject_id", None)


def initial(subject_id: str) -> State:
    return {"subject_id": subject_id, "entries": []}


def apply(state: State, recorded: Recorded) -> State:
    e = recorded.envelope
    entry = {
        "event_id": str(e.event_id),
        "event_type": e.event_type,
        "context": recorded.payload.context,
        "occurred_at": e.occurred_at.isoformat(),
        "recorded_at": e.recorded_at.isoformat(),
        "recorded_by": {"user_id": e.actor.user_id, "role": e.actor.role},
        "reason": e.reason,
        "details": recorded.payload.model_dump(mode="json", exclude={"subject_id"}),
    }
    # Events of several topics arrive interleaved in no fixed order: keep the list sorted so
    # the live worker and the replay agree whatever the arrival order.
    entries = sorted(
        [*state["entries"], entry],
        key=lambda x: (x["occurred_at"], x["recorded_at"], x["event_id"]),
    )
    return {**state, "entries": entries}


def render(states: Mapping[str, State]) -> dict:
    return {
        "projection": NAME,
        "subjects": [{**states[s], "events": len(states[s]["entries"])} for s in sorted(states)],
    }


PROJECTION = Projection(
    name=NAME,
    contexts=CONTEXTS,
    key_of=key_of,
    initial=initial,
    apply=apply,
    render=render,
    key_name="subject_id",
)
