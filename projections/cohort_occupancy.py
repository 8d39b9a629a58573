"""Cohort occupancy: per cohort, its dose level and route, whether it is open, slots planned
and taken and who holds them; and the trial's waiting list in arrival order.

The waiting list is one list for the trial (services/enrollment/slots.py): a waiting subject
may take a slot in any cohort, so the whole document is one state per trial, keyed by the
trial id; per cohort, ``waiting`` counts the waiting subjects who asked for that cohort.
A withdrawal frees a slot only when the service recorded ``SlotReleased`` (before infusion).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events.enrollment import (
    CohortClosed,
    CohortExpanded,
    CohortOpened,
    SlotReleased,
    SubjectEnrolled,
    SubjectScreenFailed,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from events.registry import Recorded
from projections.base import Projection, State

NAME = "cohort-occupancy"

_CONCERNS = (
    CohortOpened,
    CohortExpanded,
    CohortClosed,
    SubjectEnrolled,
    SlotReleased,
    SubjectWaitlisted,
    SubjectWithdrawn,
    SubjectScreenFailed,
)


def key_of(recorded: Recorded) -> str | None:
    if isinstance(recorded.payload, _CONCERNS):
        return recorded.envelope.trial_id
    return None


def initial(trial_id: str) -> State:
    return {"trial_id": trial_id, "cohorts": {}, "waiting_list": []}


def _new_cohort(cohort_id: str) -> dict[str, Any]:
    return {
        "cohort_id": cohort_id,
        "status": "unknown",
        "dose_level": None,
        "dose_cells_per_kg": None,
        "route": None,
        "slots_planned": 0,
        "slots": [],
    }


def apply(state: State, recorded: Recorded) -> State:
    event = recorded.payload
    match event:
        case CohortOpened():
            return _cohort(
                state,
                event.cohort_id,
                status="open",
                dose_level=event.dose_level,
                dose_cells_per_kg=event.dose_cells_per_kg,
                route=event.route,
                slots_planned=event.capacity,
            )
        case CohortExpanded():
            planned = _get(state, event.cohort_id)["slots_planned"] + event.additional_slots
            return _cohort(state, event.cohort_id, status="open", slots_planned=planned)
        case CohortClosed():
            return _cohort(state, event.cohort_id, status="closed")
        case SubjectEnrolled():
            held = [*_get(state, event.cohort_id)["slots"], [event.slot, event.subject_id]]
            state = _cohort(state, event.cohort_id, slots=sorted(held))
            return _off_waiting_list(state, event.subject_id)
        case SlotReleased():
            held = _get(state, event.cohort_id)["slots"]
            kept = [s for s in held if s != [event.slot, event.subject_id]]
            return _cohort(state, event.cohort_id, slots=kept)
        case SubjectWaitlisted():
            entry = {"subject_id": event.subject_id, "asked_for": event.cohort_id}
            return {**state, "waiting_list": [*state["waiting_list"], entry]}
        case SubjectWithdrawn() | SubjectScreenFailed():
            return _off_waiting_list(state, event.subject_id)
    return state


def _get(state: State, cohort_id: str) -> dict[str, Any]:
    return state["cohorts"].get(cohort_id) or _new_cohort(cohort_id)


def _cohort(state: State, cohort_id: str, **changes: Any) -> State:
    cohort = {**_get(state, cohort_id), **changes}
    return {**state, "cohorts": {**state["cohorts"], cohort_id: cohort}}


def _off_waiting_list(state: State, subject_id: str) -> State:
    kept = [w for w in state["waiting_list"] if w["subject_id"] != subject_id]
    return {**state, "waiting_list": kept}


def render(states: Mapping[str, State]) -> dict:
    cohorts, waiting_list = [], []
    for trial_id in sorted(states):
        state = states[trial_id]
        waiting_list += state["waiting_list"]
        for cohort_id in sorted(state["cohorts"]):
            c = state["cohorts"][cohort_id]
            taken = len(c["slots"])
            free = max(c["slots_planned"] - taken, 0) if c["status"] == "open" else 0
            asked = [w["subject_id"] for w in state["waiting_list"] if w["asked_for"] == cohort_id]
            cohorts.append(
                {
                    "cohort_id": cohort_id,
                    "status": c["status"],
                    "dose_level": c["dose_level"],
                    "dose_cells_per_kg": c["dose_cells_per_kg"],
                    "route": c["route"],
                    "slots_planned": c["slots_planned"],
                    "slots_taken": taken,
                    "slots_free": free,
                    "enrolled": [subject for _slot, subject in c["slots"]],
                    "waiting": len(asked),
                    "waiting_list": asked,
                }
            )
    return {
        "projection": NAME,
        "cohorts": cohorts,
        "waiting_list": [{"position": n, **entry} for n, entry in enumerate(waiting_list, start=1)],
    }


def select(document: dict, cohort_id: str) -> dict | None:
    cohorts = [c for c in document["cohorts"] if c["cohort_id"] == cohort_id]
    return {**document, "cohorts": cohorts} if cohorts else None


PROJECTION = Projection(
    name=NAME,
    contexts=("enrollment",),
    key_of=key_of,
    initial=initial,
    apply=apply,
    render=render,
    key_name="cohort_id",
    select=select,
)
