"""Body-surface area, conditioning doses and dose tolerances: the arithmetic of dosing.

Pure functions of numbers; the rules that use them are in ``services.dosing.decider``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A value exactly at the tolerance limit is accepted; this slack only absorbs binary floating
# point (e.g. 0.1 + 0.2), never a real difference in a dose.
_FLOAT_SLACK = 1e-9


def mosteller_bsa_m2(height_cm: float, weight_kg: float) -> float:
    """Body-surface area in m^2 by Mosteller's formula: sqrt(height_cm x weight_kg / 3600).

    Source: Mosteller RD, "Simplified calculation of body-surface area", N Engl J Med
    1987;317:1098.
    """
    if height_cm <= 0 or weight_kg <= 0:
        raise ValueError(f"height {height_cm} cm and weight {weight_kg} kg must be positive")
    return math.sqrt(height_cm * weight_kg / 3600.0)


@dataclass(frozen=True, slots=True)
class ConditioningDoses:
    """One day's lymphodepleting doses in mg for one subject."""

    fludarabine_mg: float
    cyclophosphamide_mg: float


def conditioning_doses(
    bsa_m2: float, fludarabine_mg_per_m2: float, cyclophosphamide_mg_per_m2: float
) -> ConditioningDoses:
    """The day's doses: each drug's mg/m^2/day times the body-surface area (DOMAIN.md section 1:
    fludarabine 30 mg/m^2/day and cyclophosphamide 300 mg/m^2/day for this trial)."""
    return ConditioningDoses(
        fludarabine_mg=fludarabine_mg_per_m2 * bsa_m2,
        cyclophosphamide_mg=cyclophosphamide_mg_per_m2 * bsa_m2,
    )


def deviation_percent(actual: float, target: float) -> float:
    """How far ``actual`` is from ``target``, in percent of the target (always >= 0)."""
    return abs(actual - target) / target * 100.0


def within_tolerance(actual: float, target: float, tolerance_percent: float) -> bool:
    """True when ``actual`` differs from ``target`` by at most ``tolerance_percent`` of the
    target; the limit itself is inside."""
    allowed = target * tolerance_percent / 100.0
    difference = abs(actual - target)
    return difference <= allowed or math.isclose(difference, allowed, rel_tol=_FLOAT_SLACK)


@dataclass(frozen=True, slots=True)
class RenalBand:
    """Creatinine clearance from ``crcl_min`` (included) to ``crcl_below`` (excluded), in
    mL/min: fludarabine reduced by ``reduce_percent``."""

    crcl_min: float
    crcl_below: float
    reduce_percent: float


def renal_reduction_percent(crcl_ml_per_min: float | None, bands: tuple[RenalBand, ...]) -> float:
    """How much fludarabine is reduced for this creatinine clearance: the percent of the band it
    falls in, 0 outside every band or when the clearance is not given. Fludarabine is cleared by
    the kidneys; the bands are the trial file's (``conditioning.fludarabine_renal_reductions``,
    project default 30 to below 70 mL/min: 20% less, as the fludarabine phosphate US
    prescribing information advises)."""
    if crcl_ml_per_min is None:
        return 0.0
    for band in bands:
        if band.crcl_min <= crcl_ml_per_min < band.crcl_below:
            return band.reduce_percent
    return 0.0
