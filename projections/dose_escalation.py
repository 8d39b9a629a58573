"""Dose-escalation state and decision history: for each DLT evaluation, what the trial's
design recommended and from which data; and what the dose-escalation review decided.

The software recommends, people decide (DESIGN.md section 5): recommendations here are
computed; decisions are the investigators' CohortOpened/CohortExpanded events, each citing the
recommendation it followed or the reason it departed from it.

The fold keeps facts ordered by business time; everything else is derived in ``render``, so
live and replayed documents agree whatever order the topics' events arrive in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from events.dosing import InfusionRecorded
from events.enrollment import CohortClosed, CohortExpanded, CohortOpened
from events.registry import Recorded
from events.safety import (
    AdverseEventRegraded,
    AdverseEventReported,
    CrsGraded,
    DltEvaluationCompleted,
    IcansGraded,
)
from projections.base import Projection, State, ordered_insert, stamp
from projections.bounded import shorten
from projections.escalation.engine import Recommendation, recommend, target_rate
from projections.escalation.evidence import COUNTED_DOSE_LEVEL, counts_at, evidence
from trial.config import TrialConfig

NAME = "dose-escalation"


def key_of(recorded: Recorded) -> str | None:
    """Facts are kept per cohort (the review's decisions) and per subject (infusion, DLT
    evaluation): small table values, merged in ``render``."""
    event = recorded.payload
    match event:
        case CohortOpened() | CohortExpanded() | CohortClosed():
            return f"cohort:{event.cohort_id}"
        case InfusionRecorded() | DltEvaluationCompleted():
            return f"subject:{event.subject_id}"
        case AdverseEventReported() | CrsGraded() | IcansGraded() | AdverseEventRegraded():
            return f"subject:{event.subject_id}"
    return None


FACTS = ("decisions", "infusions", "evaluations", "adverse_events")


def initial(key: str) -> State:
    return {"key": key, **{name: [] for name in FACTS}}


def merged(states: Mapping[str, State]) -> State:
    """All facts of every key, each list in business-time order."""
    order = lambda x: (x["occurred_at"], x["recorded_at"], x["event_id"])  # noqa: E731
    return {
        name: sorted((f for s in states.values() for f in s.get(name, ())), key=order)
        for name in FACTS
    }


def apply(state: State, recorded: Recorded) -> State:
    event = recorded.payload
    match event:
        case CohortOpened() | CohortExpanded() | CohortClosed():
            decision = {
                **stamp(recorded),
                "kind": {
                    CohortOpened: "open",
                    CohortExpanded: "expand",
                    CohortClosed: "close",
                }[type(event)],
                "cohort_id": event.cohort_id,
                "dose_level": getattr(event, "dose_level", None),
                "recommendation_id": getattr(event, "recommendation_id", None),
                "departure_reason": shorten(
                    getattr(event, "departure_reason", None) or getattr(event, "reason", None)
                ),
                "decided_by": recorded.envelope.actor.user_id,
            }
            return {**state, "decisions": ordered_insert(state["decisions"], decision)}
        case InfusionRecorded():
            infusion = {
                **stamp(recorded),
                "subject_id": event.subject_id,
                "cohort_id": event.cohort_id,
                "dose_level": event.dose_level,
                "infused_at": event.infused_at.isoformat(),
                **_counted_dose_level(recorded),
            }
            return {**state, "infusions": ordered_insert(state["infusions"], infusion)}
        case AdverseEventReported() | CrsGraded() | IcansGraded() | AdverseEventRegraded():
            fact = {
                **stamp(recorded),
                "event_type": type(event).event_type,
                "payload": event.model_dump(mode="json"),
            }
            facts = state.get("adverse_events", [])
            return {**state, "adverse_events": ordered_insert(facts, fact)}
        case DltEvaluationCompleted():
            evaluation = {
                **stamp(recorded),
                "subject_id": event.subject_id,
                "cohort_id": event.cohort_id,
                "dose_level": event.dose_level,
                "dlt": event.dlt,
                "dlt_ae_ids": list(event.dlt_ae_ids),
            }
            return {**state, "evaluations": ordered_insert(state["evaluations"], evaluation)}
    return state


def make(trial: TrialConfig) -> Projection:
    levels = [d.level for d in trial.ordered_levels()]
    design = trial.escalation

    def level_of_cohort(state: State) -> dict[str, str]:
        return {d["cohort_id"]: d["dose_level"] for d in state["decisions"] if d["kind"] == "open"}

    def current_level(state: State, until: str | None) -> str:
        """The dose of the last cohort opened or expanded by the review, as of ``until``."""
        cohorts = level_of_cohort(state)
        level = design.start_level
        for decision in state["decisions"]:
            if until is not None and decision["occurred_at"] > until:
                break
            if decision["kind"] in ("open", "expand") and decision["cohort_id"] in cohorts:
                level = cohorts[decision["cohort_id"]]
        return level

    def recommendation_at(state: State, upto: int) -> Recommendation:
        """After the ``upto``-th evaluation, from the facts known at its business time."""
        evaluations = state["evaluations"][: upto + 1]
        until = evaluations[-1]["occurred_at"]
        known = evidence(
            trial,
            [i for i in state["infusions"] if i["occurred_at"] <= until],
            evaluations,
            [a for a in state["adverse_events"] if a["occurred_at"] <= until],
        )
        return recommend(
            design, levels, known.outcomes, current_level(state, until), known.not_counted
        )

    def recommendation_id(rec: Recommendation) -> str:
        basis = "|".join([rec.current_level, *sorted(rec.evidence)])
        return "REC-" + hashlib.sha256(basis.encode()).hexdigest()[:10]

    def render(states: Mapping[str, State]) -> dict[str, Any]:
        state = merged(states)
        history = []
        for i, evaluation in enumerate(state["evaluations"]):
            rec = recommendation_at(state, i)
            history.append(
                {
                    "recommendation_id": recommendation_id(rec),
                    "after_evaluation_of": evaluation["subject_id"],
                    "as_of": evaluation["occurred_at"],
                    **rec.as_dict(),
                }
            )
        known = {h["recommendation_id"] for h in history}
        decisions = [
            {
                **{k: d[k] for k in ("occurred_at", "kind", "cohort_id", "dose_level")},
                "decided_by": d["decided_by"],
                "followed": d["recommendation_id"] if d["recommendation_id"] in known else None,
                "cited": d["recommendation_id"],
                "departure_reason": d["departure_reason"],
            }
            for d in state["decisions"]
        ]
        treated: dict[str | None, int] = {}
        for infusion in state["infusions"]:
            level = counts_at(infusion)
            treated[level] = treated.get(level, 0) + 1
        latest = history[-1] if history else None
        counts = latest["counts"] if latest else {}
        eliminated = set(latest["eliminated_levels"]) if latest else set()
        return {
            "projection": NAME,
            "trial_id": trial.trial_id,
            "design": {
                "design": design.design,
                "target_dlt_rate": target_rate(design),
                "cohort_size": design.cohort_size,
                "max_patients": design.max_patients,
                "min_patients": design.min_patients,
                "accelerated_titration_levels": list(design.accelerated_titration_levels),
                "accelerated_titration_stop_grade": design.accelerated_titration_stop_grade,
                "dlt_window_days": trial.dlt.window_days,
            },
            "current_level": current_level(state, None),
            "levels": [
                {
                    "dose_level": d.level,
                    "cells_per_kg": d.cells_per_kg,
                    "fallback": d.fallback,
                    "treated": treated.get(d.level, 0),
                    "evaluable": counts.get(d.level, {}).get("evaluable", 0),
                    "dlts": counts.get(d.level, {}).get("dlts", 0),
                    "eliminated": d.level in eliminated,
                }
                for d in trial.ordered_levels()
            ],
            "recommendation": latest,
            "recommendations": history,
            "decisions": decisions,
        }

    return Projection(
        name=NAME,
        contexts=("enrollment", "dosing", "safety"),
        key_of=key_of,
        initial=initial,
        apply=apply,
        render=render,
        key_name="key",
    )


def _counted_dose_level(recorded: Recorded) -> dict[str, str | None]:
    """``{"counted_dose_level": level or None}``, the level the infusion says the patient counts
    at (the cohort's, a lower one after an out-of-specification dose given under exceptional
    release, or None below every level); ``{}`` when the infusion says nothing (the patient
    counts at the cohort's level). The model's field when it has one (old versions upcast),
    else the payload as written, so that a field left out is told apart from a null."""
    event = recorded.payload
    if COUNTED_DOSE_LEVEL in type(event).model_fields:
        return {COUNTED_DOSE_LEVEL: getattr(event, COUNTED_DOSE_LEVEL)}
    written = recorded.envelope.payload
    if COUNTED_DOSE_LEVEL not in written:
        return {}
    return {COUNTED_DOSE_LEVEL: written[COUNTED_DOSE_LEVEL]}
