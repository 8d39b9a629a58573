"""Every projection trialops serves and replays, by name, for one trial's configuration."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

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


def build_trials(trials: Mapping[str, TrialConfig]) -> dict[str, dict[str, Projection]]:
    """Per trial id, that trial's projections by name, each built from its own trial file (its
    dose levels, DLT window, escalation design): a deployment of several trials folds each
    event with its own trial's (decision 61)."""
    return {trial_id: build(trial) for trial_id, trial in trials.items()}


class TrialNotNamed(ValueError):
    """A deployment of several trials was asked for a projection without naming the trial."""


class UnknownTrial(LookupError):
    """The trial named is not one the deployment runs."""


def chosen_trial(trial_ids: Iterable[str], wanted: str | None) -> str:
    """The trial a read is about: ``wanted``, which the deployment must run; when it is None,
    the deployment's only trial (``TrialNotNamed`` when it runs several: one trial's document
    is never made of two trials' events)."""
    known = sorted(trial_ids)
    if wanted is None:
        if len(known) == 1:
            return known[0]
        raise TrialNotNamed(f"this deployment runs trials {', '.join(known)}: name one")
    if wanted not in known:
        raise UnknownTrial(f"this deployment does not run trial {wanted!r}; it runs "
                           f"{', '.join(known)}")
    return wanted


def get(name: str, trial: TrialConfig | None = None) -> Projection:
    if name not in NAMES:
        raise KeyError(f"unknown projection {name!r}; known: {', '.join(sorted(NAMES))}")
    return build(trial)[name]


def fold_version(trial: TrialConfig | Mapping[str, TrialConfig]) -> str:
    """What the worker's tables were folded by: the sources of :data:`FOLD_PACKAGES` and the
    trial's configuration (decision 55), or every trial's of a deployment (by trial id; one
    trial's is that trial's version). The worker's consumer group and its changelogs carry
    it, so a worker whose folds or trial files changed folds the log again into new tables
    instead of serving tables an older fold wrote, which the replay would contradict."""
    configs = [trial] if isinstance(trial, TrialConfig) else [trial[t] for t in sorted(trial)]
    digest = hashlib.sha256(sources_digest(FOLD_PACKAGES).encode())
    for config in configs:
        digest.update(config.model_dump_json().encode())
    return digest.hexdigest()[:12]
