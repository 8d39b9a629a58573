"""Guards on the lot's stages: which move is legal from which stage, for whom, and when an out of
specification lot may go on (DOMAIN.md section 2 item 3). Each refusal names the current and the
requested stage."""

from __future__ import annotations

from collections.abc import Collection
from typing import get_args

from services.errors import RuleViolated
from services.manufacturing.state import Lot, ManufacturingState, Stage, describe

STEP_FOLLOWS = {
    "activation": "received",
    "gene-transfer": "activation",
    "expansion": "gene-transfer",
}
"""Each manufacturing step and the stage it starts from."""
QC_STAGES = frozenset(
    {
        "harvested",
        "qc-testing",
        "released",
        "out-of-specification",
        "cryopreserved",
        "shipped",
        "received-at-site",
        "thawed",
    }
)
"""Results may arrive from harvest on; after disposition only to complete a pending one."""
CLOSED = frozenset({"thawed", "failed"})
BEFORE_THAW = frozenset(get_args(Stage)) - CLOSED
"""A manufacturing failure may be recorded until the product is thawed."""
DECIDERS = ("investigator", "sponsor")


def ids(lot: Lot) -> dict[str, str]:
    return {"lot_id": lot.lot_id, "subject_id": lot.subject_id}


def require_stage(lot: Lot, allowed: Collection[str], requested: str) -> None:
    if lot.stage not in allowed:
        raise RuleViolated(
            "lot-state-transition",
            f"lot {lot.lot_id} cannot go from {describe(lot.stage)} to {describe(requested)}",
            lot_id=lot.lot_id,
            current=lot.stage,
            requested=requested,
        )


def move(lot: Lot, state: ManufacturingState, allowed: Collection[str], requested: str) -> None:
    """A step toward the patient: from an allowed stage, for a subject still in the study."""
    require_stage(lot, allowed, requested)
    not_withdrawn(lot, state, requested)


def not_withdrawn(lot: Lot, state: ManufacturingState, requested: str) -> None:
    if lot.subject_id in state.withdrawn:
        raise RuleViolated(
            "subject-withdrawn",
            f"subject {lot.subject_id} is withdrawn: lot {lot.lot_id} cannot go from "
            f"{describe(lot.stage)} to {describe(requested)}",
            lot_id=lot.lot_id,
            subject_id=lot.subject_id,
            current=lot.stage,
            requested=requested,
        )


def require_usable(lot: Lot, requested: str) -> None:
    if lot.usable:
        return
    missing = [r for r in DECIDERS if not (d := lot.decisions.get(r)) or not d.approved]
    raise RuleViolated(
        "lot-must-be-released",
        f"lot {lot.lot_id} is out of specification ({', '.join(lot.failed_tests)}): it cannot "
        f"go from {describe(lot.stage)} to {describe(requested)} without an exceptional "
        f"release approved by the investigator and the sponsor (missing: {', '.join(missing)})",
        lot_id=lot.lot_id,
        current=lot.stage,
        requested=requested,
        failed_tests=list(lot.failed_tests),
        missing_approvals=missing,
    )
