"""Every projection trialops serves and replays, by name, for one trial's configuration."""

from __future__ import annotations

from projections import (
    cohort_occupancy,
    dose_escalation,
    manufacturing_pipeline,
    patient_timeline,
    safety_overview,
)
from projections.base import Projection
from trial.config import TrialConfig, load_trial


def build(trial: TrialConfig | None = None) -> dict[str, Projection]:
    trial = trial or load_trial()
    projections = (
        cohort_occupancy.PROJECTION,
        dose_escalation.make(trial),
        manufacturing_pipeline.PROJECTION,
        safety_overview.make(trial),
        patient_timeline.PROJECTION,
    )
    return {p.name: p for p in projections}


NAMES = (
    cohort_occupancy.NAME,
    dose_escalation.NAME,
    manufacturing_pipeline.NAME,
    safety_overview.NAME,
    patient_timeline.NAME,
)


def get(name: str, trial: TrialConfig | None = None) -> Projection:
    if name not in NAMES:
        raise KeyError(f"unknown projection {name!r}; known: {', '.join(sorted(NAMES))}")
    return build(trial)[name]
