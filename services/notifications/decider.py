"""The notifications decider: alerts raised from the inbox and the outcome of delivering them
(issue 15, decision 52). Pure.

Rules:
- ``alert-id-names-the-item``: an alert's id is the one ``events.notifications.alert_id_of``
  derives from its stage, kind, subject, deadline and part (two items sharing the rest), so
  the same item at the same stage can never be raised under two ids;
- ``alert-raised-once``: an alert id is raised once; a second raise is refused (a restarted
  worker, or two, racing for the same alert);
- ``delivery-of-a-raised-alert``: a delivery outcome is recorded only for an alert raised.
Every delivery attempt is recorded, successful or not: if one was made twice (a worker stopped
between sending and recording), the log says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from events.notifications import (
    AlertDelivered,
    AlertDeliveryFailed,
    AlertId,
    AlertRaised,
    NotifierName,
    Part,
    Problem,
    RoleName,
    Stage,
    alert_id_of,
    stream_of,
)
from events.registry import EventPayload
from services.decider import Decider, NewEvent
from services.errors import NotFound, RuleViolated
from trial.config import TrialConfig


class RaiseAlert(BaseModel):
    """Raise the alert ``alert_id`` of an inbox item at ``stage``, for the roles who may
    clear it (as the inbox lists them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime
    alert_id: AlertId
    stage: Stage
    kind: str = Field(min_length=1, max_length=64)
    subject: str = Field(min_length=1, max_length=128)
    due: str = Field(min_length=10, max_length=40)
    roles: tuple[RoleName, ...] = Field(min_length=1)
    route: str = Field(max_length=200)
    detail: str = Field(max_length=1000)
    why: tuple[Annotated[str, Field(max_length=64)], ...] = Field(default=(), max_length=200)
    part: Part | None = None
    notifier: NotifierName | None = None


class RecordAlertDelivery(BaseModel):
    """Record the outcome of one attempt to deliver ``alert_id``: ``delivered`` (with the
    number of channels notified) or ``failed`` (with the problem)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime
    alert_id: AlertId
    roles: tuple[RoleName, ...] = Field(min_length=1)
    outcome: Literal["delivered", "failed"]
    channels: int | None = Field(default=None, ge=1)
    problem: Problem | None = None

    @model_validator(mode="after")
    def _outcome_has_its_facts(self) -> RecordAlertDelivery:
        if self.outcome == "delivered" and (self.channels is None or self.problem is not None):
            raise ValueError("a delivered alert names its channels and no problem")
        if self.outcome == "failed" and (self.problem is None or self.channels is not None):
            raise ValueError("a failed delivery names its problem and no channels")
        return self


@dataclass(frozen=True)
class NotificationsState:
    raised: frozenset[str] = frozenset()
    delivered: frozenset[str] = frozenset()
    failures: tuple[tuple[str, int], ...] = ()
    """(alert id, failed attempts) of the alerts with at least one failure"""
    notifiers: tuple[tuple[str, str], ...] = ()
    """(alert id, the notifier that raised it) of the alerts raised naming one"""

    def failed_attempts(self, alert_id: str) -> int:
        return dict(self.failures).get(alert_id, 0)

    def notifier_of(self, alert_id: str) -> str | None:
        """The notifier that raised ``alert_id`` (None: not named, any may deliver)."""
        return dict(self.notifiers).get(alert_id)


initial_state = NotificationsState()


def decide(command: RaiseAlert | RecordAlertDelivery, state: NotificationsState) -> list[NewEvent]:
    if isinstance(command, RaiseAlert):
        derived = alert_id_of(command.stage, command.kind, command.subject, command.due,
                              command.part)
        if command.alert_id != derived:
            raise RuleViolated(
                "alert-id-names-the-item",
                f"alert {command.alert_id} of {command.stage} {command.kind} {command.subject} "
                f"due {command.due} must be named {derived}",
                alert_id=command.alert_id,
                expected=derived,
            )
        if command.alert_id in state.raised:
            raise RuleViolated(
                "alert-raised-once",
                f"alert {command.alert_id} is already raised",
                alert_id=command.alert_id,
            )
        raised = AlertRaised(
            alert_id=command.alert_id,
            stage=command.stage,
            kind=command.kind,
            subject=command.subject,
            due=command.due,
            roles=command.roles,
            route=command.route,
            detail=command.detail,
            why=command.why,
            part=command.part,
            notifier=command.notifier,
        )
        return [NewEvent(stream_of(command.alert_id), raised, command.occurred_at)]
    if command.alert_id not in state.raised:
        raise NotFound(
            "delivery-of-a-raised-alert",
            f"alert {command.alert_id} was never raised: no delivery of it can be recorded",
            alert_id=command.alert_id,
        )
    outcome: EventPayload
    if command.outcome == "delivered":
        assert command.channels is not None  # the command's validator
        outcome = AlertDelivered(
            alert_id=command.alert_id, roles=command.roles, channels=command.channels
        )
    else:
        assert command.problem is not None
        outcome = AlertDeliveryFailed(
            alert_id=command.alert_id, roles=command.roles, problem=command.problem
        )
    return [NewEvent(stream_of(command.alert_id), outcome, command.occurred_at)]


def evolve(state: NotificationsState, event: EventPayload) -> NotificationsState:
    if isinstance(event, AlertRaised):
        notifiers = state.notifiers
        if event.notifier is not None and event.alert_id not in state.raised:
            notifiers = tuple(sorted({**dict(notifiers), event.alert_id: event.notifier}.items()))
        return replace(state, raised=state.raised | {event.alert_id}, notifiers=notifiers)
    if isinstance(event, AlertDelivered):
        return replace(state, delivered=state.delivered | {event.alert_id})
    if isinstance(event, AlertDeliveryFailed):
        failures = dict(state.failures)
        failures[event.alert_id] = failures.get(event.alert_id, 0) + 1
        return replace(state, failures=tuple(sorted(failures.items())))
    return state


def make_decider(_trial: TrialConfig | None = None) -> Decider[NotificationsState]:
    return Decider(initial_state, decide, evolve)
