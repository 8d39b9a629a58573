"""When conditioning and the infusion may happen: the calendar rules of dosing. Pure: the times
come from the commands and the facts, the numbers from the trial file.

Rules, with their sources:
- ``conditioning-days-on-calendar-days``: the regimen is given "for 3 days" (DOMAIN.md 1):
  days, not doses, so each conditioning day falls on a later calendar day than the one before,
  counted in the trial's time zone (trial file ``time_zone``), never minutes apart.
- ``infusion-window-after-conditioning``: the infusion falls within the trial file's
  ``conditioning.infusion_min_days_after_last_day`` to ``infusion_max_days_after_last_day``
  calendar days after the last conditioning day (project default 2 to 14: the tisagenlecleucel
  US prescribing information, section 2).
- ``infusion-within-thaw-limit``: the infusion starts at most ``infusion.
  thaw_to_infusion_max_minutes`` after the product was thawed (project default 2 hours: the
  lisocabtagene maraleucel US prescribing information), and not before it. It applies when
  the thaw's time is known to dosing (``LotThawed.thawed_at``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from services.dosing.state import ConditioningDay, Lot
from services.errors import RuleViolated
from trial.config import TrialConfig


@dataclass(frozen=True, slots=True)
class Timing:
    zone: tzinfo = field(default_factory=lambda: ZoneInfo("America/New_York"))
    infusion_min_days: int = 2
    infusion_max_days: int = 14
    thaw_to_infusion_max_minutes: int = 120

    @classmethod
    def of(cls, trial: TrialConfig) -> Timing:
        return cls(
            zone=trial.zone(),
            infusion_min_days=trial.conditioning.infusion_min_days_after_last_day,
            infusion_max_days=trial.conditioning.infusion_max_days_after_last_day,
            thaw_to_infusion_max_minutes=trial.infusion.thaw_to_infusion_max_minutes,
        )

    def day_of(self, moment: datetime) -> date:
        """The calendar day of ``moment`` in the trial's time zone."""
        return moment.astimezone(self.zone).date()


def conditioning_on_a_new_calendar_day(
    subject_id: str, day: int, given_at: datetime, previous: ConditioningDay, timing: Timing
) -> None:
    today, before = timing.day_of(given_at), timing.day_of(previous.given_at)
    if today > before:
        return
    raise RuleViolated(
        "conditioning-days-on-calendar-days",
        f"conditioning day {day} of subject {subject_id} at {given_at.isoformat()} falls on "
        f"{today.isoformat()}, the calendar day of day {previous.day} "
        f"({previous.given_at.isoformat()}) in {timing.zone}; each conditioning day is given "
        f"on a later calendar day",
        subject_id=subject_id,
        day=day,
        calendar_day=today.isoformat(),
        previous_day=previous.day,
        previous_calendar_day=before.isoformat(),
        time_zone=str(timing.zone),
    )


def infusion_in_window_after_conditioning(
    subject_id: str, infused_at: datetime, last: ConditioningDay, timing: Timing
) -> None:
    days = (timing.day_of(infused_at) - timing.day_of(last.given_at)).days
    if timing.infusion_min_days <= days <= timing.infusion_max_days:
        return
    raise RuleViolated(
        "infusion-window-after-conditioning",
        f"the infusion of subject {subject_id} on {timing.day_of(infused_at).isoformat()} is "
        f"{days} calendar day(s) after the last conditioning day (day {last.day}, "
        f"{timing.day_of(last.given_at).isoformat()}, {timing.zone}); this trial infuses "
        f"{timing.infusion_min_days} to {timing.infusion_max_days} days after it",
        subject_id=subject_id,
        days_after_last_conditioning_day=days,
        min_days=timing.infusion_min_days,
        max_days=timing.infusion_max_days,
        time_zone=str(timing.zone),
    )


def infusion_within_thaw_limit(lot: Lot, infused_at: datetime, timing: Timing) -> None:
    if lot.thawed_at is None:
        return
    limit = timedelta(minutes=timing.thaw_to_infusion_max_minutes)
    elapsed = infused_at - lot.thawed_at
    if timedelta(0) <= elapsed <= limit:
        return
    minutes = elapsed.total_seconds() / 60
    when = "before it was thawed" if elapsed < timedelta(0) else f"{minutes:.0f} min after thaw"
    raise RuleViolated(
        "infusion-within-thaw-limit",
        f"lot {lot.lot_id} thawed at {lot.thawed_at.isoformat()} cannot be infused at "
        f"{infused_at.isoformat()} ({when}); this trial infuses within "
        f"{timing.thaw_to_infusion_max_minutes} minutes of thawing",
        lot_id=lot.lot_id,
        thawed_at=lot.thawed_at.isoformat(),
        infused_at=infused_at.isoformat(),
        minutes_after_thaw=round(minutes, 1),
        max_minutes=timing.thaw_to_infusion_max_minutes,
    )
