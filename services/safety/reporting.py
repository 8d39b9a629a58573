"""The expedited-reporting clock: which IND safety reports a case needs, and by when.

Sources (DOMAIN.md section 3; calendar days; the numbers come from ``TrialConfig.reporting``):
- 21 CFR 312.32(c)(2): an unexpected fatal or life-threatening suspected adverse reaction is
  reported no later than 7 calendar days after the sponsor's initial receipt of the
  information; ICH E2A: followed by as complete a report as possible within 8 additional
  calendar days.
- 21 CFR 312.32(c)(1): a serious and unexpected suspected adverse reaction is reported no later
  than 15 calendar days after the sponsor determines that the information qualifies. FDA's
  guidance (2012) adds that the 7-day report does not replace the 15-day report.
- 21 CFR 312.32(d): relevant follow-up information is submitted within 15 calendar days of its
  receipt.

Day 0 is the calendar date of the receipt (or determination) in the sponsor's time zone
(``TrialConfig.zone()``): the same instant gives the same day 0 whatever UTC offset its
timestamp was written with. The report is due on day 0 + N. Day 0 is never the onset nor the
time the record was written, and a late assessment never moves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from events.safety import ATTRIBUTION_ORDER, Attribution, ReportDue, SeriousnessCriterion
from trial.calendar import calendar_day
from trial.config import Reporting

FATAL_OR_LIFE_THREATENING: frozenset[SeriousnessCriterion] = frozenset(
    {"death", "life-threatening"}
)


@dataclass(frozen=True, slots=True)
class SafetyCase:
    """What the clock needs from an AE."""

    serious_criteria: tuple[SeriousnessCriterion, ...]
    attribution: Attribution
    expected: bool
    sponsor_received_at: datetime
    suspected_from: Attribution
    """The trial's lowest attribution of a suspected adverse reaction (``Reporting``)."""
    determined_at: datetime | None = None

    @property
    def serious(self) -> bool:
        return bool(self.serious_criteria)

    @property
    def fatal_or_life_threatening(self) -> bool:
        return bool(FATAL_OR_LIFE_THREATENING & set(self.serious_criteria))

    @property
    def suspected(self) -> bool:
        """A suspected adverse reaction: a reasonable possibility that the product caused it
        (21 CFR 312.32(a)), at least the trial's ``reporting.suspected_from`` (default
        possible)."""
        return ATTRIBUTION_ORDER.index(self.attribution) >= ATTRIBUTION_ORDER.index(
            self.suspected_from
        )

    @property
    def qualifies(self) -> bool:
        """Serious, unexpected and suspected: an IND safety report (21 CFR 312.32(c)(1))."""
        return self.serious and not self.expected and self.suspected

    @property
    def for_aggregate_review(self) -> bool:
        """Serious, suspected and expected (listed in the protocol or investigator's brochure):
        no individual IND safety report, but counted for the aggregate review of an increased
        rate of occurrence of serious suspected adverse reactions over the listed rate
        (21 CFR 312.32(c)(1)(iv))."""
        return self.serious and self.expected and self.suspected

    @property
    def awaits_determination(self) -> bool:
        """A qualifying case whose determination is not recorded yet: the sponsor must review
        it promptly (21 CFR 312.32(b)) and the 15-day clock starts only with the determination
        (312.32(c)(1)), so the case is shown as "determination due" from the moment it is
        recorded until the determination is."""
        return self.qualifies and self.determined_at is None


def day_zero(moment: datetime, zone: tzinfo) -> date:
    """The calendar day of ``moment`` in the sponsor's time zone (21 CFR 312.32(c): calendar
    days)."""
    return calendar_day(moment, zone)


def reports_due(case: SafetyCase, rules: Reporting, zone: tzinfo) -> tuple[ReportDue, ...]:
    """The expedited reports ``case`` needs and their deadlines, earliest first.

    An unexpected fatal or life-threatening suspected adverse reaction is on the 7-day clock
    (and its complete report 8 days later) from the sponsor's receipt, determined or not; the
    15-day report runs from the determination, so it is due only once that is recorded."""
    if not case.qualifies:
        return ()
    due: list[ReportDue] = []
    if case.fatal_or_life_threatening:
        received = day_zero(case.sponsor_received_at, zone)
        seven = received + timedelta(days=rules.fatal_or_life_threatening_days)
        due.append(ReportDue(report="7-day", day_zero=received, due_on=seven))
        complete = seven + timedelta(days=rules.complete_report_after_initial_days)
        due.append(ReportDue(report="7-day-complete", day_zero=received, due_on=complete))
    if case.determined_at is not None:
        determined = day_zero(case.determined_at, zone)
        fifteen = determined + timedelta(days=rules.serious_unexpected_days)
        due.append(ReportDue(report="15-day", day_zero=determined, due_on=fifteen))
    return tuple(sorted(due, key=lambda d: (d.due_on, d.report)))


def follow_up_due(
    number: int, information_received_at: datetime, rules: Reporting, zone: tzinfo
) -> ReportDue:
    """Follow-up report ``number`` (1, 2, ...), due 15 calendar days after the sponsor received
    the new information (21 CFR 312.32(d))."""
    received = day_zero(information_received_at, zone)
    return ReportDue(
        report=f"follow-up-{number}",
        day_zero=received,
        due_on=received + timedelta(days=rules.follow_up_days),
    )
