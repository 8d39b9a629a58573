"""Closing a subject's DLT evaluation (DOMAIN.md section 3: "a patient is DLT-evaluable when
treated and followed through the window, or earlier with a DLT"), and the one rule of when a
DLT adjudication of an AE is due (:func:`adjudication_due`), which the safety decider, the
inbox and the safety board all call.

Rules: the subject was infused; the evaluation is closed once; every AE of the subject that
the DLT rule could count (grade >= 3, or grade 5) has been adjudicated; with a DLT among them
the evaluation may close at once, otherwise only after the window has ended: at the end of
study day ``dlt.window_days`` in the sponsor's time zone (``services.safety.dlt.window_ends_at``),
since an onset later on that last day still counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from events.safety import DltEvaluationCompleted, Verdict
from services.decider import NewEvent
from services.errors import NotFound, RuleViolated
from services.safety.commands import RecordDltEvaluation
from services.safety.dlt import (
    DltAssessment,
    DltFacts,
    assess_dlt,
    study_day,
    window_ends_at,
    window_last_day,
)
from services.safety.state import AdverseEvent, Infusion, SafetyState
from trial.calendar import calendar_day
from trial.config import DltRule


def evaluation_stream(subject_id: str) -> str:
    return f"dlt-evaluation-{subject_id}"


def lowest_countable_grade(rule: DltRule) -> int:
    """The lowest grade at which the trial's DLT rule can count an AE (DOMAIN.md section 3):
    grade 3 CRS/ICANS not improving within the hours, CRS/ICANS from
    ``crs_or_icans_min_grade``, other toxicities from ``other_nonhematologic_min_grade``
    (grade 5 is above them all)."""
    return min(3, rule.crs_or_icans_min_grade, rule.other_nonhematologic_min_grade)


def awaits_adjudication(
    ae: AdverseEvent, infusion: Infusion, rule: DltRule, zone: tzinfo
) -> bool:
    """Whether the subject's DLT evaluation waits for an investigator's adjudication of ``ae``:
    never adjudicated, a grade the rule can count and an onset in the DLT window (from the
    infusion to the end of study day ``window_days``, the rule's own window); or adjudicated
    before new information arrived (a regrade, a worse observation, an improvement), which
    must be adjudicated again before it can be counted either way, whatever its grade now."""
    if ae.verdict is not None:
        return ae.reassessed_since_adjudication
    in_window = (
        ae.onset_at >= infusion.infused_at
        and study_day(ae.onset_at, infusion.infused_at, zone) <= rule.window_days
    )
    return ae.grade >= lowest_countable_grade(rule) and in_window


def adjudications_pending(
    state: SafetyState, subject_id: str, rule: DltRule, zone: tzinfo
) -> list[str]:
    """The ids of the subject's AEs that wait for an investigator's adjudication before the
    evaluation closes (:func:`awaits_adjudication`); none for a subject not infused."""
    subject = state.subjects.get(subject_id)
    infusion = subject.infusion if subject is not None else None
    if infusion is None:
        return []
    return sorted(
        ae.ae_id
        for ae in state.adverse_events.values()
        if ae.subject_id == subject_id and awaits_adjudication(ae, infusion, rule, zone)
    )


@dataclass(frozen=True, slots=True)
class AdjudicationDue:
    """A DLT adjudication the investigator may record now: the AE, the subject's infusion, the
    rule's verdict at that moment, and by which calendar day (sponsor's zone) it is due."""

    ae: AdverseEvent
    infusion: Infusion
    assessment: DltAssessment
    rule_verdict: Verdict
    """The rule's verdict now (never pending: then the adjudication is not due)."""
    due_on: date
    again: bool
    """A re-adjudication after new information."""


def adjudication_due(
    state: SafetyState, ae_id: str, rule: DltRule, zone: tzinfo, as_of: datetime
) -> AdjudicationDue:
    """Whether a DLT adjudication of ``ae_id`` is due at ``as_of``, the one rule the safety
    decider enforces and the inbox and the safety board show (DOMAIN.md section 3 "DLT";
    ``TrialConfig.dlt``). Refused (``RuleViolated`` naming the rule, with the values) when the
    subject has no infusion (``dlt-needs-an-infusion``: no window), when the AE is adjudicated
    and nothing changed since (``dlt-adjudicated-once``), when the evaluation does not wait
    for it (``dlt-adjudication-of-a-candidate``: a grade the rule cannot count or an onset
    outside the window) and while the rule's improvement clock still runs
    (``dlt-verdict-pending``, with ``possible_after``: the rule has a verdict at any moment
    after it). Due by the window's last day, or by the calendar day the improvement clock
    ends when that is later: nobody can adjudicate before the rule has a verdict."""
    ae = state.adverse_events[ae_id]
    subject = state.subjects.get(ae.subject_id)
    infusion = subject.infusion if subject else None
    if infusion is None:
        raise RuleViolated(
            "dlt-needs-an-infusion",
            f"subject {ae.subject_id} has no infusion recorded: there is no DLT window for "
            f"{ae.ae_id}",
            ae_id=ae.ae_id,
            subject_id=ae.subject_id,
        )
    if ae.verdict is not None and not ae.reassessed_since_adjudication:
        raise RuleViolated(
            "dlt-adjudicated-once",
            f"{ae.ae_id} is already adjudicated ({ae.verdict}) and nothing about it changed "
            "since; a new adjudication needs new information (a regrade, a higher graded "
            "observation, an improvement)",
            ae_id=ae.ae_id,
            verdict=ae.verdict,
        )
    if not awaits_adjudication(ae, infusion, rule, zone):
        raise RuleViolated(
            "dlt-adjudication-of-a-candidate",
            f"{ae.ae_id}: grade {ae.grade} with onset {ae.onset_at.isoformat()} is not an AE "
            f"the DLT rule can count (grade >= {lowest_countable_grade(rule)} with onset from "
            f"the infusion {infusion.infused_at.isoformat()} to the end of day "
            f"{rule.window_days}): the DLT evaluation does not wait for its adjudication",
            ae_id=ae.ae_id,
            grade=ae.grade,
            onset_at=ae.onset_at.isoformat(),
        )
    facts = DltFacts(
        syndrome=ae.syndrome,
        grade=ae.grade,
        attribution=ae.attribution,
        onset_at=ae.onset_at,
        infused_at=infusion.infused_at,
        as_of=as_of,
        severe_since=ae.severe_since,
        improved_at=ae.improved_at,
        haematological=ae.haematological,
        conditioning_lab_effect=ae.conditioning_lab_effect,
    )
    assessment = assess_dlt(facts, rule, zone)
    rule_verdict = assessment.verdict
    if rule_verdict == "pending":
        assert assessment.clock_ends is not None
        raise RuleViolated(
            "dlt-verdict-pending",
            f"{ae.ae_id}: the DLT rule has no verdict yet: {assessment.findings[-1]}",
            ae_id=ae.ae_id,
            findings=list(assessment.findings),
            possible_after=assessment.clock_ends.isoformat(),
        )
    due_on = window_last_day(infusion.infused_at, rule.window_days, zone)
    if assessment.clock_ends is not None:
        due_on = max(due_on, calendar_day(assessment.clock_ends, zone))
    return AdjudicationDue(ae, infusion, assessment, rule_verdict, due_on, ae.verdict is not None)


@dataclass(frozen=True, slots=True)
class EvaluationDue:
    """A DLT evaluation the investigator may close now: the subject's infusion, the AEs
    adjudicated a DLT, and the calendar day (sponsor's zone) it is due."""

    infusion: Infusion
    dlt_ae_ids: tuple[str, ...]
    due_on: date
    """Study day ``window_days + 1``: the first day after the window's last day, when an
    evaluation without a DLT can first be recorded; overdue once that day is over."""


def evaluation_due(
    state: SafetyState, subject_id: str, rule: DltRule, zone: tzinfo, as_of: datetime
) -> EvaluationDue:
    """Whether the subject's DLT evaluation may close at ``as_of``: the one rule the safety
    decider enforces and the inbox shows. Refused (naming the rule) for a subject not
    registered or not infused, an evaluation already closed, adjudications the evaluation
    waits for, and, without an adjudicated DLT, before the window's end
    (``window_ends_at``: an onset late on its last day still counts)."""
    subject = state.subjects.get(subject_id)
    if subject is None:
        raise NotFound(
            "subject-must-be-registered",
            f"subject {subject_id} is not registered",
            subject_id=subject_id,
        )
    if subject.infusion is None:
        raise RuleViolated(
            "dlt-needs-an-infusion",
            f"subject {subject_id} has no infusion recorded: there is no DLT window",
            subject_id=subject_id,
        )
    if subject.dlt_evaluated:
        raise RuleViolated(
            "dlt-evaluation-closed-once",
            f"the DLT evaluation of subject {subject_id} is already closed",
            subject_id=subject_id,
        )
    aes = [ae for ae in state.adverse_events.values() if ae.subject_id == subject_id]
    pending = adjudications_pending(state, subject_id, rule, zone)
    if pending:
        raise RuleViolated(
            "dlt-adjudications-pending",
            f"subject {subject_id}: {', '.join(pending)} must be adjudicated before the DLT "
            "evaluation closes",
            subject_id=subject_id,
            pending=pending,
        )
    dlts = tuple(sorted(ae.ae_id for ae in aes if ae.verdict == "dlt"))
    infused_at = subject.infusion.infused_at
    window_end = window_ends_at(infused_at, rule.window_days, zone)
    if not dlts and as_of < window_end:
        raise RuleViolated(
            "dlt-window-open",
            f"subject {subject_id} has no DLT and the {rule.window_days}-day window runs "
            f"until {window_end.isoformat()}",
            subject_id=subject_id,
            window_ends_at=window_end.isoformat(),
        )
    due_on = window_last_day(infused_at, rule.window_days, zone) + timedelta(days=1)
    return EvaluationDue(subject.infusion, dlts, due_on)


def close_evaluation(
    cmd: RecordDltEvaluation, state: SafetyState, rule: DltRule, zone: tzinfo
) -> list[NewEvent]:
    due = evaluation_due(state, cmd.subject_id, rule, zone, cmd.occurred_at)
    payload = DltEvaluationCompleted(
        subject_id=cmd.subject_id,
        cohort_id=due.infusion.cohort_id,
        dose_level=due.infusion.dose_level,
        evaluated_at=cmd.occurred_at,
        window_days=rule.window_days,
        dlt=bool(due.dlt_ae_ids),
        dlt_ae_ids=due.dlt_ae_ids,
    )
    return [NewEvent(evaluation_stream(cmd.subject_id), payload, cmd.occurred_at)]
