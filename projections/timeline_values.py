"""What a patient-timeline row says beyond its event type: the values an operations person acts
on (the QC test and its result, the eligibility verdict, a grade, a dose), in one short line.

Each line is read from the event as recorded; where a value needs a rule, the service's own
function gives it, so the timeline never states a rule of its own: the eligibility verdict
(``services.enrollment.state.eligible``) and a QC result's verdict against the trial file's
release specification (``services.manufacturing.qc.judge``; a cell dose against its lot's
target, fixed by ``ManufacturingStarted``). A date is the trial's calendar day in the sponsor's
zone (``trial.calendar.calendar_day``), not the date a timestamp's own offset gives. An event
type not listed here has no line (None): its row shows the event type and the details alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from events.dosing import (
    BedsideCoiVerified,
    BedsideIdentityMismatchRecorded,
    ConditioningDayRecorded,
    InfusionRecorded,
)
from events.enrollment import (
    ConsentRecorded,
    EligibilityAssessed,
    EligibilityReconfirmed,
    PrescreeningRecorded,
    PriorTherapyRecorded,
    SlotReleased,
    SubjectEnrolled,
    SubjectScreenFailed,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from events.manufacturing import (
    ApheresisCollected,
    CustodyTransferred,
    ExceptionalReleaseApproved,
    ExceptionalReleaseDecided,
    LotCryopreserved,
    LotHarvested,
    LotOutOfSpecification,
    LotReleased,
    LotShipped,
    ManufacturingFailed,
    ManufacturingStarted,
    QcResultRecorded,
)
from events.registry import EventPayload
from events.safety import (
    AdverseEventImproved,
    AdverseEventRegraded,
    AdverseEventReported,
    CrsGraded,
    DltAdjudicated,
    DltEvaluationCompleted,
    EnrollmentPaused,
    ExpeditedReportDetermined,
    ExpeditedReportSubmitted,
    IcansGraded,
    LateOosFollowUpRecorded,
)
from projections.bounded import shorten
from services.enrollment.state import eligible
from services.manufacturing.qc import Result, check_result_shape, judge
from trial.calendar import calendar_day
from trial.config import TrialConfig

SUMMARY_LIMIT = 120
"""Characters of a row's line: longer lines (many failed criteria) are shortened."""


def _cells(value: float) -> str:
    return f"{value:.2e}"


def _eligibility(e: EligibilityAssessed) -> str:
    met = sum(1 for c in e.criteria if c.met)
    if eligible(e):
        return f"eligible: {met} of {len(e.criteria)} criteria met"
    failed = ", ".join(c.criterion for c in e.criteria if not c.met)
    return f"not eligible: {met} of {len(e.criteria)} criteria met; not met: {failed}"


def _screen_failed(e: SubjectScreenFailed) -> str:
    failed = ", ".join(c.criterion for c in e.failed_criteria)
    return f"screen failure at {e.stage}: {e.reason_code}" + (f" ({failed})" if failed else "")


@dataclass(frozen=True, slots=True)
class Terms:
    """What a line needs beside its event: the trial (its calendar's zone, its release
    specification) and the cell-dose targets of the subject's lots, as each lot's
    ``ManufacturingStarted`` fixed them."""

    trial: TrialConfig
    lot_targets: Mapping[str, float]


def _qc(e: QcResultRecorded, terms: Terms) -> str:
    """The result and its verdict as the manufacturing service judges it at disposition."""
    parts: list[str] = [e.test]
    if e.value is not None:
        parts.append(f"{e.value:g}")
    if e.outcome is not None:
        parts.append(e.outcome)
    shown = " ".join(parts)
    try:
        check_result_shape(e.test, e.value, e.outcome)
    except ValueError as exc:
        return f"{shown} ({exc})"
    target = terms.lot_targets.get(e.lot_id)
    if e.test == "cell_dose" and target is None:
        return f"{shown}: no target recorded for {e.lot_id} to judge it against"
    verdict = judge(e.test, Result(e.value, e.outcome), terms.trial.release, target or 0.0)
    return f"{shown}: {verdict.status} ({verdict.finding})"


def _consent(e: ConsentRecorded, terms: Terms) -> str:
    day = calendar_day(e.signed_at, terms.trial.zone())
    return f"consent form {e.form_version} signed {day.isoformat()}"


def _infusion(e: InfusionRecorded) -> str:
    line = (
        f"{e.dose_level}: {_cells(e.cells_infused)} CAR T cells, "
        f"{_cells(e.received_cells_per_kg)}/kg received of {_cells(e.target_cells_per_kg)}/kg "
        f"target at {e.weight_kg:g} kg, {e.route}"
    )
    if e.counted_dose_level != e.dose_level:
        line += f"; counts at {e.counted_dose_level or 'no dose level'}"
    return line


def _ae(e: AdverseEventReported) -> str:
    serious = ", ".join(e.serious_criteria) if e.serious_criteria else "not serious"
    expected = "expected" if e.expected else "unexpected"
    return f"{e.term}, CTCAE grade {e.grade}, {serious}, {e.attribution}, {expected}"


_LINES: dict[type[EventPayload], Callable[[Any], str]] = {
    PrescreeningRecorded: lambda e: f"MSLN IHC {e.msln_ihc_percent:g}% of tumour cells",
    EligibilityAssessed: _eligibility,
    SubjectScreenFailed: _screen_failed,
    PriorTherapyRecorded: lambda e: f"{e.therapy_class}"
    + (f" ({e.agent})" if e.agent else "")
    + f", last dose {e.last_dose_on.isoformat()}",
    SubjectEnrolled: lambda e: f"cohort {e.cohort_id}, slot {e.slot}",
    SubjectWaitlisted: lambda e: f"waiting for {e.cohort_id}, position {e.position}",
    SlotReleased: lambda e: f"slot {e.slot} of {e.cohort_id} released",
    SubjectWithdrawn: lambda e: f"withdrawn: {e.reason_code}",
    EligibilityReconfirmed: lambda e: f"eligibility re-confirmed for {e.lot_id}",
    ApheresisCollected: lambda e: f"{e.volume_ml:g} mL, {_cells(e.total_nucleated_cells)} "
    f"nucleated cells, COI {e.coi_id}",
    CustodyTransferred: lambda e: f"{e.from_party} -> {e.to_party} at {e.temperature_c:g} C",
    ManufacturingStarted: lambda e: f"target {_cells(e.target_car_t_cells)} CAR T cells",
    LotHarvested: lambda e: f"{_cells(e.total_viable_cells)} viable cells",
    LotReleased: lambda e: f"{'conditionally ' if e.conditional else ''}released, "
    f"{_cells(e.total_car_t_cells)} CAR T cells",
    LotOutOfSpecification: lambda e: "out of specification: "
    + ", ".join(e.failed_tests)
    + (" (after release)" if e.after_release else ""),
    ExceptionalReleaseDecided: lambda e: f"exceptional release "
    f"{'approved' if e.approved else 'refused'} by the {e.role} {e.decided_by}",
    ExceptionalReleaseApproved: lambda e: f"exceptional release by investigator "
    f"{e.investigator_id} and sponsor {e.sponsor_id}",
    LotCryopreserved: lambda e: f"{e.bag_count} bag(s)",
    LotShipped: lambda e: f"to {e.destination_site}",
    ManufacturingFailed: lambda e: f"manufacturing failed: {e.reason_code}",
    ConditioningDayRecorded: lambda e: f"day {e.day}: fludarabine {e.fludarabine_mg:g} mg, "
    f"cyclophosphamide {e.cyclophosphamide_mg:g} mg",
    BedsideCoiVerified: lambda e: f"COI {e.coi_id} verified by {e.verified_by}",
    BedsideIdentityMismatchRecorded: lambda e: "identity mismatch: " + ", ".join(e.mismatched),
    InfusionRecorded: _infusion,
    AdverseEventReported: _ae,
    CrsGraded: lambda e: f"CRS ASTCT grade {e.grade} ({e.ae_id})",
    IcansGraded: lambda e: f"ICANS ASTCT grade {e.grade} ({e.ae_id})",
    AdverseEventRegraded: lambda e: f"{e.ae_id}: grade {e.previous.grade} -> {e.new.grade}, "
    f"{e.new.attribution}",
    AdverseEventImproved: lambda e: f"{e.ae_id}: {e.outcome}",
    DltAdjudicated: lambda e: f"{e.ae_id}: {e.verdict}"
    + (f" (the rule said {e.rule_verdict})" if e.verdict != e.rule_verdict else ""),
    DltEvaluationCompleted: lambda e: f"{e.window_days}-day window: "
    + (f"DLT ({', '.join(e.dlt_ae_ids)})" if e.dlt else "no DLT"),
    ExpeditedReportDetermined: lambda e: f"{e.ae_id}: "
    + (", ".join(f"{r.report} due {r.due_on.isoformat()}" for r in e.reports_due) or "no report"),
    ExpeditedReportSubmitted: lambda e: f"{e.ae_id}: {e.report} submitted ({e.reference})",
    LateOosFollowUpRecorded: lambda e: f"{', '.join(e.failed_tests)}: {e.assessment}",
    EnrollmentPaused: lambda e: f"{e.rule} ({e.ae_id})",
}


_TRIAL_LINES: dict[type[EventPayload], Callable[[Any, Terms], str]] = {
    ConsentRecorded: _consent,
    QcResultRecorded: _qc,
}
"""The lines that need the trial's terms (a rule's verdict, a calendar day)."""


def summary(
    event: EventPayload, trial: TrialConfig, lot_targets: Mapping[str, float] | None = None
) -> str | None:
    """The row's line for ``event``, None for an event type that has none. ``lot_targets``:
    the cell-dose target of each of the subject's lots (``ManufacturingStarted``)."""
    with_terms = _TRIAL_LINES.get(type(event))
    if with_terms is not None:
        return shorten(with_terms(event, Terms(trial, lot_targets or {})), SUMMARY_LIMIT)
    line = _LINES.get(type(event))
    return None if line is None else shorten(line(event), SUMMARY_LIMIT)
