"""Conditioning, one day at a time (rules and sources in ``services.dosing.decider``)."""

from __future__ import annotations

from events.dosing import ConditioningDayRecorded
from services.decider import NewEvent
from services.dosing.bsa import (
    conditioning_doses,
    deviation_percent,
    mosteller_bsa_m2,
    renal_reduction_percent,
    within_tolerance,
)
from services.dosing.commands import RecordConditioningDay, subject_stream
from services.dosing.preconditions import (
    dosing_not_paused,
    eligibility_reconfirmed,
    lot_available,
    lot_of_subject,
    treatable_subject,
)
from services.dosing.rules import DosingRules
from services.dosing.state import DosingState
from services.dosing.timing import conditioning_on_a_new_calendar_day
from services.errors import RuleViolated


def record_conditioning_day(
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
