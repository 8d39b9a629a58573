"""Safety overview: adverse events by grade, seriousness and attribution; DLTs per cohort;
open DLT windows; the qualifying cases awaiting the sponsor's determination; serious expected
suspected reactions per term for the aggregate review; infused lots that turned out of
specification awaiting the investigator's follow-up; the expedited-reporting clock (due,
submitted, overdue) as of the time of the query; and the stopping rule's state (DOMAIN.md
section 3).

One truth with the safety service (decision 26): the board keeps the safety facts it is given
and folds them, at render time, with the service's own ``evolve`` (services/safety/state.py),
so every derived fact (an AE's worst grade and seriousness criteria, its determination, the
follow-ups) is the service's; the clock comes from the function the service checks a
submission against (``services.safety.expedited.due_for``), and "today" is the query time's
date in the sponsor's time zone, the calendar the deadlines are counted in. Recorded facts that
the service's state does not keep (when a report was submitted, a subject's evaluation and its
cohort) are read from the events as they were recorded. No rule of the safety context is
written here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from events.dosing import InfusionRecorded
from events.manufacturing import ExceptionalReleaseApproved, LotOutOfSpecification
from events.registry import EventPayload, Recorded, payload_type
from events.safety import (
    AdverseEventImproved,
    AdverseEventRegraded,
    AdverseEventReported,
    CrsGraded,
    DltAdjudicated,
    DltEvaluationCompleted,
    EnrollmentPaused,
    EnrollmentResumed,
    ExpeditedReportDetermined,
    ExpeditedReportSubmitted,
    IcansGraded,
    LateOosFollowUpRecorded,
)
from projections.base import Listing, Projection, State, stamp
from projections.bounded import bounded
from services.errors import RuleViolated
from services.safety import state as safety
from services.safety.dlt import window_ends_at, window_last_day
from services.safety.evaluation import adjudication_due
from services.safety.expedited import aggregate_review, awaiting_determination, due_for
from services.safety.late_oos import awaiting_follow_up
from trial.calendar import calendar_day
from trial.config import TrialConfig

NAME = "safety"

_FACTS = (
    AdverseEventReported,
    AdverseEventRegraded,
    AdverseEventImproved,
    CrsGraded,
    IcansGraded,
    DltAdjudicated,
    DltEvaluationCompleted,
    ExpeditedReportDetermined,
    ExpeditedReportSubmitted,
    EnrollmentPaused,
    EnrollmentResumed,
    InfusionRecorded,
    LotOutOfSpecification,
    ExceptionalReleaseApproved,
    LateOosFollowUpRecorded,
)

Fact = dict[str, Any]
"""One recorded event as the board keeps it: its stamp, stream position, type and payload."""

_FOLD_ORDER = ("ae:", "stopping-rule", "subject:", "lot:")
"""The order in which keys are folded: an AE is known before the pause that names it. Within a
key the facts keep their stream's order; facts of different keys do not depend on each other's
order in ``evolve``."""


def key_of(recorded: Recorded) -> str | None:
    """Facts are kept per AE, per subject (infusion, DLT evaluation) and for the stopping rule:
    small table values, whatever the size of the trial."""
    event = recorded.payload
    if not isinstance(event, _FACTS):
        return None
    if isinstance(event, EnrollmentPaused | EnrollmentResumed):
        return "stopping-rule"
    if isinstance(event, InfusionRecorded | DltEvaluationCompleted):
        return f"subject:{event.subject_id}"
    if isinstance(event, LotOutOfSpecification):
        return f"lot:{event.lot_id}" if event.after_release else None
    if isinstance(event, ExceptionalReleaseApproved | LateOosFollowUpRecorded):
        return f"lot:{event.lot_id}"
    return f"ae:{event.ae_id}"


def initial(key: str) -> State:
    return {"key": key, "facts": []}


def apply(state: State, recorded: Recorded) -> State:
    e = recorded.envelope
    fact = {
        **stamp(recorded),
        "stream_id": e.stream_id,
        "stream_seq": e.stream_seq,
        "type": e.event_type,
        "payload": bounded(recorded.payload.model_dump(mode="json")),
    }
    facts = sorted([*state["facts"], fact], key=lambda f: (f["stream_id"], f["stream_seq"]))
    return {**state, "facts": facts}


def _in_fold_order(states: Mapping[str, State]) -> Iterator[Fact]:
    def rank(key: str) -> tuple[int, str]:
        return next(i for i, p in enumerate(_FOLD_ORDER) if key.startswith(p)), key

    for key in sorted(states, key=rank):
        yield from states[key]["facts"]


def _payload(fact: Fact) -> EventPayload:
    return payload_type(fact["type"]).model_validate(fact["payload"])


def service_state(states: Mapping[str, State]) -> safety.SafetyState:
    """The safety service's state, folded by the service's ``evolve`` from the board's facts."""
    return safety.fold([_payload(f) for f in _in_fold_order(states)])


def _subject_of(state: State) -> list[str]:
    """An AE key's subject key: its DLT status needs the subject's infusion and evaluation."""
    for fact in state["facts"]:
        if isinstance(subject := fact["payload"].get("subject_id"), str):
            return [f"subject:{subject}"]
    return []


def _dlt_status(
    state: safety.SafetyState, ae: safety.AdverseEvent, trial: TrialConfig, as_of: datetime
) -> tuple[str | None, str | None]:
    """An AE's DLT status as the safety service sees it at ``as_of``, and until when the rule
    has no verdict: ``adjudication-due`` / ``re-adjudication-due`` exactly when the service's
    ``adjudication_due`` would take an adjudication now (the inbox's item); ``awaiting-rule``
    while the evaluation waits for it but the rule's improvement clock still runs (with the
    moment after which it has a verdict); else its adjudication (``dlt``, ``not-dlt``) or None
    for an AE the DLT evaluation does not wait for (not infused, a grade the rule cannot
    count, an onset outside the window)."""
    try:
        due = adjudication_due(state, ae.ae_id, trial.dlt, trial.zone(), as_of)
    except RuleViolated as refused:
        if refused.rule == "dlt-verdict-pending":
            return "awaiting-rule", str(refused.details["possible_after"])
        return ae.verdict, None
    return ("re-adjudication-due" if due.again else "adjudication-due"), None


def make(trial: TrialConfig) -> Projection:
    def render_at(states: Mapping[str, State], as_of: datetime) -> dict[str, Any]:
        state = service_state(states)
        facts = list(_in_fold_order(states))
        submitted = {
            (f["payload"]["ae_id"], f["payload"]["report"]): f["payload"]
            for f in facts
            if f["type"] == "ExpeditedReportSubmitted"
        }
        improved = {
            f["payload"]["ae_id"]: f["payload"]["outcome"]
            for f in facts
            if f["type"] == "AdverseEventImproved"
        }
        evaluations = {
            f["payload"]["subject_id"]: f["payload"]
            for f in facts
            if f["type"] == "DltEvaluationCompleted"
        }
        zone = trial.zone()
        today = calendar_day(as_of, zone)
        aes = sorted(state.adverse_events.values(), key=lambda a: a.ae_id)
        statuses = {ae.ae_id: _dlt_status(state, ae, trial, as_of) for ae in aes}
        reports: list[dict[str, Any]] = []
        for ae in aes:
            for d in due_for(ae, trial.reporting, zone):
                done: dict[str, Any] | None = submitted.get((ae.ae_id, d.report))
                status = "submitted" if done else "overdue" if today > d.due_on else "due"
                reports.append(
                    {
                        "ae_id": ae.ae_id,
                        "subject_id": ae.subject_id,
                        "report": d.report,
                        "day_zero": d.day_zero.isoformat(),
                        "due_on": d.due_on.isoformat(),
                        "status": status,
                        "days_left": None if done else (d.due_on - today).days,
                        "submitted_at": done["submitted_at"] if done else None,
                        "late": done is not None
                        and calendar_day(datetime.fromisoformat(done["submitted_at"]), zone)
                        > d.due_on,
                    }
                )
        determinations_due = [
            {
                "ae_id": ae.ae_id,
                "subject_id": ae.subject_id,
                "term": ae.term,
                "sponsor_received_at": ae.sponsor_received_at.isoformat(),
                "days_waiting": (today - calendar_day(ae.sponsor_received_at, zone)).days,
            }
            for ae in awaiting_determination(state, trial.reporting)
        ]
        open_windows = []
        for subject in sorted(state.subjects.values(), key=lambda s: s.subject_id):
            inf = subject.infusion
            if inf is None or subject.subject_id in evaluations:
                continue
            ends = window_ends_at(inf.infused_at, trial.dlt.window_days, zone)
            open_windows.append(
                {
                    "subject_id": subject.subject_id,
                    "cohort_id": inf.cohort_id,
                    "dose_level": inf.dose_level,
                    "infused_at": inf.infused_at.isoformat(),
                    "window_last_day": window_last_day(
                        inf.infused_at, trial.dlt.window_days, zone
                    ).isoformat(),
                    "window_ends_at": ends.isoformat(),
                    "days_left": max((ends - as_of).days, 0),
                    "window_over": as_of >= ends,
                }
            )
        dlts_per_cohort: dict[str, dict[str, Any]] = {}
        for ev in evaluations.values():
            c = dlts_per_cohort.setdefault(
                ev["cohort_id"], {"dose_level": ev["dose_level"], "evaluable": 0, "dlts": 0}
            )
            c["evaluable"] += 1
            c["dlts"] += int(ev["dlt"])

        def count(values: Iterable[object]) -> dict[str, int]:
            out: dict[str, int] = {}
            for v in values:
                out[str(v)] = out.get(str(v), 0) + 1
            return dict(sorted(out.items()))

        return {
            "projection": NAME,
            "as_of": as_of.isoformat(),
            "adverse_events": {
                "total": len(aes),
                "by_worst_grade": count(ae.grade for ae in aes),
                "serious": sum(1 for ae in aes if ae.serious_criteria),
                "by_seriousness_criterion": count(c for ae in aes for c in ae.serious_criteria),
                "by_attribution": count(ae.attribution for ae in aes),
                "of_special_interest": sum(1 for ae in aes if ae.special_interest),
                "list": [
                    {
                        "ae_id": ae.ae_id,
                        "subject_id": ae.subject_id,
                        "term": ae.term,
                        "grade": ae.grade,
                        "worst_grade": ae.grade,
                        "serious_criteria": list(ae.serious_criteria),
                        "attribution": ae.attribution,
                        "expected": ae.expected,
                        "improved": improved.get(ae.ae_id),
                        "dlt": ae.verdict,
                        "dlt_status": statuses[ae.ae_id][0],
                        "dlt_rule_verdict_after": statuses[ae.ae_id][1],
                        "reports": [
                            {k: r[k] for k in ("report", "due_on", "status")}
                            for r in reports
                            if r["ae_id"] == ae.ae_id
                        ],
                    }
                    for ae in aes
                ],
            },
            "dlts_per_cohort": dict(sorted(dlts_per_cohort.items())),
            "open_dlt_windows": open_windows,
            "determinations_due": determinations_due,
            "late_oos_follow_ups": [
                {
                    "lot_id": lot.lot_id,
                    "subject_id": lot.subject_id,
                    "failed_tests": list(lot.open_tests),
                    "needs": "the investigator's notice and safety assessment",
                }
                for lot in awaiting_follow_up(state)
            ],
            "aggregate_review": [
                {
                    "term": term,
                    "count": len(listed),
                    "subjects": len({ae.subject_id for ae in listed}),
                    "ae_ids": [ae.ae_id for ae in listed],
                }
                for term, listed in aggregate_review(state, trial.reporting).items()
            ],
            "expedited_reports": reports,
            "overdue_reports": sum(1 for r in reports if r["status"] == "overdue"),
            "enrollment_paused": state.enrollment_paused,
            "paused_by": list(state.pausing),
        }

    def render(states: Mapping[str, State]) -> dict[str, Any]:
        raise TypeError("the safety overview depends on the time it is read at: use render_at")

    return Projection(
        name=NAME,
        contexts=("safety", "dosing", "manufacturing"),
        key_of=key_of,
        initial=initial,
        apply=apply,
        render=render,
        key_name="key",
        render_at=render_at,
        listing=Listing(
            path=("adverse_events", "list"), prefix="ae:", summary=True, needs=_subject_of
        ),
    )
