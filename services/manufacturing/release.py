"""QC results, disposition and exceptional release (DOMAIN.md section 2 items 3-4).

A result is recorded once (FDA guidance for industry, Investigating Out-of-Specification Test
Results, 2006: no retesting into compliance), except that a sterility or mycoplasma result
"negative to date" may be completed later. Disposition needs every release test: it releases the
lot (conditionally while a result is negative to date) or puts it out of specification. A later
positive puts a dispositioned lot out of specification (``after_release`` when it had been
released). An out-of-specification lot may go on only after two documented decisions, the
investigator's and the sponsor's, by two different people, in either order.
"""

from __future__ import annotations

from typing import Literal

from events.manufacturing import (
    ExceptionalReleaseApproved,
    ExceptionalReleaseDecided,
    LotOutOfSpecification,
    LotReleased,
    QcResultRecorded,
)
from events.registry import EventPayload
from services.errors import Forbidden, RuleViolated
from services.manufacturing.commands import DecideExceptionalRelease, RecordQcResult
from services.manufacturing.qc import Result, assess, judge
from services.manufacturing.stages import (
    CLOSED,
    DECIDERS,
    QC_STAGES,
    ids,
    move,
    not_withdrawn,
    require_stage,
)
from services.manufacturing.state import Lot, ManufacturingState
from trial.config import ReleaseSpecification


def qc_result(lot: Lot, cmd: RecordQcResult, spec: ReleaseSpecification) -> list[EventPayload]:
    require_stage(lot, QC_STAGES, "qc-testing")
    previous = lot.results.get(cmd.test)
    if previous is not None and not previous.pending:
        shown = previous.outcome or f"{previous.value:g}"
        raise RuleViolated(
            "qc-result-recorded-once",
            f"lot {lot.lot_id} already has a final {cmd.test} result ({shown}): a result is "
            "recorded once, never retested into compliance",
            lot_id=lot.lot_id,
            test=cmd.test,
        )
    recorded = QcResultRecorded(**ids(lot), test=cmd.test, value=cmd.value, outcome=cmd.outcome)
    if lot.disposition is None:
        return [recorded]
    assert lot.target_car_t_cells is not None  # fixed when manufacturing started
    verdict = judge(cmd.test, Result(cmd.value, cmd.outcome), spec, lot.target_car_t_cells)
    if verdict.status != "fail":
        return [recorded]
    late = LotOutOfSpecification(
        **ids(lot), failed_tests=(cmd.test,), after_release=lot.ever_released
    )
    return [recorded, late]


def disposition(lot: Lot, state: ManufacturingState, spec: ReleaseSpecification) -> EventPayload:
    move(lot, state, {"qc-testing"}, "dispositioned")
    assert lot.target_car_t_cells is not None  # fixed when manufacturing started
    assessment = assess(lot.results, spec, lot.target_car_t_cells)
    if assessment.missing:
        raise RuleViolated(
            "all-release-tests-required",
            f"lot {lot.lot_id} cannot be dispositioned: no result yet for "
            f"{', '.join(assessment.missing)}",
            lot_id=lot.lot_id,
            missing=list(assessment.missing),
        )
    if assessment.failed:
        failed = tuple(v.test for v in assessment.failed)
        return LotOutOfSpecification(**ids(lot), failed_tests=failed, after_release=False)
    cell_dose = lot.results["cell_dose"].value
    assert cell_dose is not None
    return LotReleased(
        **ids(lot),
        coi_id=lot.coi_id,
        total_car_t_cells=cell_dose,
        conditional=bool(assessment.pending),
    )


def exceptional(
    lot: Lot, cmd: DecideExceptionalRelease, state: ManufacturingState
) -> list[EventPayload]:
    role, user = cmd.actor.role, cmd.actor.user_id
    if role not in DECIDERS:
        raise Forbidden(
            "exceptional-release-by-investigator-and-sponsor",
            f"role {role} may not decide an exceptional release: only the investigator and "
            "the sponsor decide",
            lot_id=lot.lot_id,
            role=role,
        )
    if lot.exceptional_release:
        raise RuleViolated(
            "exceptional-release-already-approved",
            f"lot {lot.lot_id} is already exceptionally released",
            lot_id=lot.lot_id,
        )
    if lot.disposition != "out-of-specification" or lot.stage in CLOSED:
        require_stage(lot, (), "exceptionally-released")
    not_withdrawn(lot, state, "exceptionally-released")
    if role in lot.decisions:
        raise RuleViolated(
            "one-decision-per-role",
            f"the {role} ({lot.decisions[role].user_id}) has already decided on lot {lot.lot_id}",
            lot_id=lot.lot_id,
            role=role,
        )
    other_role = "sponsor" if role == "investigator" else "investigator"
    other = lot.decisions.get(other_role)
    if other is not None and other.user_id == user:
        raise RuleViolated(
            "two-different-people",
            f"{user} already decided on lot {lot.lot_id} as the {other_role}: the "
            "investigator and the sponsor must be two different people",
            lot_id=lot.lot_id,
            user_id=user,
        )
    as_role: Literal["investigator", "sponsor"] = "sponsor" if role == "sponsor" else "investigator"
    decided = ExceptionalReleaseDecided(
        **ids(lot), decided_by=user, role=as_role, approved=cmd.approve, rationale=cmd.rationale
    )
    if not (cmd.approve and other is not None and other.approved):
        return [decided]
    by_role = {role: user, other_role: other.user_id}
    approved = ExceptionalReleaseApproved(
        **ids(lot), investigator_id=by_role["investigator"], sponsor_id=by_role["sponsor"]
    )
    return [decided, approved]
