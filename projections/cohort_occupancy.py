"""Cohort occupancy: per cohort, its dose level and route, slots planned and taken, who holds
them, and the waiting list in arrival order."""

from __future__ import annotations

from collections.abc import Mapping

from events.enrollment import CohortOpened, SubjectEnrolled, SubjectWaitlisted
from events.registry import Recorded
from projections.base import Projection, State

NAME = "cohort-occupancy"


def key_of(recorded: Recorded) -> str | None:
    match recorded.payload:
        case CohortOpened() | SubjectEnrolled() | SubjectWaitlisted():
            return recorded.payload.cohort_id
    return None


def initial(cohort_id: str) -> State:
    return {
        "cohort_id": cohort_id,
        "status": "unknown",
        "dose_level": None,
        "dose_cells_per_kg": None,
        "route": None,
        "slots_planned": 0,
        "enrolled": [],
        "waiting_list": [],
    }


def apply(state: State, recorded: Recorded) -> State:
    event = recorded.payload
    match event:
        case CohortOpened():
            return {
                **state,
                "status": "open",
                "dose_level": event.dose_level,
                "dose_cells_per_kg": event.dose_cells_per_kg,
                "route": event.route,
                "slots_planned": event.capacity,
            }
        case SubjectEnrolled():
            return {**state, "enrolled": [*state["enrolled"], event.subject_id]}
        case SubjectWaitlisted():
            return {**state, "waiting_list": [*state["waiting_list"], event.subject_id]}
    return state


def render(states: Mapping[str, State]) -> dict:
    cohorts = []
    for cohort_id in sorted(states):
        s = states[cohort_id]
        taken = len(s["enrolled"])
        cohorts.append(
            {
                **s,
                "slots_taken": taken,
                "slots_free": max(s["slots_planned"] - taken, 0),
                "waiting": len(s["waiting_list"]),
            }
        )
    return {"projection": NAME, "cohorts": cohorts}


PROJECTION = Projection(
    name=NAME,
    contexts=("enrollment",),
    key_of=key_of,
    initial=initial,
    apply=apply,
    render=render,
    key_name="cohort_id",
)
