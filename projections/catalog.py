"""Every projection trialops serves and replays, by name, for one trial's configuration."""

from __future__ import annotations

import hashlib

from projections import (
    cohort_occupancy,
    dose_escalation,
    manufacturing_pipeline,
    patient_timeline,
    safety_overview,
)
from projections.base import Projection
from services.snapshots import sources_digest
from trial.config import TrialConfig, load_trial

FOLD_PACKAGES = ("events", "services", "trial", "projections")
"""The sources a projection's table contents depend on: the events, the services' ``evolve``
and rules the folds call, the trial's configuration, the folds themselves."""


def build(trial: TrialConfig | None = None) -> dict[str, Projection]:
    trial = trial or load_trial()
    projections = (
        cohort_occupancy.PROJECTION,
        dose_escalation.make(trial),
        manufacturing_pipeline.PROJECTION,
        safety_overview.make(trial),
        patient_timeline.make(trial),
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


def fold_version(trial: TrialConfig) -> str:
    """What the worker's tables were folded by: the sources of :data:`FOLD_PACKAGES` and the
    trial's configuration (decision 55). The worker's consumer group and its changelogs carry
    it, so a worker whose folds or trial file changed folds the log again into new tables
    instead of serving tables an older fold wrote, which the replay would contradict."""
    digest = hashlib.sha256(sources_digest(FOLD_PACKAGES).encode())
    digest.update(trial.model_dump_json().encode())
    return digest.hexdigest()[:12]
