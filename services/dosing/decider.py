"""Dosing decider: conditioning, the bedside chain-of-identity check, the infusion. Pure: no I/O,
no clock; times come in the commands, every number of the trial comes from its configuration.
The commands are in ``commands.py``, conditioning in ``conditioning.py``, the bedside check in
``bedside.py``, the infused dose in ``dose.py``, the calendar in ``timing.py``; the infusion's
order of checks is here.

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
from functools import partial

from events.dosing import InfusionRecorded
from services.decider import Decider, NewEvent
from services.dosing.bedside import record_identity_mismatch, verify_bedside_coi
from services.dosing.commands import (
    COMMANDS,
    IDENTITY_DEVIATION_COMMAND,
    Command,
    RecordBedsideIdentityMismatch,
    RecordConditioningDay,
    RecordInfusion,
    VerifyBedsideCoi,
    subject_stream,
)
from services.dosing.conditioning import record_conditioning_day
from services.dosing.dose import cells_within_released, infused_dose, weight_change_explained
from services.dosing.preconditions import (
    bedside_checked_by_two,
    conditioning_complete,
    dosing_not_paused,
    eligibility_reconfirmed,
    lot_available,
    lot_of_subject,
    treatable_subject,
)
from services.dosing.rules import DosingRules
from services.dosing.state import DosingState, evolve, initial_state
from services.dosing.timing import infusion_in_window_after_conditioning, infusion_within_thaw_limit
from services.enrollment.washout import require_washout
from services.errors import NotFound, RuleViolated
from trial.config import TrialConfig

# The commands and the trial's numbers live beside this module; routes, clients and tests
# import them from here.
__all__ = [
    "COMMANDS",
    "IDENTITY_DEVIATION_COMMAND",
    "DosingRules",
    "RecordBedsideIdentityMismatch",
    "RecordConditioningDay",
    "RecordInfusion",
    "VerifyBedsideCoi",
    "decide",
    "make_decider",
    "subject_stream",
]

# ---------------------------------------------------------------- decide


def make_decider(trial: TrialConfig) -> Decider[DosingState]:
    rules = DosingRules.of(trial)
    decide_: Callable[[Command, DosingState], list[NewEvent]] = partial(decide, rules=rules)
    return Decider(initial_state, decide_, evolve)


def decide(command: Command, state: DosingState, *, rules: DosingRules) -> list[NewEvent]:
    match command:
        case RecordConditioningDay():
            return record_conditioning_day(command, state, rules)
        case VerifyBedsideCoi():
            return verify_bedside_coi(command, state)
        case RecordBedsideIdentityMismatch():
            return record_identity_mismatch(command, state)
        case RecordInfusion():
            return _record_infusion(command, state, rules)
    raise TypeError(f"dosing does not handle {type(command).__name__}")


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
