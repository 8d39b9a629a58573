"""Dosing decider: conditioning, the bedside chain-of-identity check, the infusion. Pure: no I/O,
no clock; times come in the commands, every number of the trial comes from its configuration.

Rules, with their sources:
- Conditioning (DOMAIN.md 1): fludarabine and cyclophosphamide, each mg/m^2/day times the
  body-surface area by Mosteller's formula (N Engl J Med 1987;317:1098), for the configured
  number of days, recorded one day at a time, in order, never twice. The dose given must be
  within the trial file's ``conditioning.dose_tolerance_percent`` of the computed dose
  (project default 10%: the Hematology/Oncology Pharmacy Association's dose-rounding
  position, Fahrenbruch et al., J Oncol Pract 2018, which also cites the NCI's > 10%
  deviation criterion). When the day's creatinine clearance is given, fludarabine is expected
  reduced per the trial file's renal bands (project default CrCl 30 to below 70 mL/min: 20%
  less) and is not given below ``fludarabine_min_crcl_ml_per_min`` (project default 30
  mL/min: rule ``fludarabine-renal-function``), as the fludarabine phosphate US prescribing
  information advises.
- Conditioning starts only once the released product's availability is confirmed (DOMAIN.md
  2.2): its lot released (conditionally or not) or exceptionally released, and not out of
  specification since; and once eligibility was re-confirmed for that lot after manufacturing
  (DOMAIN.md 1, sequence of NCT04577326). Later days are the same regimen for the same lot.
- Bedside chain-of-identity check (DOMAIN.md 2.2 and 2.5: at least two identifiers, checked by
  two people): each person presents the subject id and two identifiers of the product, the
  chain-of-identity id and the lot id; all must be the released lot's. The two people must be
  different users. A mismatch is refused (``bedside-coi-mismatch``, nothing appended) and
  names the deviation command that documents the near miss as
  ``BedsideIdentityMismatchRecorded`` (decision 28).
- Infusion, day 0 (DOMAIN.md 1, 2.4-2.6): the subject enrolled and not withdrawn, not infused
  before; the lot is the subject's, released or exceptionally released and not out of
  specification since (a late positive sterility after a conditional release blocks it), and
  thawed; eligibility re-confirmed for it; every conditioning day given, for this lot; the
  bedside check done by two different people; the route is the cohort's; the product's actual
  cell count within the trial's ``infused_dose_tolerance_percent`` of cells/kg x weight, or
  below it for an exceptionally released lot, the subject then counting at the dose received
  (``services.dosing.dose``).
- Stopping-rule pause (DOMAIN.md 3): while a pause of the safety service's stopping rule
  stands (default: a grade 5 event at least possibly related), no conditioning day and no
  infusion are accepted, until the documented safety review resumes the trial. The bedside
  check is not dosing and stays possible.
- Time order (business times from the commands, kept in the payloads because deciders fold
  payloads only): each conditioning day after the one before; the infusion after the last
  conditioning day, with both bedside checks made at or before it. The calendar rules
  (conditioning days on calendar days, the infusion's window after conditioning and after
  thaw) are in ``services.dosing.timing``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events.dosing import (
    BedsideCoiVerified,
    BedsideIdentityMismatchRecorded,
    ConditioningDayRecorded,
    InfusionRecorded,
)
from events.enrollment import Route, SubjectId
from events.envelope import Actor
from events.manufacturing import LotId
from services.decider import Decider, NewEvent
from services.dosing.bsa import (
    RenalBand,
    conditioning_doses,
    deviation_percent,
    mosteller_bsa_m2,
    renal_reduction_percent,
    within_tolerance,
)
from services.dosing.dose import (
    Level,
    cells_within_released,
    infused_dose,
    weight_change_explained,
)
from services.dosing.preconditions import (
    bedside_checked_by_two,
    conditioning_complete,
    dosing_not_paused,
    eligibility_reconfirmed,
    lot_available,
    lot_of_subject,
    treatable_subject,
)
from services.dosing.state import DosingState, Lot, evolve, initial_state
from services.dosing.timing import (
    Timing,
    conditioning_on_a_new_calendar_day,
    infusion_in_window_after_conditioning,
    infusion_within_thaw_limit,
)
from services.enrollment.washout import WashoutRules, require_washout
from services.errors import NotFound, RuleViolated
from services.fields import Reason, identifier_field
from trial.config import TrialConfig

# ---------------------------------------------------------------- commands

PresentedCoiId = Annotated[
    str, identifier_field(64, "The chain-of-identity id as read from the bag's label")
]


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime


class RecordConditioningDay(Command):
    subject_id: SubjectId
    lot_id: LotId
    day: int = Field(ge=1, le=30)
    height_cm: float = Field(gt=0, le=272, allow_inf_nan=False)
    weight_kg: float = Field(gt=0, le=400, allow_inf_nan=False)
    fludarabine_mg: float = Field(gt=0, allow_inf_nan=False)
    cyclophosphamide_mg: float = Field(gt=0, allow_inf_nan=False)
    creatinine_clearance_ml_per_min: float | None = Field(
        default=None, gt=0, le=300, allow_inf_nan=False
    )
    """The day's creatinine clearance, when measured: fludarabine is then checked against the
    trial file's renal reductions."""


class VerifyBedsideCoi(Command):
    subject_id: SubjectId
    lot_id: LotId
    coi_id: PresentedCoiId
    actor: Actor
    """The person checking, injected by the server from the authenticated user."""


class RecordBedsideIdentityMismatch(Command):
    """The deviation a ``bedside-coi-mismatch`` refusal names: the same identifiers as the
    refused check, as they were read."""

    subject_id: SubjectId
    lot_id: LotId
    coi_id: PresentedCoiId
    actor: Actor
    """The person who made the check, injected by the server from the authenticated user."""


class RecordInfusion(Command):
    subject_id: SubjectId
    lot_id: LotId
    weight_kg: float = Field(gt=0, le=400, allow_inf_nan=False)
    cells_infused: float = Field(gt=0, allow_inf_nan=False)
    route: Route
    reason: Reason | None = None
    """Why the weight at infusion differs from the weight at collection beyond the trial's
    tolerance (kept in the envelope's ``reason``); not needed otherwise."""


IDENTITY_DEVIATION_COMMAND = "record-bedside-identity-mismatch"

COMMANDS: dict[str, type[Command]] = {
    "record-conditioning-day": RecordConditioningDay,
    "verify-bedside-coi": VerifyBedsideCoi,
    "record-bedside-identity-mismatch": RecordBedsideIdentityMismatch,
    "record-infusion": RecordInfusion,
}


# ---------------------------------------------------------------- the trial's numbers


@dataclass(frozen=True, slots=True)
class DosingRules:
    fludarabine_mg_per_m2: float
    cyclophosphamide_mg_per_m2: float
    conditioning_days: int
    conditioning_dose_tolerance_percent: float
    infused_dose_tolerance_percent: float
    dose_levels: tuple[Level, ...] = ()
    washout: WashoutRules | None = None
    """The trial file's washout before the infusion; None: none checked."""
    timing: Timing = field(default_factory=Timing)
    weight_change_tolerance_percent: float = 10
    released_cells_tolerance_percent: float = 10
    renal_bands: tuple[RenalBand, ...] = ()
    fludarabine_min_crcl: float = 0

    @classmethod
    def of(cls, trial: TrialConfig) -> DosingRules:
        conditioning = trial.conditioning
        return cls(
            fludarabine_mg_per_m2=conditioning.fludarabine_mg_per_m2_per_day,
            cyclophosphamide_mg_per_m2=conditioning.cyclophosphamide_mg_per_m2_per_day,
            conditioning_days=conditioning.days,
            conditioning_dose_tolerance_percent=conditioning.dose_tolerance_percent,
            infused_dose_tolerance_percent=trial.infused_dose_tolerance_percent,
            dose_levels=tuple(
                Level(dose.level, dose.cells_per_kg, dose.route) for dose in trial.dose_levels
            ),
            washout=WashoutRules.of(trial),
            timing=Timing.of(trial),
            weight_change_tolerance_percent=trial.infusion.weight_change_tolerance_percent,
            released_cells_tolerance_percent=trial.infusion.released_cells_tolerance_percent,
            renal_bands=tuple(
                RenalBand(band.crcl_min_ml_per_min, band.crcl_below_ml_per_min, band.reduce_percent)
                for band in conditioning.fludarabine_renal_reductions
            ),
            fludarabine_min_crcl=conditioning.fludarabine_min_crcl_ml_per_min,
        )


def make_decider(trial: TrialConfig) -> Decider[DosingState]:
    rules = DosingRules.of(trial)
    decide_: Callable[[Command, DosingState], list[NewEvent]] = partial(decide, rules=rules)
    return Decider(initial_state, decide_, evolve)


# ---------------------------------------------------------------- decide


def decide(command: Command, state: DosingState, *, rules: DosingRules) -> list[NewEvent]:
    match command:
        case RecordConditioningDay():
            return _record_conditioning_day(command, state, rules)
        case VerifyBedsideCoi():
            return _verify_bedside_coi(command, state)
        case RecordBedsideIdentityMismatch():
            return _record_identity_mismatch(command, state)
        case RecordInfusion():
            return _record_infusion(command, state, rules)
    raise TypeError(f"dosing does not handle {type(command).__name__}")


def subject_stream(subject_id: str) -> str:
    return f"subject-{subject_id}"


def _record_conditioning_day(
    cmd: RecordConditioningDay, state: DosingState, rules: DosingRules
) -> list[NewEvent]:
    subject = treatable_subject(state, cmd.subject_id, "conditioning cannot be recorded")
    dosing_not_paused(state, subject.subject_id, "conditioning cannot be given")
    lot = state.lot(cmd.lot_id)
    lot_of_subject(lot, subject)
    expected_day = len(subject.conditioning_days) + 1
    if cmd.day > rules.conditioning_days:
        raise RuleViolated(
            "conditioning-days-configured",
            f"conditioning has {rules.conditioning_days} days in this trial; "
            f"day {cmd.day} cannot be recorded for subject {subject.subject_id}",
            subject_id=subject.subject_id,
            day=cmd.day,
            configured_days=rules.conditioning_days,
        )
    if cmd.day != expected_day:
        done = list(subject.conditioning_days)
        raise RuleViolated(
            "conditioning-days-in-order",
            f"subject {subject.subject_id} has conditioning days {done} recorded; "
            f"the next one is day {expected_day}, not day {cmd.day}",
            subject_id=subject.subject_id,
            day=cmd.day,
            expected_day=expected_day,
            recorded_days=done,
        )
    if subject.conditioning and cmd.occurred_at <= subject.conditioning[-1].given_at:
        previous = subject.conditioning[-1]
        raise RuleViolated(
            "conditioning-days-in-order",
            f"day {cmd.day} of subject {subject.subject_id} at {cmd.occurred_at.isoformat()} "
            f"is not after day {previous.day} at {previous.given_at.isoformat()}",
            subject_id=subject.subject_id,
            day=cmd.day,
            given_at=cmd.occurred_at.isoformat(),
            previous_day=previous.day,
            previous_given_at=previous.given_at.isoformat(),
        )
    if subject.conditioning:
        conditioning_on_a_new_calendar_day(
            subject.subject_id, cmd.day, cmd.occurred_at, subject.conditioning[-1], rules.timing
        )
    if subject.conditioning_lot is not None and subject.conditioning_lot != lot.lot_id:
        raise RuleViolated(
            "conditioning-for-one-lot",
            f"conditioning of subject {subject.subject_id} started for lot "
            f"{subject.conditioning_lot}, not {lot.lot_id}",
            subject_id=subject.subject_id,
            lot_id=lot.lot_id,
            conditioning_lot=subject.conditioning_lot,
        )
    if cmd.day == 1:
        consequence = "conditioning cannot start"
        lot_available(lot, consequence)
        eligibility_reconfirmed(subject, lot, consequence)
    _conditioning_doses_within_tolerance(cmd, rules)
    payload = ConditioningDayRecorded(
        subject_id=cmd.subject_id,
        lot_id=cmd.lot_id,
        day=cmd.day,
        height_cm=cmd.height_cm,
        weight_kg=cmd.weight_kg,
        fludarabine_mg=cmd.fludarabine_mg,
        cyclophosphamide_mg=cmd.cyclophosphamide_mg,
        given_at=cmd.occurred_at,
        creatinine_clearance_ml_per_min=cmd.creatinine_clearance_ml_per_min,
    )
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]


def _conditioning_doses_within_tolerance(cmd: RecordConditioningDay, rules: DosingRules) -> None:
    crcl = cmd.creatinine_clearance_ml_per_min
    if crcl is not None and crcl < rules.fludarabine_min_crcl:
        raise RuleViolated(
            "fludarabine-renal-function",
            f"subject {cmd.subject_id} has a creatinine clearance of {crcl:g} mL/min; no "
            f"fludarabine is given below {rules.fludarabine_min_crcl:g} mL/min in this trial",
            subject_id=cmd.subject_id,
            creatinine_clearance_ml_per_min=crcl,
            min_crcl_ml_per_min=rules.fludarabine_min_crcl,
        )
    bsa = mosteller_bsa_m2(cmd.height_cm, cmd.weight_kg)
    computed = conditioning_doses(
        bsa, rules.fludarabine_mg_per_m2, rules.cyclophosphamide_mg_per_m2
    )
    reduction = renal_reduction_percent(crcl, rules.renal_bands)
    tolerance = rules.conditioning_dose_tolerance_percent
    for drug, given, target, per_m2, reduced in (
        (
            "fludarabine",
            cmd.fludarabine_mg,
            computed.fludarabine_mg * (1 - reduction / 100),
            rules.fludarabine_mg_per_m2,
            reduction,
        ),
        (
            "cyclophosphamide",
            cmd.cyclophosphamide_mg,
            computed.cyclophosphamide_mg,
            rules.cyclophosphamide_mg_per_m2,
            0.0,
        ),
    ):
        if not within_tolerance(given, target, tolerance):
            renal = f", less {reduced:g}% for a CrCl of {crcl:g} mL/min" if reduced else ""
            details = (
                {"renal_reduction_percent": reduced, "creatinine_clearance_ml_per_min": crcl}
                if reduced
                else {}
            )
            raise RuleViolated(
                "conditioning-dose-within-tolerance",
                f"{drug} {given:g} mg differs by {deviation_percent(given, target):.1f}% from "
                f"the computed {target:.1f} mg ({per_m2:g} mg/m^2 x BSA {bsa:.2f} m^2 for "
                f"{cmd.height_cm:g} cm, {cmd.weight_kg:g} kg{renal}); at most {tolerance:g}% "
                f"allowed",
                subject_id=cmd.subject_id,
                drug=drug,
                given_mg=given,
                computed_mg=round(target, 3),
                bsa_m2=round(bsa, 4),
                tolerance_percent=tolerance,
                **details,
            )


def _lot_with_coi(lot: Lot, consequence: str) -> Lot:
    if lot.coi_id is None or lot.subject_id is None:
        raise NotFound(
            "lot-coi-must-be-known",
            f"lot {lot.lot_id} has no chain-of-identity id on record (last manufacturing event: "
            f"{lot.last_manufacturing_event or 'none'}); {consequence}",
            lot_id=lot.lot_id,
        )
    return lot


def _mismatched(cmd: VerifyBedsideCoi | RecordBedsideIdentityMismatch, lot: Lot) -> list[str]:
    """The presented identifiers that differ from the lot's chain of identity."""
    return [
        name
        for name, presented, expected in (
            ("subject_id", cmd.subject_id, lot.subject_id),
            ("coi_id", cmd.coi_id, lot.coi_id),
        )
        if presented != expected
    ]


def _matches_chain_of_identity(cmd: VerifyBedsideCoi, lot: Lot) -> None:
    # The expected values are never echoed: the check is only worth something if the person
    # reads the identifiers off the bag and the wristband.
    mismatched = _mismatched(cmd, lot)
    if mismatched:
        raise RuleViolated(
            "bedside-coi-mismatch",
            f"bedside check of lot {lot.lot_id} by {cmd.actor.user_id}: the presented "
            f"{' and '.join(mismatched)} ({', '.join(getattr(cmd, f) for f in mismatched)}) "
            f"do not match the lot's chain of identity; it cannot be infused. Record the "
            f"deviation with {IDENTITY_DEVIATION_COMMAND} and the same identifiers",
            lot_id=lot.lot_id,
            mismatched=mismatched,
            presented={name: getattr(cmd, name) for name in mismatched},
            deviation_command=IDENTITY_DEVIATION_COMMAND,
        )


def _verify_bedside_coi(cmd: VerifyBedsideCoi, state: DosingState) -> list[NewEvent]:
    lot = state.lot(cmd.lot_id)
    # A bag read against the wrong wristband is a mismatch whoever the wristband names, a
    # patient of the trial or not, so the identifiers are compared first.
    if lot.coi_id is not None and lot.subject_id is not None:
        _matches_chain_of_identity(cmd, lot)
    subject = treatable_subject(state, cmd.subject_id, "no bedside check can be recorded")
    lot = _lot_with_coi(lot, "the bedside check cannot be made")
    checked_by = subject.checked_by(lot.lot_id)
    if cmd.actor.user_id in checked_by:
        raise RuleViolated(
            "bedside-coi-by-two-people",
            f"{cmd.actor.user_id} already checked lot {lot.lot_id} at the bedside; "
            f"the second check must be made by a different person",
            lot_id=lot.lot_id,
            verified_by=list(checked_by),
        )
    if len(checked_by) >= 2:
        raise RuleViolated(
            "bedside-coi-by-two-people",
            f"lot {lot.lot_id} was already checked at the bedside by {' and '.join(checked_by)}",
            lot_id=lot.lot_id,
            verified_by=list(checked_by),
        )
    payload = BedsideCoiVerified(
        subject_id=cmd.subject_id,
        lot_id=cmd.lot_id,
        coi_id=cmd.coi_id,
        verified_by=cmd.actor.user_id,
        verified_at=cmd.occurred_at,
    )
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]


def _record_identity_mismatch(
    cmd: RecordBedsideIdentityMismatch, state: DosingState
) -> list[NewEvent]:
    """A bedside chain-of-identity mismatch is a deviation documented as a fact (decision 28):
    it records what was presented, by whom, when, on the stream of the subject the lot was made
    for. It must be a mismatch: identifiers that match are a check, not a deviation."""
    lot = _lot_with_coi(state.lot(cmd.lot_id), "no identity mismatch can be recorded for it")
    mismatched = _mismatched(cmd, lot)
    if not mismatched:
        raise RuleViolated(
            "identity-mismatch-must-differ",
            f"the identifiers presented for lot {lot.lot_id} by {cmd.actor.user_id} match its "
            f"chain of identity: there is no mismatch to record; verify-bedside-coi records "
            f"the check",
            lot_id=lot.lot_id,
        )
    assert lot.subject_id is not None  # _lot_with_coi
    payload = BedsideIdentityMismatchRecorded(
        subject_id=lot.subject_id,
        lot_id=lot.lot_id,
        presented_subject_id=cmd.subject_id,
        presented_coi_id=cmd.coi_id,
        mismatched=tuple(mismatched),  # type: ignore[arg-type]
        detected_by=cmd.actor.user_id,
        detected_at=cmd.occurred_at,
    )
    return [NewEvent(subject_stream(lot.subject_id), payload, cmd.occurred_at)]


def _record_infusion(cmd: RecordInfusion, state: DosingState, rules: DosingRules) -> list[NewEvent]:
    subject = treatable_subject(state, cmd.subject_id, "no infusion can be recorded")
    dosing_not_paused(state, subject.subject_id, "the product cannot be infused")
    cohort = state.cohorts.get(subject.cohort_id or "")
    if cohort is None:
        raise NotFound(
            "cohort-must-be-open",
            f"cohort {subject.cohort_id} of subject {subject.subject_id} is not open",
            subject_id=subject.subject_id,
            cohort_id=subject.cohort_id,
        )
    lot = state.lot(cmd.lot_id)
    lot_of_subject(lot, subject)
    lot_available(lot, "it cannot be infused")
    if not lot.thawed:
        raise RuleViolated(
            "lot-must-be-thawed",
            f"lot {lot.lot_id} has not been thawed; it cannot be infused",
            lot_id=lot.lot_id,
        )
    eligibility_reconfirmed(subject, lot, "no infusion can be recorded")
    conditioning_complete(subject, lot, rules.conditioning_days)
    last_day = subject.conditioning[-1]
    if cmd.occurred_at <= last_day.given_at:
        raise RuleViolated(
            "infusion-after-conditioning",
            f"infusion at {cmd.occurred_at.isoformat()} is not after conditioning day "
            f"{last_day.day} at {last_day.given_at.isoformat()}",
            subject_id=subject.subject_id,
            infused_at=cmd.occurred_at.isoformat(),
            last_conditioning_day_at=last_day.given_at.isoformat(),
        )
    infusion_in_window_after_conditioning(
        subject.subject_id, cmd.occurred_at, last_day, rules.timing
    )
    infusion_within_thaw_limit(lot, cmd.occurred_at, rules.timing)
    bedside_checked_by_two(subject, lot, before=cmd.occurred_at)
    if rules.washout is not None:
        last_doses = state.last_doses.get(subject.subject_id, {})
        require_washout(subject.subject_id, last_doses, "infusion", cmd.occurred_at, rules.washout)
    if cmd.route != cohort.route:
        raise RuleViolated(
            "route-must-match-cohort",
            f"cohort {cohort.cohort_id} is given {cohort.route}; "
            f"the {cmd.route} route cannot be recorded",
            cohort_id=cohort.cohort_id,
            cohort_route=cohort.route,
            route=cmd.route,
        )
    weight_change_explained(
        subject_id=subject.subject_id,
        weight_kg=cmd.weight_kg,
        lot=lot,
        reason=cmd.reason,
        tolerance_percent=rules.weight_change_tolerance_percent,
    )
    cells_within_released(
        cells_infused=cmd.cells_infused,
        lot=lot,
        tolerance_percent=rules.released_cells_tolerance_percent,
    )
    dose = infused_dose(
        subject_id=subject.subject_id,
        cells_infused=cmd.cells_infused,
        weight_kg=cmd.weight_kg,
        cohort=cohort,
        lot=lot,
        tolerance_percent=rules.infused_dose_tolerance_percent,
        levels=rules.dose_levels,
    )
    payload = InfusionRecorded(
        subject_id=cmd.subject_id,
        lot_id=cmd.lot_id,
        cohort_id=cohort.cohort_id,
        dose_level=cohort.dose_level,
        target_cells_per_kg=cohort.cells_per_kg,
        weight_kg=cmd.weight_kg,
        cells_infused=cmd.cells_infused,
        route=cmd.route,
        infused_at=cmd.occurred_at,
        received_cells_per_kg=dose.received_cells_per_kg,
        counted_dose_level=dose.counted_dose_level,
    )
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]
