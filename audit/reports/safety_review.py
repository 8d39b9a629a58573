"""The safety review committee's packet for a period of business time: the log as it stood at
the period's end (every event that occurred by then), and what happened in the period.

- The adverse events with onset in the period, by grade (CTCAE v5.0) and attribution, as the
  safety service folds them (services/safety/state.py): the worst grade known at the end.
- The serious ones (21 CFR 312.32(a) criteria).
- The expedited reports whose clock ran in the period (day 0 by its end, not submitted before
  its start), from the safety overview projection read at the period's end (21 CFR 312.32(c):
  7 calendar days from the sponsor's receipt for a fatal or life-threatening unexpected
  suspected reaction, 15 from the determination for a serious unexpected one, ICH E2A's
  complete report 8 days after the 7-day one; the projection takes the deadlines from the
  function the service checks a submission against), with the signatures on the submissions.
- The DLT adjudications and completed DLT evaluations in the period, with their signatures.
- The stopping rule's pauses, the safety reviews and resumptions in the period, and whether
  enrollment was paused at its end.
Every figure names its events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
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
from events.registry import Recorded
from events.safety import (
    DltAdjudicated,
    DltEvaluationCompleted,
    EnrollmentPaused,
    EnrollmentResumed,
    ExpeditedReportDetermined,
    ExpeditedReportSubmitted,
    SafetyReviewRecorded,
)
from projections import safety_overview
from projections.base import fold
from trial.calendar import calendar_day
from trial.config import TrialConfig

PERIOD_ORDER = "period-from-before-to"
"""The rule a period whose start is not before its end breaks."""


@dataclass(frozen=True)
class ReportClock:
    ae_id: str
    subject_id: str
    report: str
    day_zero: str
    due_on: str
    status: str
    """"submitted", "due" or "overdue" at the period's end."""
    days_left: int | None
    submitted_at: str | None
    late: bool
    events: tuple[str, ...]
    """The AE's report, its determinations and the submission, as far as recorded."""
    signatures: tuple[SignatureLine, ...]


@dataclass(frozen=True)
class DltLine:
    kind: str
    """"adjudication" or "evaluation"."""
    subject_id: str
    cohort_id: str
    dose_level: str
    at: datetime
    outcome: str
    detail: str
    recorded_by: str
    event_id: str
    signatures: tuple[SignatureLine, ...]


@dataclass(frozen=True)
class StoppingLine:
    kind: str
    """"paused", "review" or "resumed"."""
    at: datetime
    detail: str
    recorded_by: str
    event_id: str
    signatures: tuple[SignatureLine, ...]


@dataclass(frozen=True)
class SafetyReview:
    trial_id: str
    start: datetime
    end: datetime
    adverse_events: tuple[AeLine, ...]
    by_grade_and_attribution: Tally
    serious: tuple[AeLine, ...]
    serious_count: Figure
    reports: tuple[ReportClock, ...]
    overdue: Figure
    dlts: tuple[DltLine, ...]
    stopping: tuple[StoppingLine, ...]
    paused_at_end: bool
    paused_by: tuple[str, ...]
    last_event_at: datetime | None
    events_read: int
    reading: Reading = WHOLE
    """Halts and quarantined records met reading the log: the packet says so (decision 54)."""

    template = "safety_review.html"

    @property
    def title(self) -> str:
        return f"Safety review: {self.start.isoformat()} to {self.end.isoformat()}"


def check_period(start: datetime, end: datetime) -> None:
    """A review period starts before it ends."""
    if start >= end:
        raise ReportError(
            "--from", PERIOD_ORDER,
            f"the period's start {start.isoformat()} is not before its end (--to) "
            f"{end.isoformat()}",
        )


def safety_review(
    events: Sequence[Recorded], trial: TrialConfig, start: datetime, end: datetime,
    reading: Reading = WHOLE,
) -> SafetyReview:
    """The packet for the period ``[start, end]`` (business time) from the recorded events of
    the enrollment, dosing, manufacturing and safety logs (with their signatures)."""
    check_period(start, end)
    known = [r for r in events if r.envelope.occurred_at <= end]
    signed = signatures(known)
    fold_ = safety_fold(known)
    aes = tuple(a for a in fold_.lines() if start <= a.onset_at <= end)
    serious = tuple(a for a in aes if a.serious)
    overview = safety_overview.make(trial)
    board = overview.document(fold(overview, known), end)
    reports = _reports(board, known, fold_.events_of_ae, signed, start, end, trial)
    overdue = [r for r in reports if r.status == "overdue"]
    within = [r for r in known if start <= r.envelope.occurred_at]
    return SafetyReview(
        trial_id=trial.trial_id,
        start=start,
        end=end,
        adverse_events=aes,
        by_grade_and_attribution=tally(aes),
        serious=serious,
        serious_count=Figure(len(serious), tuple(a.events[0] for a in serious if a.events)),
        reports=reports,
        overdue=Figure(len(overdue), tuple(i for r in overdue for i in r.events[:1])),
        dlts=_dlts(within, signed),
        stopping=_stopping(within, signed),
        paused_at_end=fold_.state.enrollment_paused,
        paused_by=tuple(fold_.state.pausing),
        last_event_at=max((r.envelope.recorded_at for r in known), default=None),
        events_read=len(events),
        reading=reading,
    )


def _reports(
    board: dict[str, Any],
    known: Sequence[Recorded],
    events_of_ae: Any,
    signed: dict[str, tuple[SignatureLine, ...]],
    start: datetime,
    end: datetime,
    trial: TrialConfig,
) -> tuple[ReportClock, ...]:
    zone = trial.zone()
    last_day = calendar_day(end, zone)
    determinations: dict[str, list[str]] = {}
    submissions: dict[tuple[str, str], str] = {}
    for r in known:
        p = r.payload
        if isinstance(p, ExpeditedReportDetermined):
            determinations.setdefault(p.ae_id, []).append(event_id(r))
        elif isinstance(p, ExpeditedReportSubmitted):
            submissions[(p.ae_id, p.report)] = event_id(r)
    found = []
    for row in board["expedited_reports"]:
        submitted = row["submitted_at"]
        if date.fromisoformat(row["day_zero"]) > last_day:
            continue
        if submitted is not None and datetime.fromisoformat(submitted) < start:
            continue
        reported = events_of_ae.get(row["ae_id"], ())[:1]
        submission = submissions.get((row["ae_id"], row["report"]))
        found.append(
            ReportClock(
                ae_id=row["ae_id"],
                subject_id=row["subject_id"],
                report=row["report"],
                day_zero=row["day_zero"],
                due_on=row["due_on"],
                status=row["status"],
                days_left=row["days_left"],
                submitted_at=submitted,
                late=row["late"],
                events=(*reported, *determinations.get(row["ae_id"], ()),
                        *([submission] if submission else [])),
                signatures=signed.get(submission, ()) if submission else (),
            )
        )
    return tuple(found)


def _dlts(
    within: Sequence[Recorded], signed: dict[str, tuple[SignatureLine, ...]]
) -> tuple[DltLine, ...]:
    found = []
    for r in within:
        p = r.payload
        by = f"{r.envelope.actor.user_id} ({r.envelope.actor.role})"
        if isinstance(p, DltAdjudicated):
            departure = (
                f"; departs from the rule: {p.departure_reason}" if p.departure_reason else ""
            )
            found.append(
                DltLine(
                    "adjudication", p.subject_id, p.cohort_id, p.dose_level, p.adjudicated_at,
                    p.verdict, f"{p.ae_id}: rule says {p.rule_verdict} ({p.rule_criterion})"
                    f"{departure}", by, event_id(r), signed.get(event_id(r), ()),
                )
            )
        elif isinstance(p, DltEvaluationCompleted):
            found.append(
                DltLine(
                    "evaluation", p.subject_id, p.cohort_id, p.dose_level, p.evaluated_at,
                    "DLT" if p.dlt else "no DLT",
                    f"{p.window_days}-day window; DLT AEs: {', '.join(p.dlt_ae_ids) or 'none'}",
                    by, event_id(r), signed.get(event_id(r), ()),
                )
            )
    return tuple(found)


def _stopping(
    within: Sequence[Recorded], signed: dict[str, tuple[SignatureLine, ...]]
) -> tuple[StoppingLine, ...]:
    found = []
    for r in within:
        p = r.payload
        by = f"{r.envelope.actor.user_id} ({r.envelope.actor.role})"
        if isinstance(p, EnrollmentPaused):
            line = ("paused", f"{p.ae_id} ({p.subject_id}): {p.rule}")
        elif isinstance(p, SafetyReviewRecorded):
            allows = "allows" if p.allows_resumption else "does not allow"
            line = ("review", f"{p.review_id} of {', '.join(p.reviewed_ae_ids) or 'no AE'}: "
                              f"{allows} resumption. {p.summary}")
        elif isinstance(p, EnrollmentResumed):
            line = ("resumed", f"after review {p.review_id}: {p.summary}")
        else:
            continue
        found.append(
            StoppingLine(line[0], r.envelope.occurred_at, line[1], by, event_id(r),
                         signed.get(event_id(r), ()))
        )
    return tuple(found)
