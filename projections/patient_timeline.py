"""Patient timeline: everything that happened to one subject, in business-time order, with who
recorded it and when. Any event whose payload names a ``subject_id`` belongs to that subject.
Each entry's ``summary`` is the line of values the event says that matter (the QC test, result
and verdict against the trial's release specification, the eligibility verdict, a grade, a
dose, a day of the trial's calendar; projections/timeline_values.py), so the projection is made
for a trial (:func:`make`). A subject's state keeps its lots' cell-dose targets
(``lot_targets``, from ``ManufacturingStarted``) for the cell-dose verdict; the document does
not show them.

A subject's value is bounded whatever is posted: free text is shortened, an entry's details are
capped, and the value keeps the latest ``MAX_ENTRIES`` entries in business-time order with the
count of earlier ones; the complete history is on the topics (replay, audit trail)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events.manufacturing import ManufacturingStarted
from events.registry import Recorded
from events.topics import CONTEXTS
from projections.base import Listing, Projection, State
from projections.bounded import capped_details, shorten
from projections.timeline_values import summary
from trial.config import TrialConfig

NAME = "patient-timeline"

MAX_ENTRIES = 200
"""Entries a subject's value keeps: a subject of this trial has about 60 events (the simulated
trial's busiest has 44 steps), so only a runaway stream reaches it."""
DETAILS_LIMIT = 1024
"""Bytes of an entry's details (the payload, strings shortened) kept as JSON."""
MAX_VALUE_BYTES = 512 * 1024
"""What a subject's value stays under as JSON: MAX_ENTRIES entries of at most about 2.5 KiB
(details, a shortened reason, a summary line of at most about 210 bytes, ids and times), half
of Kafka's default 1 MB message limit."""


def key_of(recorded: Recorded) -> str | None:
    return getattr(recorded.payload, "subject_id", None)


def initial(subject_id: str) -> State:
    return {"subject_id": subject_id, "entries": []}


def apply(state: State, recorded: Recorded, trial: TrialConfig) -> State:
    e = recorded.envelope
    payload = recorded.payload
    targets: dict[str, float] = state.get("lot_targets", {})
    if isinstance(payload, ManufacturingStarted):
        targets = {**targets, payload.lot_id: payload.target_car_t_cells}
    entry = {
        "event_id": str(e.event_id),
        "event_type": e.event_type,
        "context": recorded.payload.context,
        "occurred_at": e.occurred_at.isoformat(),
        "recorded_at": e.recorded_at.isoformat(),
        "recorded_by": {"user_id": e.actor.user_id, "role": e.actor.role},
        "reason": shorten(e.reason),
        "summary": summary(payload, trial, targets),
        "details": capped_details(
            recorded.payload.model_dump(mode="json", exclude={"subject_id"}), DETAILS_LIMIT
        ),
    }
    # Events of several topics arrive interleaved in no fixed order: keep the list sorted so
    # the live worker and the replay agree whatever the arrival order.
    entries = sorted(
        [*state["entries"], entry],
        key=lambda x: (x["occurred_at"], x["recorded_at"], x["event_id"]),
    )
    # Keeping the latest MAX_ENTRIES of everything seen does not depend on arrival order either.
    omitted = state.get("earlier_entries_omitted", 0) + max(0, len(entries) - MAX_ENTRIES)
    kept = {**state, "entries": entries[-MAX_ENTRIES:], "earlier_entries_omitted": omitted}
    return {**kept, "lot_targets": targets} if targets else kept


HIDDEN = ("lot_targets",)
"""State a subject keeps for its lines, not shown in the document."""


def render(states: Mapping[str, State]) -> dict[str, Any]:
    return {
        "projection": NAME,
        "subjects": [
            {
                **{k: v for k, v in states[s].items() if k not in HIDDEN},
                "events": len(states[s]["entries"]) + states[s].get("earlier_entries_omitted", 0),
            }
            for s in sorted(states)
        ],
    }


def make(trial: TrialConfig) -> Projection:
    """The patient timeline of ``trial``: its lines judge and date by the trial's terms."""

    def apply_for_trial(state: State, recorded: Recorded) -> State:
        return apply(state, recorded, trial)

    return Projection(
        name=NAME,
        contexts=CONTEXTS,
        key_of=key_of,
        initial=initial,
        apply=apply_for_trial,
        render=render,
        key_name="subject_id",
        listing=Listing(path=("subjects",)),
    )
