"""The dose-limiting toxicity rule: a pure function of one AE's facts and the trial's DLT rule.

Source: DOMAIN.md section 3 "DLT" (the project's default, configured per trial in
``TrialConfig.dlt``): an AE at least possibly related, with onset in the DLT window (infusion
day 0 to ``window_days``), that is grade 5; or grade >= 4 CRS or ICANS; or grade 3 CRS/ICANS
not improving to grade <= 2 within 72 hours; or other grade >= 3 non-haematological toxicity
not resolving to grade <= 2 within 7 days (expected laboratory effects of conditioning
excluded). The verdict comes with the criterion that decided it and every finding checked on
the way, so the adjudication records why. Day 0 starts at the infusion itself: an onset earlier
on the day of the infusion is outside the window. The window counts calendar days in the
sponsor's time zone (``TrialConfig.zone()``, trial/calendar.py) and ends when its last day ends
there: an onset late on day ``window_days`` is inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Literal, Protocol

from events.safety import ATTRIBUTION_ORDER, Attribution
from trial.calendar import calendar_day, days_after, end_of_day
from trial.config import DltRule

Syndrome = Literal["crs", "icans", "other"]
RuleVerdict = Literal["dlt", "not-dlt", "pending"]


@dataclass(frozen=True, slots=True)
class DltFacts:
    """What the rule looks at. ``grade`` is the AE's worst grade; ``severe_since`` is when it
    was first known at grade >= 3; ``improved_at`` when it first improved to <= 2 or resolved;
    ``as_of`` is the moment of the adjudication."""

    syndrome: Syndrome
    grade: int
    attribution: Attribution
    onset_at: datetime
    infused_at: datetime
    as_of: datetime
    severe_since: datetime | None = None
    improved_at: datetime | None = None
    haematological: bool = False
    conditioning_lab_effect: bool = False


@dataclass(frozen=True, slots=True)
class DltAssessment:
    verdict: RuleVerdict
    criterion: str
    """The slug of the finding that decided the verdict."""
    findings: tuple[str, ...]
    """Every check made, in order, with its values."""
    clock_ends: datetime | None = None
    """When the verdict waits on an improvement clock (a severe AE not yet improved): the
    moment the clock ends. The rule has no verdict up to and including it (``pending``) and
    says ``dlt`` at any moment after; None when the verdict does not depend on the moment."""


class Verdicts(Protocol):
    """Builds the assessment from a verdict, its criterion and the finding that decided it
    (and the end of the improvement clock it waits on, if any)."""

    def __call__(
        self, value: RuleVerdict, criterion: str, finding: str, clock_ends: datetime | None = ...
    ) -> DltAssessment: ...


def study_day(moment: datetime, infused_at: datetime, zone: tzinfo) -> int:
    """Calendar days after the infusion (day 0), counted in the sponsor's time zone, so the
    same instant is the same study day whatever UTC offset its timestamp was written with."""
    return days_after(moment, infused_at, zone)


def window_last_day(infused_at: datetime, window_days: int, zone: tzinfo) -> date:
    """The DLT window's last day: study day ``window_days`` (DOMAIN.md section 3;
    ``TrialConfig.dlt.window_days``), a date in the sponsor's time zone."""
    return calendar_day(infused_at, zone) + timedelta(days=window_days)


def window_ends_at(infused_at: datetime, window_days: int, zone: tzinfo) -> datetime:
    """The end of the DLT window: the end, in the sponsor's time zone, of its last day. An
    onset at any time on that day is in the window, so no evaluation closes before this
    instant. The one computation of the window's end: the safety decider and every projection
    call it."""
    return end_of_day(window_last_day(infused_at, window_days, zone), zone)


def at_least(attribution: Attribution, minimum: Attribution) -> bool:
    return ATTRIBUTION_ORDER.index(attribution) >= ATTRIBUTION_ORDER.index(minimum)


def assess_dlt(facts: DltFacts, rule: DltRule, zone: tzinfo) -> DltAssessment:
    """Apply the trial's DLT rule to one AE (DOMAIN.md section 3, ``TrialConfig.dlt``); study
    days are counted in ``zone``, the sponsor's time zone."""
    findings: list[str] = []

    def verdict(
        value: RuleVerdict, criterion: str, finding: str, clock_ends: datetime | None = None
    ) -> DltAssessment:
        return DltAssessment(value, criterion, (*findings, finding), clock_ends)

    if not at_least(facts.attribution, rule.min_attribution):
        return verdict(
            "not-dlt",
            "below-attribution",
            f"attribution {facts.attribution} is below the minimum {rule.min_attribution}",
        )
    findings.append(f"attribution {facts.attribution} is at least {rule.min_attribution}")

    day = study_day(facts.onset_at, facts.infused_at, zone)
    window = f"the DLT window (day 0 to {rule.window_days})"
    if facts.onset_at < facts.infused_at:
        return verdict(
            "not-dlt",
            "onset-before-infusion",
            f"onset {facts.onset_at.isoformat()} is before the infusion "
            f"{facts.infused_at.isoformat()}, outside {window}",
        )
    if not 0 <= day <= rule.window_days:
        return verdict(
            "not-dlt",
            "onset-outside-window",
            f"onset on day {day} after infusion, outside {window}",
        )
    findings.append(f"onset on day {day} after infusion, inside {window}")

    if rule.grade5 and facts.grade == 5:
        return verdict("dlt", "grade5", "grade 5 (death related to the AE)")
    if facts.syndrome in ("crs", "icans"):
        return _crs_or_icans(facts, rule, verdict)
    return _other(facts, rule, verdict)


def _crs_or_icans(facts: DltFacts, rule: DltRule, verdict: Verdicts) -> DltAssessment:
    name = facts.syndrome.upper()
    if facts.grade >= rule.crs_or_icans_min_grade:
        return verdict(
            "dlt",
            "crs-icans-grade",
            f"grade {facts.grade} {name} (>= {rule.crs_or_icans_min_grade})",
        )
    if facts.grade == 3:
        limit = timedelta(hours=rule.crs_or_icans_grade3_resolution_hours)
        return _must_improve(
            facts,
            limit,
            f"grade 3 {name}",
            f"{rule.crs_or_icans_grade3_resolution_hours} h",
            "crs-icans-grade3",
            verdict,
        )
    return verdict("not-dlt", "below-grade", f"grade {facts.grade} {name} (below grade 3)")


def _other(facts: DltFacts, rule: DltRule, verdict: Verdicts) -> DltAssessment:
    if facts.haematological:
        return verdict("not-dlt", "haematological", "haematological toxicity: outside the DLT rule")
    if facts.conditioning_lab_effect:
        return verdict(
            "not-dlt",
            "conditioning-lab-effect",
            "expected laboratory effect of conditioning: excluded from the DLT rule",
        )
    minimum = rule.other_nonhematologic_min_grade
    if facts.grade < minimum:
        return verdict(
            "not-dlt",
            "below-grade",
            f"grade {facts.grade} non-haematological (below grade {minimum})",
        )
    days = rule.other_resolution_days
    return _must_improve(
        facts,
        timedelta(days=days),
        f"grade {facts.grade} non-haematological toxicity",
        f"{days} days",
        "non-haematological",
        verdict,
    )


def _must_improve(
    facts: DltFacts,
    limit: timedelta,
    what: str,
    limit_text: str,
    slug: str,
    verdict: Verdicts,
) -> DltAssessment:
    """A severe AE is a DLT unless it improved to grade <= 2 within ``limit`` of first being
    severe; an improvement at exactly the limit is within it."""
    since = facts.severe_since or facts.onset_at
    deadline = since + limit
    if facts.improved_at is not None:
        took = _hours(facts.improved_at - since)
        if facts.improved_at <= deadline:
            return verdict(
                "not-dlt",
                f"{slug}-improved",
                f"{what} improved to grade <= 2 after {took} h, within {limit_text}",
            )
        return verdict(
            "dlt",
            f"{slug}-not-improved",
            f"{what} improved to grade <= 2 only after {took} h, later than {limit_text}",
        )
    if facts.as_of > deadline:
        return verdict(
            "dlt",
            f"{slug}-not-improved",
            f"{what} not improved to grade <= 2 within {limit_text} "
            f"(severe since {since.isoformat()})",
            clock_ends=deadline,
        )
    return verdict(
        "pending",
        f"{slug}-pending",
        f"{what} since {since.isoformat()} has until {deadline.isoformat()} ({limit_text}) "
        "to improve to grade <= 2",
        clock_ends=deadline,
    )


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g}" if hours == int(hours) else f"{hours:.1f}"
