"""Checks shared by the safety decisions: the AE exists, times are coherent, stream names."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from services.errors import NotFound, RuleViolated
from services.safety.state import AdverseEvent, SafetyState

STOPPING_RULE_STREAM = "safety-stopping-rule"
"""Enrollment pauses, safety reviews and resumptions: one stream, one order."""


def ae_stream(ae_id: str) -> str:
    return f"ae-{ae_id}"


def known_ae(state: SafetyState, ae_id: str) -> AdverseEvent:
    ae = state.adverse_events.get(ae_id)
    if ae is None:
        raise NotFound(
            "ae-must-be-reported", f"adverse event {ae_id} was never reported", ae_id=ae_id
        )
    return ae


def not_in_future(name: str, moment: datetime, now: datetime) -> None:
    """A fact cannot be recorded before it happened."""
    if moment > now:
        raise RuleViolated(
            "time-not-in-the-future",
            f"{name} {moment.isoformat()} is after the time of the command {now.isoformat()}",
            **{name: moment.isoformat(), "occurred_at": now.isoformat()},
        )


class HasOnset(Protocol):
    @property
    def onset_at(self) -> datetime: ...


def not_before_onset(name: str, moment: datetime, ae: HasOnset) -> None:
    if moment < ae.onset_at:
        raise RuleViolated(
            f"{name.removesuffix('_at').replace('_', '-')}-after-onset",
            f"{name} {moment.isoformat()} is before the AE's onset {ae.onset_at.isoformat()}",
            **{name: moment.isoformat(), "onset_at": ae.onset_at.isoformat()},
        )
