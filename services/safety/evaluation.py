"""Closing a subject's DLT evaluation (DOMAIN.md section 3: "a patient is DLT-evaluable when
treated and followed through the window, or earlier with a DLT").

Rules: the subject was infused; the evaluation is closed once; every AE of the subject that
the DLT rule could count (grade >= 3, or grade 5) has been adjudicated; with a DLT among them
the evaluation may close at once, otherwise only after the window has ended: at the end of
study day ``dlt.window_days`` in the sponsor's time zone (``services.safety.dlt.window_ends_at``),
since an onset later on that last day still counts.
"""

from __future__ import annotations

from datetime import tzinfo

from events.safety import DltEvaluationCompleted
from services.decider import NewEvent
from services.errors import NotFound, RuleViolated
from services.safety.commands import RecordDltEvaluation
from services.safety.dlt import window_ends_at
from services.safety.state import SafetyState
from trial.config import DltRule


def evaluation_stream(subject_id: str) -> str:
    return f"dlt-evaluation-{subject_id}"


def adjudications_pending(state: SafetyState, subject_id: str) -> list[str]:
    """The ids of the subject's AEs that the DLT rule could count (grade >= 3) and that wait
    for an investigator's adjudication before the evaluation closes. An AE adjudicated before
    new information arrived (a regrade, a worse observation) must be adjudicated again before
    it can be counted either way."""
    return sorted(
        ae.ae_id
        for ae in state.adverse_events.values()
        if ae.subject_id == subject_id
        and ae.grade >= 3
        and (ae.verdict is None or ae.reassessed_since_adjudication)
    )


def close_evaluation(
    cmd: RecordDltEvaluation, state: SafetyState, rule: DltRule, zone: tzinfo
) -> list[NewEvent]:
    subject = state.subjects.get(cmd.subject_id)
    if subject is None:
        raise NotFound(
            "subject-must-be-registered",
            f"subject {cmd.subject_id} is not registered",
            subject_id=cmd.subject_id,
        )
    if subject.infusion is None:
        raise RuleViolated(
            "dlt-needs-an-infusion",
            f"subject {cmd.subject_id} has no infusion recorded: there is no DLT window",
            subject_id=cmd.subject_id,
        )
    if subject.dlt_evaluated:
        raise RuleViolated(
            "dlt-evaluation-closed-once",
            f"the DLT evaluation of subject {cmd.subject_id} is already closed",
            subject_id=cmd.subject_id,
        )
    aes = [ae for ae in state.adverse_events.values() if ae.subject_id == cmd.subject_id]
    pending = adjudications_pending(state, cmd.subject_id)
    if pending:
        raise RuleViolated(
            "dlt-adjudications-pending",
            f"subject {cmd.subject_id}: {', '.join(pending)} must be adjudicated before the DLT "
            "evaluation closes",
            subject_id=cmd.subject_id,
            pending=pending,
        )
    dlts = tuple(sorted(ae.ae_id for ae in aes if ae.verdict == "dlt"))
    window_end = window_ends_at(subject.infusion.infused_at, rule.window_days, zone)
    if not dlts and cmd.occurred_at < window_end:
        raise RuleViolated(
            "dlt-window-open",
            f"subject {cmd.subject_id} has no DLT and the {rule.window_days}-day window runs "
            f"until {window_end.isoformat()}",
            subject_id=cmd.subject_id,
            window_ends_at=window_end.isoformat(),
        )
    payload = DltEvaluationCompleted(
        subject_id=cmd.subject_id,
        cohort_id=subject.infusion.cohort_id,
        dose_level=subject.infusion.dose_level,
        evaluated_at=cmd.occurred_at,
        window_days=rule.window_days,
        dlt=bool(dlts),
        dlt_ae_ids=dlts,
    )
    return [NewEvent(evaluation_stream(cmd.subject_id), payload, cmd.occurred_at)]
