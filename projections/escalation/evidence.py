"""What a dose-escalation recommendation is made from, computed in one place (pure).

Every reader of a recommendation (the dose-escalation projection, live and on replay, and any
tool that reproduces it) calls ``evidence``: the patients counted at each dose level, their
DLTs, the grade >= 2 toxicities that end accelerated titration, and the events behind each.

Sources:
- DLT-evaluable patients and DLTs: the safety context's ``DltEvaluationCompleted`` (DOMAIN.md
  section 3: evaluable when treated and followed through the window, or earlier with a DLT).
- The dose a patient counts at: the cohort's level, unless the infusion recorded a
  ``counted_dose_level`` (an out-of-specification lot given under exceptional release; DOMAIN.md
  section 2 item 4 and issue 11 item 2: "such a patient counts at the dose received"); a null
  ``counted_dose_level`` means the dose received is none of the trial's levels, so the patient
  counts at no level and the recommendation says so.
- Accelerated titration ends at the first toxicity of grade >= ``accelerated_titration_stop_grade``
  at least as related as the DLT rule's ``min_attribution``, with onset in the DLT window of a
  patient treated at the level (``EscalationDesign.accelerated_titration_stop_grade``; Simon et
  al., J Natl Cancer Inst 1997;89:1138-1147). The adverse events' grades and attributions are
  those the safety context holds: its own ``evolve`` folds them (report, CRS/ICANS observations,
  regrading), and its DLT rule's ``study_day`` places the onset in the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.registry import payload_type
from events.safety import AdverseEventRegraded, AdverseEventReported, CrsGraded, IcansGraded
from projections.escalation.engine import LevelOutcomes
from services.safety import state as safety
from services.safety.dlt import at_least, study_day
from trial.config import TrialConfig

COUNTED_DOSE_LEVEL = "counted_dose_level"
"""The ``InfusionRecorded`` field naming the level a patient counts at (absent: the cohort's)."""

AdverseEventFact = AdverseEventReported | CrsGraded | IcansGraded | AdverseEventRegraded
"""The safety events that set an adverse event's grade and attribution."""


@dataclass(frozen=True)
class Evidence:
    outcomes: dict[str, LevelOutcomes]
    """Per dose level (levels nobody counts at are absent)."""
    not_counted: tuple[str, ...] = ()
    """Patients evaluated who count at no dose level, each with the reason."""


def counts_at(infusion: Mapping[str, Any]) -> str | None:
    """The level an infused patient counts at: ``counted_dose_level`` when the infusion
    recorded one (None: at no level), else the cohort's ``dose_level``."""
    level: str | None = (
        infusion[COUNTED_DOSE_LEVEL] if COUNTED_DOSE_LEVEL in infusion else infusion["dose_level"]
    )
    return level


def evidence(
    trial: TrialConfig,
    infusions: Iterable[Mapping[str, Any]],
    evaluations: Iterable[Mapping[str, Any]],
    adverse_events: Sequence[Mapping[str, Any]] = (),
) -> Evidence:
    """The per-level outcomes a recommendation is computed from.

    ``infusions``: facts with ``subject_id``, ``dose_level``, ``infused_at`` (ISO 8601) and, when
    the event carried it, ``counted_dose_level``; ``evaluations``: ``subject_id``, ``dose_level``,
    ``dlt``, ``event_id``; ``adverse_events``: ``event_type``, ``payload`` (the event's JSON) and
    ``event_id``, in business-time order. Pass only the facts known at the moment the
    recommendation is made for.
    """
    by_subject = {i["subject_id"]: i for i in infusions}
    names = {d.level for d in trial.dose_levels}
    counted: dict[str, tuple[int, int, tuple[str, ...]]] = {}
    not_counted: list[str] = []
    for e in evaluations:
        infusion = by_subject.get(e["subject_id"])
        level = e["dose_level"] if infusion is None else counts_at(infusion)
        if level is None or level not in names:
            why = (
                "the infusion recorded a dose outside every level of the trial "
                "(counted_dose_level null)"
                if level is None
                else f"{level} is not a dose level of the trial"
            )
            outcome = "DLT" if e["dlt"] else "no DLT"
            not_counted.append(
                f"{e['subject_id']} (evaluation {e['event_id']}, {outcome}) counts at no dose "
                f"level: {why}"
            )
            continue
        n, y, ids = counted.get(level, (0, 0, ()))
        counted[level] = (n + 1, y + int(e["dlt"]), (*ids, e["event_id"]))
    stopping = _titration_stopping_toxicities(trial, by_subject, adverse_events)
    outcomes = {
        level: LevelOutcomes(
            evaluable=counted.get(level, (0, 0, ()))[0],
            dlts=counted.get(level, (0, 0, ()))[1],
            evidence=(*counted.get(level, (0, 0, ()))[2], *stopping.get(level, ())),
            grade2_toxicity_seen=level in stopping,
        )
        for level in {*counted, *stopping}
    }
    return Evidence(outcomes, tuple(not_counted))


def _titration_stopping_toxicities(
    trial: TrialConfig,
    infusions: Mapping[str, Mapping[str, Any]],
    adverse_events: Sequence[Mapping[str, Any]],
) -> dict[str, tuple[str, ...]]:
    """Per level, the ids of the reports of adverse events that end accelerated titration."""
    design = trial.escalation
    if not design.accelerated_titration_levels or not adverse_events:
        return {}
    # The report creates the AE that observations and regrading then change: fold it first.
    ordered = sorted(adverse_events, key=lambda f: f["event_type"] != "AdverseEventReported")
    state = safety.initial_state
    reported: dict[str, str] = {}
    for fact in ordered:
        event = payload_type(fact["event_type"]).model_validate(fact["payload"])
        if not isinstance(event, AdverseEventFact):
            continue
        ae_id = event.ae_id
        if fact["event_type"] != "AdverseEventReported" and ae_id not in reported:
            continue  # an observation of an AE whose report is not known yet
        if fact["event_type"] == "AdverseEventReported":
            reported[ae_id] = fact["event_id"]
        state = safety.evolve(state, event)
    found: dict[str, tuple[str, ...]] = {}
    for ae in state.adverse_events.values():
        infusion = infusions.get(ae.subject_id)
        if infusion is None:
            continue
        level = counts_at(infusion)
        if level is None or ae.grade < design.accelerated_titration_stop_grade:
            continue
        if not at_least(ae.attribution, trial.dlt.min_attribution):
            continue
        infused_at = datetime.fromisoformat(infusion["infused_at"])
        if ae.onset_at < infused_at:
            continue
        if study_day(ae.onset_at, infused_at, trial.zone()) > trial.dlt.window_days:
            continue
        found[level] = (*found.get(level, ()), reported[ae.ae_id])
    return found
