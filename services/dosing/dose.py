"""The infused dose: whether the product's cell count may be given, and the dose level the
subject then counts at for dose escalation.

Rules, with their sources:
- ``infused-dose-within-tolerance`` (DOMAIN.md 1: the dose is cells/kg x body weight at
  dosing; the product's actual cell count is checked against that target within the trial's
  ``infused_dose_tolerance_percent``). One exception: a lot that is out of specification and
  was released exceptionally by the investigator and the sponsor (DOMAIN.md 2.3) may be given
  with fewer cells than the tolerance allows: it is the patient's only product, and the patient
  counts at the dose received. More cells than the tolerance allows are never given, exceptional
  release or not: a dose above the cohort's has not been cleared by the escalation.
- ``weight-change-needs-reason`` (DOMAIN.md 1: the dose is cells/kg x the weight at dosing,
  while manufacturing targeted cells/kg x the weight at collection): a weight at infusion that
  differs from the weight at collection by more than the trial file's
  ``infusion.weight_change_tolerance_percent`` (project default 10%) is accepted only with a
  reason, which the infusion's envelope keeps.
- ``cells-infused-within-released`` (DOMAIN.md 1: the product's actual cell count is the
  released lot's): no more cells are given than the lot's released count, up to the trial
  file's ``infusion.released_cells_tolerance_percent`` (project default 10%).
- The counted dose level (docs/decisions.md, decision 27): within tolerance, the
  cohort's level; below it, the highest configured level of the cohort's route whose cells/kg
  is at most the received cells/kg, or none when the received dose is below the lowest level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.dosing.bsa import deviation_percent, within_tolerance
from services.dosing.state import Cohort, Lot
from services.errors import RuleViolated

# A received dose equal to a level's cells/kg (up to binary floating point) counts at it.
_FLOAT_SLACK = 1e-9


@dataclass(frozen=True, slots=True)
class Level:
    level: str
    cells_per_kg: float
    route: str


@dataclass(frozen=True, slots=True)
class InfusedDose:
    received_cells_per_kg: float
    counted_dose_level: str | None


def counted_level(received_cells_per_kg: float, route: str, levels: Sequence[Level]) -> str | None:
    """The highest level of ``route`` whose cells/kg is at most the received cells/kg; None
    when the received dose is below every level of the route."""
    reached = [
        level
        for level in levels
        if level.route == route and level.cells_per_kg <= received_cells_per_kg * (1 + _FLOAT_SLACK)
    ]
    if not reached:
        return None
    return max(reached, key=lambda level: level.cells_per_kg).level


def infused_dose(
    *,
    subject_id: str,
    cells_infused: float,
    weight_kg: float,
    cohort: Cohort,
    lot: Lot,
    tolerance_percent: float,
    levels: Sequence[Level],
) -> InfusedDose:
    """The dose received and the level it counts at, or ``infused-dose-within-tolerance``."""
    target = cohort.cells_per_kg * weight_kg
    received = cells_infused / weight_kg
    if within_tolerance(cells_infused, target, tolerance_percent):
        return InfusedDose(received, cohort.dose_level)
    exceptional = lot.release == "exceptionally-released"
    if cells_infused < target and exceptional:
        return InfusedDose(received, counted_level(received, cohort.route, levels))
    if cells_infused > target:
        why = "more cells than the cohort's dose are never given, exceptional release or not"
    else:
        why = f"lot {lot.lot_id} has no exceptional release, the only way a lower dose may be given"
    raise RuleViolated(
        "infused-dose-within-tolerance",
        f"{cells_infused:.3g} CAR T cells differ by "
        f"{deviation_percent(cells_infused, target):.1f}% from the target {target:.3g} "
        f"({cohort.cells_per_kg:.3g} cells/kg x {weight_kg:g} kg, cohort "
        f"{cohort.cohort_id}); at most {tolerance_percent:g}% allowed: {why}",
        subject_id=subject_id,
        cells_infused=cells_infused,
        target_cells=target,
        cells_per_kg=cohort.cells_per_kg,
        weight_kg=weight_kg,
        tolerance_percent=tolerance_percent,
        lot_release=lot.release,
    )


def weight_change_explained(
    *,
    subject_id: str,
    weight_kg: float,
    lot: Lot,
    reason: str | None,
    tolerance_percent: float,
) -> None:
    collected = lot.weight_at_collection_kg
    if collected is None or reason is not None:
        return
    if within_tolerance(weight_kg, collected, tolerance_percent):
        return
    raise RuleViolated(
        "weight-change-needs-reason",
        f"subject {subject_id} weighs {weight_kg:g} kg at infusion, "
        f"{deviation_percent(weight_kg, collected):.1f}% from the {collected:g} kg at the "
        f"collection of lot {lot.lot_id}, on which its target was computed; more than "
        f"{tolerance_percent:g}% needs a reason",
        subject_id=subject_id,
        weight_kg=weight_kg,
        weight_at_collection_kg=collected,
        tolerance_percent=tolerance_percent,
    )


def cells_within_released(*, cells_infused: float, lot: Lot, tolerance_percent: float) -> None:
    released = lot.released_cells
    if released is None:
        return
    limit = released * (1 + tolerance_percent / 100)
    if cells_infused <= limit * (1 + _FLOAT_SLACK):
        return
    raise RuleViolated(
        "cells-infused-within-released",
        f"{cells_infused:.3g} CAR T cells are more than lot {lot.lot_id} released "
        f"({released:.3g}, at most {tolerance_percent:g}% more allowed for counting)",
        lot_id=lot.lot_id,
        cells_infused=cells_infused,
        released_cells=released,
        tolerance_percent=tolerance_percent,
    )
