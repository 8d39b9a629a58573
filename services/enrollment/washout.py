"""Washout: the calendar days that must pass between a prior therapy's last dose and the
leukapheresis, and between it and the infusion (issue 11 item 5).

Source: the trial file's ``washout``, days per therapy class and per milestone; the shipped file
carries the project's defaults and says in ``defaults_chosen`` where each number comes from
(checkpoint inhibitors 28 days, chemotherapy 14, investigational agents 28, systemic steroids
above physiological doses 7 before leukapheresis and 3 before infusion).

How the days are counted: calendar days in the trial's time zone (``TrialConfig.zone()``), as
protocols count them. A last dose on 1 March and a leukapheresis on the local date 29 March are
28 days apart, so a 28-day washout is complete on 29 March and not on 28 March, whatever the
hour or the UTC offset the collection's time was written with.

Enrollment records the therapies (``RecordPriorTherapy`` -> ``PriorTherapyRecorded``, in
``screening``); manufacturing (the leukapheresis) and dosing (the infusion) follow enrollment's
topic, keep the latest last dose per class with ``with_prior_therapy`` and call
``require_washout``. Pure, and free of enrollment's own state, so that the other contexts'
deciders can call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from events.enrollment import PriorTherapyRecorded
from services.errors import RuleViolated
from services.persistent import put
from trial.config import TrialConfig

Milestone = Literal["leukapheresis", "infusion"]

LastDoses = Mapping[str, date]
"""Therapy class -> the latest last dose recorded for it."""


@dataclass(frozen=True, slots=True)
class WashoutRules:
    """The trial file's washout days and the zone its calendar days are counted in."""

    days: Mapping[str, Mapping[Milestone, int]]
    zone: ZoneInfo

    @classmethod
    def of(cls, trial: TrialConfig) -> WashoutRules:
        return cls(
            days={
                therapy: {
                    "leukapheresis": w.before_leukapheresis_days,
                    "infusion": w.before_infusion_days,
                }
                for therapy, w in trial.washout.items()
            },
            zone=trial.zone(),
        )


@dataclass(frozen=True, slots=True)
class Violation:
    therapy_class: str
    last_dose_on: date
    days_since: int
    required_days: int

    @property
    def earliest_on(self) -> date:
        return self.last_dose_on + timedelta(days=self.required_days)

    def as_dict(self) -> dict[str, object]:
        return {
            "therapy_class": self.therapy_class,
            "last_dose_on": self.last_dose_on.isoformat(),
            "days_since": self.days_since,
            "required_days": self.required_days,
            "earliest_on": self.earliest_on.isoformat(),
        }


def with_prior_therapy(
    known: Mapping[str, LastDoses], event: PriorTherapyRecorded
) -> Mapping[str, LastDoses]:
    """``known`` (subject -> class -> last dose) with ``event``: a class keeps its latest last
    dose, so a record of an earlier course never shortens the washout of a later one."""
    doses = known.get(event.subject_id, {})
    latest = doses.get(event.therapy_class)
    if latest is not None and latest >= event.last_dose_on:
        return known
    return put(known, event.subject_id, {**doses, event.therapy_class: event.last_dose_on})


def washout_violations(
    last_doses: LastDoses, milestone: Milestone, at: datetime, rules: WashoutRules
) -> list[Violation]:
    """Every therapy class whose washout before ``milestone``, reached at ``at``, is not
    complete: fewer calendar days (in the trial's zone) than the trial file requires between its
    last dose and the milestone's date. A class the trial file does not name has no washout."""
    on = at.astimezone(rules.zone).date()
    found = []
    for therapy, last in sorted(last_doses.items()):
        required = rules.days.get(therapy, {}).get(milestone, 0)
        since = (on - last).days
        if since < required:
            found.append(Violation(therapy, last, since, required))
    return found


def require_washout(
    subject_id: str,
    last_doses: LastDoses,
    milestone: Milestone,
    at: datetime,
    rules: WashoutRules,
) -> None:
    """Refuses with ``washout-complete``, naming each therapy, its last dose, the days passed,
    the days required and the first day the milestone is allowed."""
    violations = washout_violations(last_doses, milestone, at, rules)
    if not violations:
        return
    on = at.astimezone(rules.zone).date()
    described = "; ".join(
        f"{v.therapy_class} last given {v.last_dose_on.isoformat()}, {v.days_since} of "
        f"{v.required_days} days (not before {v.earliest_on.isoformat()})"
        for v in violations
    )
    raise RuleViolated(
        "washout-complete",
        f"subject {subject_id}: the washout before {milestone} on {on.isoformat()} is not "
        f"complete: {described}",
        subject_id=subject_id,
        milestone=milestone,
        on=on.isoformat(),
        violations=[v.as_dict() for v in violations],
    )
