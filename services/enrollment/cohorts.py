"""Cohorts: opened, expanded and closed by the dose-escalation review's decision.

DOMAIN.md section 4 and DESIGN.md section 5: the design recommends, the investigators' review
decides; the decision cites the recommendation it followed or gives the reason it departed
from it. The first cohort at the design's start level follows the protocol itself and needs
no citation. The dose and route of a cohort are the trial file's for its dose level; its size
is the design's (cohort_size, or 1 at an accelerated-titration level); more slots come only by
a further decision (3+3: "add 3 more"). The slots of all cohorts never exceed the trial's
maximum of treated patients (escalation.max_patients, 18 in the public record).
"""

from __future__ import annotations

import math

from events.enrollment import CohortClosed, CohortExpanded, CohortOpened
from services.decider import NewEvent
from services.enrollment.commands import CloseCohort, ExpandCohort, OpenCohort
from services.enrollment.guards import cohort_stream
from services.enrollment.state import Cohort, EnrollmentState
from services.errors import NotFound, RuleViolated
from trial.config import TrialConfig


def open_cohort(cmd: OpenCohort, state: EnrollmentState, trial: TrialConfig) -> list[NewEvent]:
    if cmd.cohort_id in state.cohorts:
        raise RuleViolated(
            "cohort-opened-once",
            f"cohort {cmd.cohort_id} is already open",
            cohort_id=cmd.cohort_id,
        )
    levels = [d.level for d in trial.dose_levels]
    if cmd.dose_level not in levels:
        raise NotFound(
            "dose-level-from-trial-file",
            f"dose level {cmd.dose_level} is not in the trial file; levels: {', '.join(levels)}",
            dose_level=cmd.dose_level,
            levels=levels,
        )
    dose = trial.dose_level(cmd.dose_level)
    if cmd.dose_cells_per_kg is not None and not math.isclose(
        cmd.dose_cells_per_kg, dose.cells_per_kg, rel_tol=1e-9
    ):
        raise RuleViolated(
            "dose-from-trial-file",
            f"dose level {dose.level} is {dose.cells_per_kg:g} cells/kg in the trial file, "
            f"not {cmd.dose_cells_per_kg:g}",
            dose_level=dose.level,
            trial_file=dose.cells_per_kg,
            requested=cmd.dose_cells_per_kg,
        )
    if cmd.route is not None and cmd.route != dose.route:
        raise RuleViolated(
            "route-from-trial-file",
            f"dose level {dose.level} is given {dose.route} in the trial file, not {cmd.route}",
            dose_level=dose.level,
            trial_file=dose.route,
            requested=cmd.route,
        )
    size = design_size(trial, dose.level)
    if cmd.capacity is not None and cmd.capacity != size:
        raise RuleViolated(
            "cohort-size-from-design",
            f"a {trial.escalation.design} cohort at {dose.level} has {size} slot(s), not "
            f"{cmd.capacity}; more slots come by a further decision (expansion)",
            dose_level=dose.level,
            design_size=size,
            requested=cmd.capacity,
        )
    protocol_start = not state.cohorts and dose.level == trial.escalation.start_level
    if not protocol_start:
        _cites_the_recommendation(cmd.recommendation_id, cmd.reason, f"open {cmd.cohort_id}")
    _within_trial_maximum(state, trial, size, f"opening {cmd.cohort_id} for {size}")
    payload = CohortOpened(
        cohort_id=cmd.cohort_id,
        dose_level=dose.level,
        dose_cells_per_kg=dose.cells_per_kg,
        route=dose.route,
        capacity=size,
        recommendation_id=cmd.recommendation_id,
        departure_reason=cmd.reason,
    )
    return [NewEvent(cohort_stream(cmd.cohort_id), payload, cmd.occurred_at)]


def expand_cohort(
    cmd: ExpandCohort, state: EnrollmentState, trial: TrialConfig
) -> list[NewEvent]:
    """A closed cohort may be expanded too (3+3: a lower dose with 3 patients is expanded to 6
    after de-escalation); the expansion opens it again."""
    cohort = _known(state, cmd.cohort_id)
    _cites_the_recommendation(cmd.recommendation_id, cmd.reason, f"expand {cmd.cohort_id}")
    added = cohort.capacity + cmd.additional_slots - cohort.committed()
    _within_trial_maximum(
        state, trial, added, f"adding {cmd.additional_slots} slot(s) to {cmd.cohort_id}"
    )
    payload = CohortExpanded(
        cohort_id=cmd.cohort_id,
        additional_slots=cmd.additional_slots,
        recommendation_id=cmd.recommendation_id,
        departure_reason=cmd.reason,
    )
    return [NewEvent(cohort_stream(cmd.cohort_id), payload, cmd.occurred_at)]


def close_cohort(cmd: CloseCohort, state: EnrollmentState) -> list[NewEvent]:
    cohort = _known(state, cmd.cohort_id)
    if not cohort.open:
        raise RuleViolated(
            "cohort-closed-once",
            f"cohort {cmd.cohort_id} is already closed",
            cohort_id=cmd.cohort_id,
        )
    payload = CohortClosed(cohort_id=cmd.cohort_id, reason=cmd.reason)
    return [NewEvent(cohort_stream(cmd.cohort_id), payload, cmd.occurred_at)]


def design_size(trial: TrialConfig, level: str) -> int:
    if level in trial.escalation.accelerated_titration_levels:
        return 1
    return trial.escalation.cohort_size


def _known(state: EnrollmentState, cohort_id: str) -> Cohort:
    cohort = state.cohorts.get(cohort_id)
    if cohort is None:
        raise NotFound(
            "cohort-must-be-open",
            f"cohort {cohort_id} was never opened",
            cohort_id=cohort_id,
        )
    return cohort


def _cites_the_recommendation(
    recommendation_id: str | None, reason: str | None, doing: str
) -> None:
    if recommendation_id is None and reason is None:
        raise RuleViolated(
            "decision-cites-recommendation",
            f"the review's decision to {doing} must cite the recommendation it followed "
            "(recommendation_id) or give the reason it departs from it (reason)",
        )


def _within_trial_maximum(
    state: EnrollmentState, trial: TrialConfig, more: int, doing: str
) -> None:
    committed, maximum = state.committed_slots(), trial.escalation.max_patients
    if committed + more > maximum:
        raise RuleViolated(
            "trial-max-patients",
            f"{doing} would plan {committed + more} slots; the trial treats at most {maximum} "
            f"patients ({committed} already planned or held)",
            committed=committed,
            requested=more,
            max_patients=maximum,
        )
