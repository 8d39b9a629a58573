"""The dose-escalation meeting's packet for one cohort (DESIGN.md section 5: the software
recommends, the investigators' review decides).

What it holds, each figure with the events it comes from:
- the cohort as the review opened it (dose level, route, cells/kg, slots) and the review's
  decisions about it, or citing a recommendation made from it, with their signatures;
- a row per subject enrolled: dose level and route of the infusion, its time, whether the
  subject is DLT-evaluable (the safety context's ``DltEvaluationCompleted``: treated and
  followed through the window, or earlier with a DLT; DOMAIN.md section 3) and the DLT outcome;
- the DLT adjudications of the cohort's adverse events (the rule's verdict and criterion, the
  investigator's verdict and any departure) with the signatures behind them;
- the cohort's AEs by grade and attribution, as the safety service folds them;
- the design's recommendation with its evidence: the dose-escalation projection
  (projections/dose_escalation.py) folded over the same events, so the recommendation is the
  one its engine and ``evidence`` computed, never recomputed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from audit.reports.facts import (
    WHOLE,
    AeLine,
    Figure,
    Reading,
    ReportError,
    SignatureLine,
    Tally,
    event_id,
    safety_fold,
    signatures,
    tally,
)
from events.dosing import InfusionRecorded
from events.enrollment import (
    CohortClosed,
    CohortExpanded,
    CohortOpened,
    SubjectEnrolled,
    SubjectWithdrawn,
)
from events.registry import Recorded
from events.safety import DltAdjudicated, DltEvaluationCompleted
from projections import dose_escalation
from projections.base import fold
from projections.escalation.evidence import counts_at
from trial.config import TrialConfig

UNKNOWN_COHORT = "cohort-opened-by-the-review"
"""The rule a packet for a cohort the log never opened breaks."""


@dataclass(frozen=True)
class Decision:
    """A dose-escalation review's decision (``CohortOpened``/``CohortExpanded``/
    ``CohortClosed``) as recorded."""

    kind: str
    cohort_id: str
    decided_at: datetime
    decided_by: str
    role: str
    recommendation_id: str | None
    reason: str | None
    event_id: str
    signatures: tuple[SignatureLine, ...]


@dataclass(frozen=True)
class CohortRow:
    subject_id: str
    enrolled_at: datetime
    dose_level: str | None
    """The level the infusion counts at (the cohort's unless the infusion said otherwise)."""
    route: str | None
    infused_at: datetime | None
    evaluable: str
    """"yes" (evaluation completed), "window open", "not infused" or "withdrawn"."""
    dlt: bool | None
    events: tuple[str, ...]
    """Enrollment, infusion, evaluation and withdrawal, as far as they happened."""


@dataclass(frozen=True)
class Adjudication:
    ae_id: str
    subject_id: str
    term: str
    grade: int
    adjudicated_at: datetime
    rule_verdict: str
    rule_criterion: str
    rule_findings: tuple[str, ...]
    verdict: str
    departure_reason: str | None
    adjudicated_by: str
    event_id: str
    signatures: tuple[SignatureLine, ...]


@dataclass(frozen=True)
class LevelLine:
    dose_level: str
    evaluable: Figure
    dlts: Figure


@dataclass(frozen=True)
class EvidenceLine:
    event_id: str
    event_type: str
    subject_id: str | None
    occurred_at: datetime | None


@dataclass(frozen=True)
class RecommendationPacket:
    recommendation_id: str
    after_evaluation_of: str
    as_of: str
    design: str
    current_level: str
    decision: str
    next_level: str | None
    rule: str
    mtd_level: str | None
    eliminated_levels: tuple[str, ...]
    levels: tuple[LevelLine, ...]
    evidence: tuple[EvidenceLine, ...]
    not_counted: tuple[str, ...]
    earlier: tuple[str, ...]
    """Ids of earlier recommendations made after evaluations of this cohort's subjects."""


@dataclass(frozen=True)
class EscalationMeeting:
    trial_id: str
    cohort_id: str
    dose_level: str
    dose_cells_per_kg: float
    route: str
    capacity: int
    design: dict[str, Any]
    rows: tuple[CohortRow, ...]
    treated: Figure
    evaluable: Figure
    dlts: Figure
    adjudications: tuple[Adjudication, ...]
    adverse_events: tuple[AeLine, ...]
    by_grade_and_attribution: Tally
    recommendation: RecommendationPacket | None
    decisions: tuple[Decision, ...]
    last_event_at: datetime | None
    events_read: int
    reading: Reading = WHOLE
    """Halts and quarantined records met reading the log: the packet says so (decision 54)."""

    template = "escalation_meeting.html"

    @property
    def title(self) -> str:
        return f"Dose-escalation meeting: cohort {self.cohort_id}"


def escalation_meeting(
    events: Sequence[Recorded], trial: TrialConfig, cohort_id: str,
    reading: Reading = WHOLE,
) -> EscalationMeeting:
    """The packet for ``cohort_id`` from every recorded event of the enrollment, dosing and
    safety logs (with the signatures recorded in them), in the order read."""
    signed = signatures(events)
    opened = [r for r in events if isinstance(r.payload, CohortOpened)]
    mine = [r for r in opened if r.payload.cohort_id == cohort_id]  # type: ignore[attr-defined]
    if not mine:
        known = sorted({r.payload.cohort_id for r in opened})  # type: ignore[attr-defined]
        raise ReportError(
            "--cohort", UNKNOWN_COHORT,
            f"no cohort {cohort_id!r} was opened by a dose-escalation review in the log; "
            f"opened: {', '.join(known) or 'none'}",
        )
    opening: CohortOpened = mine[0].payload  # type: ignore[assignment]
    rows = _rows(events, cohort_id)
    subjects = {row.subject_id for row in rows}
    fold_ = safety_fold(events)
    aes = tuple(a for a in fold_.lines() if a.subject_id in subjects)
    projection = dose_escalation.make(trial)
    document = projection.render(fold(projection, events))
    recommendation = _recommendation(document, subjects, events)
    cited = {recommendation.recommendation_id} if recommendation else set()
    cited |= set(recommendation.earlier if recommendation else ())
    decisions = tuple(
        _decision(r, signed)
        for r in events
        if isinstance(r.payload, CohortOpened | CohortExpanded | CohortClosed)
        and (
            r.payload.cohort_id == cohort_id
            or getattr(r.payload, "recommendation_id", None) in cited
        )
    )
    infused = [row for row in rows if row.infused_at is not None]
    evaluable = [row for row in rows if row.evaluable == "yes"]
    with_dlt = [row for row in evaluable if row.dlt]
    return EscalationMeeting(
        trial_id=trial.trial_id,
        cohort_id=cohort_id,
        dose_level=opening.dose_level,
        dose_cells_per_kg=opening.dose_cells_per_kg,
        route=opening.route,
        capacity=opening.capacity,
        design=document["design"],
        rows=rows,
        treated=Figure(len(infused), tuple(row.events[1] for row in infused)),
        evaluable=Figure(len(evaluable), tuple(row.events[2] for row in evaluable)),
        dlts=Figure(len(with_dlt), tuple(row.events[2] for row in with_dlt)),
        adjudications=_adjudications(events, cohort_id, aes, signed),
        adverse_events=aes,
        by_grade_and_attribution=tally(aes),
        recommendation=recommendation,
        decisions=decisions,
        last_event_at=max((r.envelope.recorded_at for r in events), default=None),
        events_read=len(events),
        reading=reading,
    )


def _rows(events: Sequence[Recorded], cohort_id: str) -> tuple[CohortRow, ...]:
    enrolled: dict[str, Recorded] = {}
    infusions: dict[str, Recorded] = {}
    evaluations: dict[str, Recorded] = {}
    withdrawn: dict[str, Recorded] = {}
    for r in events:
        p = r.payload
        if isinstance(p, SubjectEnrolled) and p.cohort_id == cohort_id:
            enrolled.setdefault(p.subject_id, r)
        elif isinstance(p, InfusionRecorded) and p.cohort_id == cohort_id:
            infusions[p.subject_id] = r
        elif isinstance(p, DltEvaluationCompleted) and p.cohort_id == cohort_id:
            evaluations[p.subject_id] = r
        elif isinstance(p, SubjectWithdrawn):
            withdrawn[p.subject_id] = r
    rows = []
    for subject_id, enrolment in enrolled.items():
        infusion = infusions.get(subject_id)
        evaluation = evaluations.get(subject_id)
        gone = withdrawn.get(subject_id)
        inf: InfusionRecorded | None = infusion.payload if infusion else None  # type: ignore[assignment]
        ev: DltEvaluationCompleted | None = evaluation.payload if evaluation else None  # type: ignore[assignment]
        if ev is not None:
            status = "yes"
        elif gone is not None:
            status = "withdrawn"
        elif inf is None:
            status = "not infused"
        else:
            status = "window open"
        ids = [event_id(enrolment), event_id(infusion) if infusion else "",
               event_id(evaluation) if evaluation else ""]
        if gone is not None:
            ids.append(event_id(gone))
        rows.append(
            CohortRow(
                subject_id=subject_id,
                enrolled_at=enrolment.envelope.occurred_at,
                dose_level=counts_at(inf.model_dump()) if inf else None,
                route=inf.route if inf else None,
                infused_at=inf.infused_at if inf else None,
                evaluable=status,
                dlt=ev.dlt if ev else None,
                events=tuple(ids),
            )
        )
    return tuple(rows)


def _adjudications(
    events: Sequence[Recorded],
    cohort_id: str,
    aes: Sequence[AeLine],
    signed: dict[str, tuple[SignatureLine, ...]],
) -> tuple[Adjudication, ...]:
    by_id = {a.ae_id: a for a in aes}
    found = []
    for r in events:
        p = r.payload
        if not isinstance(p, DltAdjudicated) or p.cohort_id != cohort_id:
            continue
        ae = by_id.get(p.ae_id)
        found.append(
            Adjudication(
                ae_id=p.ae_id,
                subject_id=p.subject_id,
                term=ae.term if ae else "",
                grade=ae.grade if ae else 0,
                adjudicated_at=p.adjudicated_at,
                rule_verdict=p.rule_verdict,
                rule_criterion=p.rule_criterion,
                rule_findings=p.rule_findings,
                verdict=p.verdict,
                departure_reason=p.departure_reason,
                adjudicated_by=f"{r.envelope.actor.user_id} ({r.envelope.actor.role})",
                event_id=event_id(r),
                signatures=signed.get(event_id(r), ()),
            )
        )
    return tuple(found)


def _decision(r: Recorded, signed: dict[str, tuple[SignatureLine, ...]]) -> Decision:
    p = r.payload
    kind = {CohortOpened: "open", CohortExpanded: "expand", CohortClosed: "close"}[type(p)]
    reason = getattr(p, "departure_reason", None) or getattr(p, "reason", None)
    return Decision(
        kind=kind,
        cohort_id=p.cohort_id,  # type: ignore[attr-defined]
        decided_at=r.envelope.occurred_at,
        decided_by=r.envelope.actor.user_id,
        role=r.envelope.actor.role,
        recommendation_id=getattr(p, "recommendation_id", None),
        reason=reason,
        event_id=event_id(r),
        signatures=signed.get(event_id(r), ()),
    )


def _recommendation(
    document: dict[str, Any], subjects: set[str], events: Sequence[Recorded]
) -> RecommendationPacket | None:
    """The projection's last recommendation made after an evaluation of one of ``subjects``
    (the one the meeting about this cohort reads), with its evidence events described."""
    made = [h for h in document["recommendations"] if h["after_evaluation_of"] in subjects]
    if not made:
        return None
    rec = made[-1]
    by_id = {event_id(r): r for r in events}
    evidence = []
    level_of: dict[str, str | None] = {}
    infusions = {
        r.payload.subject_id: r.payload for r in events if isinstance(r.payload, InfusionRecorded)
    }
    for ident in rec["evidence"]:
        r = by_id.get(ident)
        subject = getattr(r.payload, "subject_id", None) if r else None
        evidence.append(
            EvidenceLine(
                ident,
                r.envelope.event_type if r else "(not in the events read)",
                subject,
                r.envelope.occurred_at if r else None,
            )
        )
        if r is not None and isinstance(r.payload, DltEvaluationCompleted):
            infusion = infusions.get(r.payload.subject_id)
            level_of[ident] = (
                counts_at(infusion.model_dump()) if infusion else r.payload.dose_level
            )
    levels = []
    for level, counts in rec["counts"].items():
        ids = tuple(i for i, lvl in level_of.items() if lvl == level)
        with_dlt = tuple(
            i for i in ids if getattr(by_id[i].payload, "dlt", False)
        )
        levels.append(
            LevelLine(level, Figure(counts["evaluable"], ids), Figure(counts["dlts"], with_dlt))
        )
    return RecommendationPacket(
        recommendation_id=rec["recommendation_id"],
        after_evaluation_of=rec["after_evaluation_of"],
        as_of=rec["as_of"],
        design=rec["design"],
        current_level=rec["current_level"],
        decision=rec["decision"],
        next_level=rec["next_level"],
        rule=rec["rule"],
        mtd_level=rec["mtd_level"],
        eliminated_levels=tuple(rec["eliminated_levels"]),
        levels=tuple(levels),
        evidence=tuple(evidence),
        not_counted=tuple(rec["not_counted"]),
        earlier=tuple(h["recommendation_id"] for h in made[:-1]),
    )
