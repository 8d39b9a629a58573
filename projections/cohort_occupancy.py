"""Cohort occupancy: per cohort, its dose level and route, whether it is open, slots planned
and taken and who holds them; and the trial's waiting list in arrival order.

The waiting list is one list for the trial (services/enrollment/slots.py): a waiting subject
may take a slot in any cohort; per cohort, ``waiting`` counts the waiting subjects who asked for
that cohort. A withdrawal frees a slot only when the service recorded ``SlotReleased`` (before
infusion).

``screening`` lists the subjects not (yet) enrolled and where each stands: registered,
pre-screened (with the MSLN IHC result), consented, assessed eligible or not (the enrollment
service's verdict, ``services.enrollment.state.eligible``), screen-failed (with the reason and
the criteria not met), waitlisted or withdrawn before enrollment. An enrolled subject leaves it
for good: its key keeps an ``enrolled`` marker, so a later consent to an amended form (which
the enrollment service accepts after enrollment) does not list it again.

State is kept per cohort (``cohort:<id>``), per waiting subject (``waiting:<id>``) and per
subject in screening (``screening:<id>``), never
as one document per trial: a table value is rewritten on every change, and a trial-wide value
would grow with the waiting list until it outgrew a Kafka message. ``render`` assembles them;
the live view pages the screening list, and its first page carries the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events.enrollment import (
    CohortClosed,
    CohortExpanded,
    CohortOpened,
    ConsentRecorded,
    EligibilityAssessed,
    PrescreeningRecorded,
    SlotReleased,
    SubjectEnrolled,
    SubjectRegistered,
    SubjectScreenFailed,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from events.registry import Recorded
from projections.base import Listing, Projection, State, stamp
from services.enrollment.state import eligible

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
    SubjectRegistered,
    PrescreeningRecorded,
    ConsentRecorded,
    EligibilityAssessed,
)


def key_of(recorded: Recorded) -> tuple[str, ...] | None:
    event = recorded.payload
    match event:
        case CohortOpened() | CohortExpanded() | CohortClosed() | SlotReleased():
            return (f"cohort:{event.cohort_id}",)
        case SubjectEnrolled():
            return (
                f"cohort:{event.cohort_id}",
                f"waiting:{event.subject_id}",
                f"screening:{event.subject_id}",
            )
        case SubjectWaitlisted() | SubjectWithdrawn() | SubjectScreenFailed():
            return (f"waiting:{event.subject_id}", f"screening:{event.subject_id}")
        case (
            SubjectRegistered() | PrescreeningRecorded() | ConsentRecorded() | EligibilityAssessed()
        ):
            return (f"screening:{event.subject_id}",)
    return None


def initial(key: str) -> State:
    kind, _, ident = key.partition(":")
    if kind == "cohort":
        return _new_cohort(ident)
    if kind == "screening":
        return {"subject_id": ident, "status": None, "detail": None}
    return {"subject_id": ident, "asked_for": None, "waiting_since": None}


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


def apply(state: State, recorded: Recorded) -> State | None:
    event = recorded.payload
    if "status" in state and "cohort_id" not in state:
        return _screening(state, recorded)
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
        case CohortExpanded():
            planned = state["slots_planned"] + event.additional_slots
            return {**state, "status": "open", "slots_planned": planned}
        case CohortClosed():
            return {**state, "status": "closed"}
        case SubjectEnrolled() if "cohort_id" in state:
            return {**state, "slots": sorted([*state["slots"], [event.slot, event.subject_id]])}
        case SlotReleased():
            kept = [s for s in state["slots"] if s != [event.slot, event.subject_id]]
            return {**state, "slots": kept}
        case SubjectWaitlisted():
            since = stamp(recorded)
            return {**state, "asked_for": event.cohort_id, "waiting_since": since}
        case SubjectEnrolled() | SubjectWithdrawn() | SubjectScreenFailed():
            return None  # off the waiting list: nothing left to show for this subject here
    return state


ENROLLED = "enrolled"
"""A screening key's status once its subject is enrolled: kept (not removed) so that what the
enrollment service still accepts afterwards (a re-consent to an amended form, a withdrawal)
does not put the subject back in screening; ``render`` leaves it out."""


def _screening(state: State, recorded: Recorded) -> State | None:
    """Where a subject not enrolled stands; ``ENROLLED`` from enrollment on, whatever comes
    after."""
    event = recorded.payload
    if state["status"] == ENROLLED:
        return state
    match event:
        case SubjectEnrolled():
            return {**state, "status": ENROLLED, "detail": None}
        case SubjectRegistered():
            return {**state, "status": "registered"}
        case PrescreeningRecorded():
            detail = f"MSLN IHC {event.msln_ihc_percent:g}%"
            return {**state, "status": "prescreened", "detail": detail}
        case ConsentRecorded():
            return {**state, "status": "consented"}
        case EligibilityAssessed():
            verdict = "eligible" if eligible(event) else "not-eligible"
            unmet = [c.criterion for c in event.criteria if not c.met]
            return {**state, "status": verdict, "detail": ", ".join(unmet) or None}
        case SubjectScreenFailed():
            failed = ", ".join(c.criterion for c in event.failed_criteria)
            detail = f"{event.reason_code} at {event.stage}" + (f": {failed}" if failed else "")
            return {**state, "status": "screen-failed", "detail": detail}
        case SubjectWaitlisted():
            detail = f"for {event.cohort_id}"
            return {**state, "status": "waitlisted", "detail": detail}
        case SubjectWithdrawn() if state["status"] is not None:
            return {**state, "status": "withdrawn", "detail": event.reason_code}
    return None  # withdrawn before any screening step: nothing to show


def render(states: Mapping[str, State]) -> dict[str, Any]:
    waiting = sorted(
        (s for key, s in states.items() if key.startswith("waiting:") and s["waiting_since"]),
        key=lambda s: tuple(
            s["waiting_since"][k] for k in ("occurred_at", "recorded_at", "event_id")
        ),
    )
    waiting_list = [{"subject_id": s["subject_id"], "asked_for": s["asked_for"]} for s in waiting]
    cohorts = []
    for key in sorted(k for k in states if k.startswith("cohort:")):
        c = states[key]
        cohort_id = c["cohort_id"]
        taken = len(c["slots"])
        free = max(c["slots_planned"] - taken, 0) if c["status"] == "open" else 0
        asked = [w["subject_id"] for w in waiting_list if w["asked_for"] == cohort_id]
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
        "screening": [
            {k: states[key][k] for k in ("subject_id", "status", "detail")}
            for key in sorted(k for k in states if k.startswith("screening:"))
            if states[key]["status"] != ENROLLED
        ],
    }


def select(document: dict[str, Any], cohort_id: str) -> dict[str, Any] | None:
    """One cohort's answer: the cohort and the trial's waiting list (where its subjects stand
    among all who wait). Not the screening list, which concerns no cohort and keeps every
    subject ever screened: at a million events of history (bench_projections), each cohort's
    answer carried 37 MB of it and took seconds to render."""
    cohorts = [c for c in document["cohorts"] if c["cohort_id"] == cohort_id]
    if not cohorts:
        return None
    return {"projection": document["projection"], "cohorts": cohorts,
            "waiting_list": document["waiting_list"]}


def select_keys(cohort_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The keys a cohort's answer is made from: its cohort's, and the waiting subjects'
    (a subject's waiting key is gone once it is off the list)."""
    return (f"cohort:{cohort_id}",), ("waiting:",)


PROJECTION = Projection(
    name=NAME,
    contexts=("enrollment",),
    key_of=key_of,
    initial=initial,
    apply=apply,
    render=render,
    key_name="cohort_id",
    select=select,
    select_keys=select_keys,
    # The screening list grows with every subject ever screened (333,917 at a million events
    # in bench_projections): the view pages it; the first page carries the cohorts and the
    # waiting list, made from their own keys (decision 85).
    listing=Listing(
        path=("screening",), prefix="screening:", summary=True,
        summary_prefixes=("cohort:", "waiting:"),
    ),
)
