"""DLT adjudication by an investigator, and the safety review that lifts an enrollment pause.

Rules (DOMAIN.md section 3 "DLT" and "Stopping rules"; ``TrialConfig.dlt``):
- A DLT is adjudicated exactly when ``services.safety.evaluation.adjudication_due`` says it is
  due, the rule the inbox and the safety board show: an AE of an infused subject (the window
  opens at the infusion) that the DLT evaluation waits for (a grade the rule can count, onset
  in the window); the trial's configured rule (services/safety/dlt.py) gives its verdict and
  the criteria it used; while an improvement clock still runs the rule has no verdict and
  adjudication waits. The investigator agrees with the rule's verdict or departs from it with
  a reason.
- An AE is adjudicated once; it may be adjudicated again only after new information (a regrade,
  a higher graded observation, an improvement).
- A safety review is recorded once under its id, names AEs that were reported, and resumes a
  paused enrollment only when it allows resumption and covers every AE that paused it.
"""

from __future__ import annotations

from datetime import tzinfo

from events.safety import (
    DltAdjudicated,
    EnrollmentResumed,
    SafetyReviewRecorded,
)
from services.decider import NewEvent
from services.errors import RuleViolated
from services.safety.checks import STOPPING_RULE_STREAM, ae_stream, known_ae
from services.safety.commands import AdjudicateDlt, RecordSafetyReview
from services.safety.evaluation import adjudication_due
from services.safety.state import SafetyState
from trial.config import DltRule


def adjudicate(
    cmd: AdjudicateDlt, state: SafetyState, rule: DltRule, zone: tzinfo
) -> list[NewEvent]:
    ae = known_ae(state, cmd.ae_id)
    due = adjudication_due(state, ae.ae_id, rule, zone, cmd.occurred_at)
    infusion, assessment = due.infusion, due.assessment
    if cmd.verdict != assessment.verdict and cmd.reason is None:
        raise RuleViolated(
            "departure-needs-a-reason",
            f"{ae.ae_id}: the DLT rule says {assessment.verdict} "
            f"({assessment.findings[-1]}); adjudicating {cmd.verdict} needs a reason",
            ae_id=ae.ae_id,
            rule_verdict=due.rule_verdict,
            verdict=cmd.verdict,
        )
    payload = DltAdjudicated(
        ae_id=ae.ae_id,
        subject_id=ae.subject_id,
        cohort_id=infusion.cohort_id,
        dose_level=infusion.dose_level,
        adjudicated_at=cmd.occurred_at,
        rule_verdict=due.rule_verdict,
        rule_criterion=assessment.criterion,
        rule_findings=assessment.findings,
        verdict=cmd.verdict,
        departure_reason=cmd.reason if cmd.verdict != assessment.verdict else None,
    )
    return [NewEvent(ae_stream(ae.ae_id), payload, cmd.occurred_at)]


def review(cmd: RecordSafetyReview, state: SafetyState) -> list[NewEvent]:
    if cmd.review_id in state.reviews:
        raise RuleViolated(
            "safety-review-recorded-once",
            f"safety review {cmd.review_id} is already recorded",
            review_id=cmd.review_id,
        )
    for ae_id in cmd.reviewed_ae_ids:
        known_ae(state, ae_id)
    uncovered = [ae_id for ae_id in state.pausing if ae_id not in cmd.reviewed_ae_ids]
    if cmd.allows_resumption and uncovered:
        raise RuleViolated(
            "review-must-cover-every-pausing-event",
            f"enrollment is paused by {list(state.pausing)}; review {cmd.review_id} does not "
            f"cover {uncovered}",
            review_id=cmd.review_id,
            uncovered=uncovered,
        )
    recorded = SafetyReviewRecorded(
        review_id=cmd.review_id,
        reviewed_ae_ids=cmd.reviewed_ae_ids,
        allows_resumption=cmd.allows_resumption,
        summary=cmd.summary,
        reviewed_at=cmd.occurred_at,
    )
    events = [NewEvent(STOPPING_RULE_STREAM, recorded, cmd.occurred_at)]
    if cmd.allows_resumption and state.enrollment_paused:
        resumed = EnrollmentResumed(review_id=cmd.review_id, summary=cmd.summary)
        events.append(NewEvent(STOPPING_RULE_STREAM, resumed, cmd.occurred_at))
    return events
