"""The trial's numbers dosing decides with, read once from the trial file."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.dosing.bsa import RenalBand
from services.dosing.dose import Level
from services.dosing.timing import Timing
from services.enrollment.washout import WashoutRules
from trial.config import TrialConfig


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
