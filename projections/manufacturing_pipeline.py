"""Manufacturing pipeline: per patient lot, its stage, the chain of identity and custody, QC,
release, and the vein-to-vein time from apheresis to infusion (DOMAIN.md section 2).

Every recorded hand-off was checked against both identifiers by the manufacturing service (a
mismatch is refused and never recorded), so the chain's status is read from what is present:
a lot's chain is "complete" when it was collected, every hand-off carried its identifiers, and
two different people verified it at the bedside; it is "ended: manufacturing failed" when the
lot failed (no product will reach a bedside: re-collection or withdrawal follows, DOMAIN.md
section 2 item 3), and "in progress" otherwise.

The lot's stage is the manufacturing service's: each of the lot's own events goes through the
service's ``stage_after`` in its stream's order (one lot is one stream, so Kafka keeps that
order), and the rule lives once. Infusion is dosing's fact, on another topic that arrives in no
fixed order with manufacturing's: it is kept beside the stage and shown over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from events.dosing import BedsideCoiVerified, ConditioningDayRecorded, InfusionRecorded
from events.manufacturing import (
    ApheresisCollected,
    ApheresisReceived,
    CustodyTransferred,
    ExceptionalReleaseApproved,
    LotCryopreserved,
    LotHarvested,
    LotOutOfSpecification,
    LotReceivedAtSite,
    LotReleased,
    LotShipped,
    LotThawed,
    ManufacturingFailed,
    ManufacturingStarted,
    ManufacturingStepStarted,
    QcResultRecorded,
)
from events.registry import Recorded
from projections.base import Listing, Projection, State, ordered_insert, stamp
from services.manufacturing.state import stage_after

NAME = "manufacturing-pipeline"

MAX_LISTED = 50
"""Hand-offs and QC results a lot's value keeps (the latest, in business-time order; the
earlier ones are counted): a lot has fewer than a dozen of each, and a value must stay small
whatever is posted (decisions 13). The complete chain of custody is on the topic."""

STAGE_OF = {
    # the history's entries; the current stage is the service's (``stage_after``)
    ApheresisCollected: "collected",
    ApheresisReceived: "received",
    ManufacturingStarted: "activation",
    LotHarvested: "harvested",
    QcResultRecorded: "qc-testing",
    LotReleased: "released",
    LotOutOfSpecification: "out-of-specification",
    ExceptionalReleaseApproved: "exceptionally-released",
    LotCryopreserved: "cryopreserved",
    LotShipped: "shipped",
    LotReceivedAtSite: "received-at-site",
    LotThawed: "thawed",
    ManufacturingFailed: "failed",
    InfusionRecorded: "infused",
}
_CONCERNS = (
    *STAGE_OF,
    ManufacturingStepStarted,
    CustodyTransferred,
    BedsideCoiVerified,
    ConditioningDayRecorded,
)


def key_of(recorded: Recorded) -> str | None:
    if isinstance(recorded.payload, _CONCERNS):
        return recorded.payload.lot_id
    return None


def initial(lot_id: str) -> State:
    return {
        "lot_id": lot_id,
        "subject_id": None,
        "coi_id": None,
        "din": None,
        "stages": [],
        "custody": [],
        "qc": [],
        "bedside_checks": [],
        "lot_stage": None,
        "infused": False,
    }


def apply(state: State, recorded: Recorded) -> State:
    event = recorded.payload
    state = {**state, "subject_id": getattr(event, "subject_id", state["subject_id"])}
    at = stamp(recorded)
    if event.context == "manufacturing":
        state = {**state, "lot_stage": stage_after(state.get("lot_stage") or "collected", event)}
    elif isinstance(event, InfusionRecorded):
        state = {**state, "infused": True}
    match event:
        case ApheresisCollected():
            state = {**state, "coi_id": event.coi_id, "din": event.din}
        case CustodyTransferred():
            hand_off = {
                **at,
                "from": event.from_party,
                "to": event.to_party,
                "location": event.location,
                "temperature_c": event.temperature_c,
                "by": recorded.envelope.actor.user_id,
            }
            return _listed(state, "custody", hand_off)
        case QcResultRecorded():
            result = {**at, "test": event.test, "value": event.value, "outcome": event.outcome}
            state = _listed(state, "qc", result)
        case BedsideCoiVerified():
            check = {**at, "verified_by": event.verified_by}
            return {**state, "bedside_checks": ordered_insert(state["bedside_checks"], check)}
        case ConditioningDayRecorded():
            return state
    stage = STAGE_OF.get(type(event))
    if isinstance(event, ManufacturingStepStarted):
        stage = event.step
    if stage is None:
        return state
    detail: dict[str, Any] = {}
    if isinstance(event, LotReleased):
        detail = {"conditional": event.conditional}
    elif isinstance(event, LotOutOfSpecification):
        detail = {"failed_tests": list(event.failed_tests), "after_release": event.after_release}
    return {**state, "stages": ordered_insert(state["stages"], {**at, "stage": stage, **detail})}


def _listed(state: State, name: str, item: dict[str, Any]) -> State:
    """``item`` added to the list ``name``, of which the latest ``MAX_LISTED`` are kept; the
    same whatever the arrival order, as ``ordered_insert`` is."""
    items = ordered_insert(state[name], item)
    earlier = state.get(f"earlier_{name}", 0) + max(0, len(items) - MAX_LISTED)
    return {**state, name: items[-MAX_LISTED:], f"earlier_{name}": earlier}


def _summary(state: State) -> dict[str, Any]:
    stages = state["stages"]
    reached = {s["stage"]: s for s in stages}
    current = state.get("lot_stage") or "unknown"
    if state.get("infused"):
        current = "infused"
    collected, infused = reached.get("collected"), reached.get("infused")
    vein_to_vein = None
    if collected and infused:
        span = datetime.fromisoformat(infused["occurred_at"]) - datetime.fromisoformat(
            collected["occurred_at"]
        )
        vein_to_vein = round(span.total_seconds() / 86400, 1)
    checkers = {c["verified_by"] for c in state["bedside_checks"]}
    return {
        "lot_id": state["lot_id"],
        "subject_id": state["subject_id"],
        "stage": current,
        "coi_id": state["coi_id"],
        "din": state["din"],
        "conditional_release": bool(reached.get("released", {}).get("conditional")),
        "out_of_specification": reached.get("out-of-specification", {}).get("failed_tests"),
        "exceptional_release": "exceptionally-released" in reached,
        "chain_of_identity": {
            "collected_with_two_identifiers": state["coi_id"] is not None
            and state["din"] is not None,
            "hand_offs": len(state["custody"]) + state.get("earlier_custody", 0),
            "bedside_verifiers": len(checkers),
            "status": _chain_status(state, current, len(checkers)),
        },
        "vein_to_vein_days": vein_to_vein,
        "stages": [{"stage": s["stage"], "at": s["occurred_at"]} for s in stages],
        "custody": [
            {k: h[k] for k in ("occurred_at", "from", "to", "location", "temperature_c", "by")}
            for h in state["custody"]
        ],
        "qc": [{k: r[k] for k in ("test", "value", "outcome")} for r in state["qc"]],
    }


def _chain_status(state: State, stage: str, bedside_verifiers: int) -> str:
    if state["coi_id"] and state["din"] and bedside_verifiers >= 2:
        return "complete"
    if stage == "failed":
        return "ended: manufacturing failed"
    return "in progress"


def render(states: Mapping[str, State]) -> dict[str, Any]:
    lots = [_summary(states[lot]) for lot in sorted(states)]
    v2v = [lot["vein_to_vein_days"] for lot in lots if lot["vein_to_vein_days"] is not None]
    by_stage: dict[str, int] = {}
    for lot in lots:
        by_stage[lot["stage"]] = by_stage.get(lot["stage"], 0) + 1
    return {
        "projection": NAME,
        "lots": lots,
        "by_stage": by_stage,
        "vein_to_vein_days": {
            "infused_lots": len(v2v),
            "median": sorted(v2v)[len(v2v) // 2] if v2v else None,
            "max": max(v2v) if v2v else None,
        },
    }


PROJECTION = Projection(
    name=NAME,
    contexts=("manufacturing", "dosing"),
    key_of=key_of,
    initial=initial,
    apply=apply,
    render=render,
    key_name="lot_id",
    listing=Listing(path=("lots",), summary=True),
)
