"""Which alerts are due: the inbox's items with a deadline whose stage holds (decision 52). Pure.

An item is alerted at two stages: ``approaching`` once the moment is within the trial's lead
time of its deadline (``TrialConfig.alerts``, per kind, default 24 hours), and ``overdue`` once
the inbox calls it overdue. Only the stage that holds now is alerted (an item first seen
overdue is not announced as approaching). A deadline that is a calendar day (a reporting
clock, 21 CFR 312.32(c)) ends when that day ends in the sponsor's time zone, as the inbox
counts overdue; an instant (a DLT window's end) is its own deadline. An alert the log shows
delivered is not due again; one whose last delivery failed waits ``retry_after(failures)``
before the next attempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from events.notifications import Stage, alert_id_of
from projections.inbox import Desk, Item
from trial.config import TrialConfig

FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(hours=1)


@dataclass(frozen=True)
class Alert:
    alert_id: str
    stage: Stage
    item: Item
    deadline: datetime
    began: datetime
    """When the stage began: the deadline less the lead time (approaching), the deadline
    (overdue). A function of the item, so a raise sent twice is the same request."""
    part: str | None = None
    """Set when another item shares the rest of the id (``events.notifications.alert_id_of``)"""

    @property
    def due(self) -> str:
        assert self.item.due is not None
        return self.item.due.isoformat()

    def as_json(self) -> dict[str, Any]:
        """What a channel receives: the alert's id (to de-duplicate on), its stage and
        deadline, and the inbox item (who may clear it, the route, why)."""
        return {
            "alert_id": self.alert_id,
            "stage": self.stage,
            "deadline": self.deadline.isoformat(),
            **self.item.as_json(),
        }


def deadline_of(due: date | datetime, zone: ZoneInfo) -> datetime:
    """The instant a deadline passes: a calendar day ends at the next midnight in ``zone``."""
    if isinstance(due, datetime):
        return due
    return datetime.combine(due + timedelta(days=1), time.min, zone)


def part_of(item: Item) -> str:
    """What tells apart two items of one kind, subject and deadline (two reports of one AE due
    the same day): the first 8 hex digits of the SHA-256 of the item's detail."""
    return hashlib.sha256(item.detail.encode()).hexdigest()[:8]


def alerts_due(items: Iterable[Item], trial: TrialConfig, as_of: datetime) -> list[Alert]:
    """The alerts whose stage holds at ``as_of`` among ``items`` (every role's), one per item.
    An item alone with its stage, kind, subject and deadline has the id they give; two or more
    sharing them each get the id with their ``part_of`` appended (an item alerted alone before
    a second appeared is alerted once more under its new id: a copy, never a miss)."""
    zone = trial.zone()
    items = list(items)
    shared: dict[str, int] = {}
    for item in items:
        if item.due is not None:
            key = f"{item.kind}/{item.subject}/{item.due.isoformat()}"
            shared[key] = shared.get(key, 0) + 1
    alerts: dict[str, Alert] = {}
    for item in items:
        if item.due is None:
            continue
        deadline = deadline_of(item.due, zone)
        stage: Stage
        if item.overdue:
            stage, began = "overdue", deadline
        elif as_of >= deadline - trial.alerts.lead(item.kind):
            stage, began = "approaching", deadline - trial.alerts.lead(item.kind)
        else:
            continue
        due = item.due.isoformat()
        part = part_of(item) if shared[f"{item.kind}/{item.subject}/{due}"] > 1 else None
        alert_id = alert_id_of(stage, item.kind, item.subject, due, part)
        alerts.setdefault(alert_id, Alert(alert_id, stage, item, deadline, began, part))
    return list(alerts.values())


def retry_after(failures: int) -> timedelta:
    """The wait after the ``failures``-th failed delivery: doubling from a minute, at most an
    hour, so a receiver that is down is not hammered and the log not flooded."""
    if failures <= 0:
        return timedelta(0)
    wait: timedelta = FIRST_RETRY * (2 ** min(failures - 1, 16))
    return min(wait, LAST_RETRY)


def to_send(desk: Desk, trial: TrialConfig, as_of: datetime) -> list[Alert]:
    """The alerts due at ``as_of`` that the desk's log does not show delivered and whose last
    failed attempt, if any, is old enough to try again."""
    state = desk.notifications
    due = []
    for alert in alerts_due(desk.pending(trial, as_of), trial, as_of):
        if alert.alert_id in state.delivered:
            continue
        failed_at = desk.failed_at.get(alert.alert_id)
        wait = retry_after(state.failed_attempts(alert.alert_id))
        if failed_at is not None and as_of < failed_at + wait:
            continue
        due.append(alert)
    return due
