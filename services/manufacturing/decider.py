"""Manufacturing decider: apheresis, chain of identity and custody, the lot's stages, QC release
and exceptional release. Pure: no I/O, no clock; ids and times come in with the command.

Rules (DOMAIN.md section 2 items 2-4):
- Apheresis only for an enrolled subject who is not withdrawn (facts followed from enrollment),
  once every prior therapy's washout before leukapheresis is complete (``washout-complete``:
  the trial file's ``washout``, see ``services.enrollment.washout``).
  It opens a new lot with two distinct identifiers, a chain-of-identity id (COI) and the bag's
  DIN, each unique across lots. A subject has one lot at a time: a new collection (a new lot)
  only follows a manufacturing failure.
- Every hand-off (custody transfer, receipt of the apheresis, shipment, receipt at the site) and
  the thaw present both identifiers, which must match the lot's; a hand-off is from the current
  custodian to another party and records where, when and at what temperature.
- The lot's stages follow DOMAIN.md 2.3 (see ``state``); any other move is refused naming the
  current and the requested stage. A withdrawn subject's lot goes no further toward infusion:
  only custody, QC results and a manufacturing failure may still be recorded.
- Manufacturing fixes the lot's target cell count when activation starts: the cohort's dose
  (cells/kg) x the subject's weight at collection, or the manufacturing order's own target.
- QC results, disposition and the exceptional release (two documented decisions, investigator
  and sponsor, two different people, either order): see ``release``; each result against the
  trial file's release specification: see ``qc``.
"""

from __future__ import annotations

from events.manufacturing import (
    ApheresisCollected,
    ApheresisReceived,
    LotCryopreserved,
    LotHarvested,
    LotReceivedAtSite,
    LotShipped,
    LotThawed,
    ManufacturingFailed,
    ManufacturingStarted,
    ManufacturingStepStarted,
)
from events.registry import EventPayload
from services.decider import Decider, NewEvent
from services.enrollment.washout import WashoutRules, require_washout
from services.errors import NotFound, RuleViolated
from services.manufacturing import custody, release
from services.manufacturing.commands import (
    Command,
    DecideExceptionalRelease,
    DispositionLot,
    Handoff,
    IdentityCheck,
    LotCommand,
    ReceiveApheresis,
    ReceiveLotAtSite,
    RecordApheresis,
    RecordCryopreservation,
    RecordCustodyTransfer,
    RecordHarvest,
    RecordManufacturingFailure,
    RecordQcResult,
    ShipLot,
    StartManufacturing,
    ThawLot,
)
from services.manufacturing.stages import (
    BEFORE_THAW,
    STEP_FOLLOWS,
    ids,
    move,
    require_stage,
    require_usable,
)
from services.manufacturing.state import (
    Lot,
    ManufacturingState,
    describe,
    evolve,
    initial_state,
)
from trial.config import ReleaseSpecification, TrialConfig


def make_decider(trial: TrialConfig) -> Decider[ManufacturingState]:
    spec, washout = trial.release, WashoutRules.of(trial)
    return Decider(
        initial_state, lambda command, state: decide(command, state, spec, washout), evolve
    )


def decide(
    command: Command,
    state: ManufacturingState,
    spec: ReleaseSpecification,
    washout: WashoutRules,
) -> list[NewEvent]:
    if isinstance(command, RecordApheresis):
        return _collect(command, state, washout)
    if not isinstance(command, LotCommand):
        raise TypeError(f"manufacturing does not handle {type(command).__name__}")
    lot = state.lots.get(command.lot_id)
    if lot is None:
        raise NotFound("lot-must-exist", f"no lot {command.lot_id}", lot_id=command.lot_id)
    if isinstance(command, IdentityCheck):
        custody.check_identity(lot, command.coi_id, command.din)
    match command:
        case RecordCustodyTransfer():
            return [_on(lot, command, custody.handoff(lot, command))]
        case ReceiveApheresis():
            move(lot, state, {"collected"}, "received")
            return _handed_over(lot, command, ApheresisReceived(**ids(lot)))
        case StartManufacturing():
            return [_on(lot, command, _start(lot, command, state))]
        case RecordHarvest():
            move(lot, state, {"expansion"}, "harvested")
            payload = LotHarvested(**ids(lot), total_viable_cells=command.total_viable_cells)
            return [_on(lot, command, payload)]
        case RecordQcResult():
            return [_on(lot, command, p) for p in release.qc_result(lot, command, spec)]
        case DispositionLot():
            return [_on(lot, command, release.disposition(lot, state, spec))]
        case DecideExceptionalRelease():
            return [_on(lot, command, p) for p in release.exceptional(lot, command, state)]
        case RecordCryopreservation():
            move(lot, state, {"released", "out-of-specification"}, "cryopreserved")
            require_usable(lot, "cryopreserved")
            return [_on(lot, command, LotCryopreserved(**ids(lot), bag_count=command.bag_count))]
        case ShipLot():
            move(lot, state, {"cryopreserved"}, "shipped")
            require_usable(lot, "shipped")
            custody.check_destination(lot, command.destination_site, state)
            shipped = LotShipped(**ids(lot), destination_site=command.destination_site)
            return _handed_over(lot, command, shipped)
        case ReceiveLotAtSite():
            move(lot, state, {"shipped"}, "received-at-site")
            custody.check_arrival(lot, command.site_id)
            return _handed_over(
                lot, command, LotReceivedAtSite(**ids(lot), site_id=command.site_id)
            )
        case ThawLot():
            move(lot, state, {"received-at-site"}, "thawed")
            require_usable(lot, "thawed")
            return [_on(lot, command, LotThawed(**ids(lot), thawed_at=command.occurred_at))]
        case RecordManufacturingFailure():
            require_stage(lot, BEFORE_THAW, "failed")
            return [
                _on(lot, command, ManufacturingFailed(**ids(lot), reason_code=command.reason_code))
            ]
    raise TypeError(f"manufacturing does not handle {type(command).__name__}")


def lot_stream(lot_id: str) -> str:
    return f"lot-{lot_id}"


def _on(lot: Lot, command: Command, payload: EventPayload) -> NewEvent:
    return NewEvent(lot_stream(lot.lot_id), payload, command.occurred_at)


def _handed_over(lot: Lot, command: Handoff, payload: EventPayload) -> list[NewEvent]:
    """A stage reached by a hand-off: the custody transfer, then the new stage."""
    return [_on(lot, command, custody.handoff(lot, command)), _on(lot, command, payload)]


# ---------------------------------------------------------------- apheresis


def _collect(
    cmd: RecordApheresis, state: ManufacturingState, washout: WashoutRules
) -> list[NewEvent]:
    if cmd.lot_id in state.lots:
        raise RuleViolated("lot-id-unique", f"lot {cmd.lot_id} already exists", lot_id=cmd.lot_id)
    subject = cmd.subject_id
    if subject not in state.enrolled_in:
        raise RuleViolated(
            "subject-must-be-enrolled",
            f"subject {subject} is not enrolled: apheresis is collected only from an enrolled "
            "subject",
            subject_id=subject,
        )
    if subject in state.withdrawn:
        raise RuleViolated(
            "subject-withdrawn",
            f"subject {subject} is withdrawn: no apheresis may be collected",
            subject_id=subject,
        )
    custody.check_new_identifiers(cmd.coi_id, cmd.din, state)
    active = [lot for lot in state.lots_of(subject) if lot.stage != "failed"]
    if active:
        raise RuleViolated(
            "one-lot-at-a-time",
            f"subject {subject} already has lot {active[0].lot_id} "
            f"({describe(active[0].stage)}): a new collection follows only a manufacturing "
            "failure",
            subject_id=subject,
            lot_id=active[0].lot_id,
            current=active[0].stage,
        )
    require_washout(
        subject, state.last_doses.get(subject, {}), "leukapheresis", cmd.occurred_at, washout
    )
    payload = ApheresisCollected(
        lot_id=cmd.lot_id,
        subject_id=subject,
        coi_id=cmd.coi_id,
        din=cmd.din,
        collection_site=cmd.collection_site,
        volume_ml=cmd.volume_ml,
        total_nucleated_cells=cmd.total_nucleated_cells,
        cd3_cells=cmd.cd3_cells,
        weight_kg=cmd.weight_kg,
    )
    return [NewEvent(lot_stream(cmd.lot_id), payload, cmd.occurred_at)]


# ---------------------------------------------------------------- manufacturing steps


def _start(lot: Lot, cmd: StartManufacturing, state: ManufacturingState) -> EventPayload:
    move(lot, state, {STEP_FOLLOWS[cmd.step]}, cmd.step)
    if cmd.step != "activation":
        return ManufacturingStepStarted(**ids(lot), step=cmd.step)
    if cmd.target_car_t_cells is not None:
        return ManufacturingStarted(
            **ids(lot),
            target_car_t_cells=cmd.target_car_t_cells,
            target_basis="manufacturing-order",
        )
    cohort = state.enrolled_in.get(lot.subject_id)
    dose = state.cohort_dose.get(cohort or "")
    if dose is None:
        raise RuleViolated(
            "target-dose-known",
            f"the dose of cohort {cohort} of subject {lot.subject_id} is not known: give "
            "target_car_t_cells from the manufacturing order",
            lot_id=lot.lot_id,
            cohort_id=cohort,
        )
    return ManufacturingStarted(
        **ids(lot), target_car_t_cells=dose * lot.weight_kg, target_basis="cohort-dose-x-weight"
    )
