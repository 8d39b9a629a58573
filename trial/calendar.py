"""The trial's calendar: calendar days counted in the sponsor's time zone (``TrialConfig.zone()``).

Regulatory clocks count calendar days (21 CFR 312.32(c)), and so do the protocol's day counts
(the DLT window, DOMAIN.md sections 2.6 and 3). A day is a date in the sponsor's zone, so the
same instant gives the same day whatever UTC offset its timestamp was written with.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo


def calendar_day(moment: datetime, zone: tzinfo) -> date:
    """The date of ``moment`` (an aware datetime) in ``zone``."""
    return moment.astimezone(zone).date()


def days_after(moment: datetime, start: datetime, zone: tzinfo) -> int:
    """Calendar days from ``start`` (day 0) to ``moment``, counted in ``zone``."""
    return (calendar_day(moment, zone) - calendar_day(start, zone)).days


def end_of_day(day: date, zone: tzinfo) -> datetime:
    """The first instant after ``day`` ends in ``zone``: midnight of the next day there."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
