"""Expedited (IND safety) reporting: the safety officer's determination and submissions.

Rules (21 CFR 312.32(c)-(d), ICH E2A; deadlines in services/safety/reporting.py):
- The initial determination is made once, for a case that qualifies (serious, unexpected and
  at least possibly related), not before the sponsor received the information; its date is
  day 0 of the 15-day report. The 7-day clock of a fatal or life-threatening case runs from the
  sponsor's receipt whether or not the determination is made, and no later record moves it.
- A follow-up determination (new information received at a given time) comes after the initial
  one and puts follow-up report N on a 15-day clock from that receipt.
- A report is submitted once, and only a report that is on the clock; the complete report of a
  fatal or life-threatening case follows its 7-day report.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from events.safety import ExpeditedReportDetermined, ExpeditedReportSubmitted, ReportDue
from services.decider import NewEvent
from services.errors import RuleViolated
from services.safety.checks import ae_stream, known_ae, not_in_future
from services.safety.commands import DetermineExpeditedReport, SubmitExpeditedReport
from services.safety.reporting import SafetyCase, follow_up_due, reports_due
from services.safety.state import AdverseEvent, SafetyState, normalised
from trial.config import Reporting


def case_of(ae: AdverseEvent, rules: Reporting) -> SafetyCase:
    return SafetyCase(
        serious_criteria=ae.serious_criteria,
        attribution=ae.attribution,
        expected=ae.expected,
        sponsor_received_at=ae.sponsor_received_at,
        suspected_from=rules.suspected_from,
        determined_at=ae.determined_at,
    )


def due_for(ae: AdverseEvent, rules: Reporting, zone: tzinfo) -> tuple[ReportDue, ...]:
    """Every report on this AE's clock: the initial ones and the follow-ups determined; days
    in the sponsor's time zone ``zone``."""
    return (*reports_due(case_of(ae, rules), rules, zone), *ae.follow_ups)


def awaiting_determination(state: SafetyState, rules: Reporting) -> tuple[AdverseEvent, ...]:
    """The AEs that qualify for expedited reporting and have no determination yet, by id."""
    return tuple(
        ae
        for ae in sorted(state.adverse_events.values(), key=lambda a: a.ae_id)
        if case_of(ae, rules).awaits_determination
    )


def aggregate_review(
    state: SafetyState, rules: Reporting
) -> dict[str, tuple[AdverseEvent, ...]]:
    """Serious expected suspected adverse reactions by term (normalised: case, hyphens and
    spacing ignored), for the sponsor's aggregate review of their rate of occurrence
    (21 CFR 312.32(c)(1)(iv)); each term's AEs by id."""
    by_term: dict[str, list[AdverseEvent]] = {}
    for ae in sorted(state.adverse_events.values(), key=lambda a: a.ae_id):
        if case_of(ae, rules).for_aggregate_review:
            by_term.setdefault(normalised(ae.term), []).append(ae)
    return {term: tuple(aes) for term, aes in sorted(by_term.items())}


def determine(
    cmd: DetermineExpeditedReport, state: SafetyState, rules: Reporting, zone: tzinfo
) -> list[NewEvent]:
    ae = known_ae(state, cmd.ae_id)
    if cmd.follow_up_information_received_at is not None:
        return _follow_up(cmd, cmd.follow_up_information_received_at, ae, rules, zone)
    if ae.determined_at is not None:
        raise RuleViolated(
            "expedited-determination-once",
            f"{ae.ae_id} was determined to qualify on {ae.determined_at.isoformat()}; new "
            "information calls for a follow-up determination",
            ae_id=ae.ae_id,
        )
    case = case_of(ae, rules)
    if not case.qualifies:
        raise RuleViolated(
            "case-must-qualify",
            f"{ae.ae_id} does not qualify for expedited reporting: serious={case.serious}, "
            f"unexpected={not case.expected}, suspected={case.suspected} "
            f"(attribution {case.attribution}); all three are required",
            ae_id=ae.ae_id,
            serious=case.serious,
            unexpected=not case.expected,
            suspected=case.suspected,
        )
    if cmd.occurred_at < ae.sponsor_received_at:
        raise RuleViolated(
            "determination-after-receipt",
            f"{ae.ae_id}: a determination at {cmd.occurred_at.isoformat()} is before the "
            f"sponsor received the information at {ae.sponsor_received_at.isoformat()}",
            ae_id=ae.ae_id,
        )
    determined = SafetyCase(
        serious_criteria=case.serious_criteria,
        attribution=case.attribution,
        expected=case.expected,
        sponsor_received_at=case.sponsor_received_at,
        suspected_from=case.suspected_from,
        determined_at=cmd.occurred_at,
    )
    payload = ExpeditedReportDetermined(
        ae_id=ae.ae_id,
        subject_id=ae.subject_id,
        basis="initial",
        determined_at=cmd.occurred_at,
        information_received_at=ae.sponsor_received_at,
        reports_due=reports_due(determined, rules, zone),
    )
    return [NewEvent(ae_stream(ae.ae_id), payload, cmd.occurred_at)]


def _follow_up(
    cmd: DetermineExpeditedReport,
    received: datetime,
    ae: AdverseEvent,
    rules: Reporting,
    zone: tzinfo,
) -> list[NewEvent]:
    if ae.determined_at is None:
        raise RuleViolated(
            "follow-up-needs-an-initial-determination",
            f"{ae.ae_id} has no initial expedited-report determination to follow up",
            ae_id=ae.ae_id,
        )
    if received < ae.sponsor_received_at:
        raise RuleViolated(
            "follow-up-after-receipt",
            f"{ae.ae_id}: new information at {received.isoformat()} is before the sponsor's "
            f"initial receipt at {ae.sponsor_received_at.isoformat()}",
            ae_id=ae.ae_id,
        )
    not_in_future("follow_up_information_received_at", received, cmd.occurred_at)
    number = len(ae.follow_ups) + 1
    payload = ExpeditedReportDetermined(
        ae_id=ae.ae_id,
        subject_id=ae.subject_id,
        basis=f"follow-up-{number}",
        determined_at=cmd.occurred_at,
        information_received_at=received,
        reports_due=(follow_up_due(number, received, rules, zone),),
    )
    return [NewEvent(ae_stream(ae.ae_id), payload, cmd.occurred_at)]


def submit(
    cmd: SubmitExpeditedReport, state: SafetyState, rules: Reporting, zone: tzinfo
) -> list[NewEvent]:
    ae = known_ae(state, cmd.ae_id)
    due = {d.report: d for d in due_for(ae, rules, zone)}
    if cmd.report not in due:
        raise RuleViolated(
            "report-must-be-due",
            f"{ae.ae_id} has no {cmd.report} report on the clock; due: "
            f"{[f'{d.report} by {d.due_on}' for d in due.values()] or 'none'}",
            ae_id=ae.ae_id,
            report=cmd.report,
            due=sorted(due),
        )
    if cmd.report in ae.submitted:
        raise RuleViolated(
            "report-submitted-once",
            f"the {cmd.report} report of {ae.ae_id} is already submitted",
            ae_id=ae.ae_id,
            report=cmd.report,
        )
    if cmd.report == "7-day-complete" and "7-day" not in ae.submitted:
        raise RuleViolated(
            "complete-report-follows-the-7-day-report",
            f"{ae.ae_id}: the complete report follows the 7-day report, not yet submitted",
            ae_id=ae.ae_id,
        )
    payload = ExpeditedReportSubmitted(
        ae_id=ae.ae_id,
        subject_id=ae.subject_id,
        report=cmd.report,
        submitted_at=cmd.occurred_at,
        due_on=due[cmd.report].due_on,
        reference=cmd.reference,
    )
    return [NewEvent(ae_stream(ae.ae_id), payload, cmd.occurred_at)]
