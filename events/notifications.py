"""Notifications: who was alerted of what, and when (issue 15, decision 52).

The worker alerts the roles who must act on an inbox item with a deadline, once it comes within
the trial's lead time (stage ``approaching``) and again once it is overdue. Each alert and each
attempt to deliver it is a fact on this context's topic, written by the notifications service
under the ``notifier`` user, so an auditor sees who was told what, when, and that nothing was
sent twice. One stream per alert, named by its id.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from events.registry import EventPayload, event_type

CONTEXT = "notifications"

Stage = Literal["approaching", "overdue"]
AlertId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[!-~]+$")]
"""``<stage>/<kind>/<subject>/<due>``: visible ASCII, at most 128 characters, so that it is
also the raise's ``Idempotency-Key`` and a receiver's key to de-duplicate on."""
RoleName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z_]*$")]
Problem = Annotated[str, Field(min_length=1, max_length=500)]
Part = Annotated[str, Field(pattern=r"^[0-9a-f]{8}$")]
"""The first 8 hex digits of the SHA-256 of an item's detail, when two items share an id."""
NotifierName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[!-~]+$")]
"""The notifier that raised an alert: the worker's consumer group (decision 55's
``<namespace>-projections-<version>``), within which one leader ticks."""

_EXAMPLE_ID = "approaching/expedited-report/AE-0007-01/2026-03-12"


def alert_id_of(stage: str, kind: str, subject: str, due: str, part: str | None = None) -> str:
    """The id of the alert of one inbox item (``kind``, ``subject``, deadline ``due``) at one
    ``stage``: the same item at the same stage always gives the same id, whoever computes it
    and however often (a restarted worker, a receiver de-duplicating). ``part`` tells apart two
    items that share the rest (two reports of one AE due the same day): ``/<part>`` is appended.
    Longer than 128 characters, or not visible ASCII, it is shortened to the stage and a
    SHA-256 prefix."""
    raw = f"{stage}/{kind}/{subject}/{due}" + ("" if part is None else f"/{part}")
    if len(raw) <= 128 and all("!" <= c <= "~" for c in raw):
        return raw
    return f"{stage}/sha256-{hashlib.sha256(raw.encode()).hexdigest()[:40]}"


def stream_of(alert_id: str) -> str:
    return f"alert-{alert_id}"


@event_type("AlertRaised", version=1, context=CONTEXT)
class AlertRaised(EventPayload):
    """An inbox item came within its lead time of its deadline (``approaching``) or passed it
    (``overdue``): the roles who may clear it are to be told. ``due`` is the deadline as the
    inbox gives it, a calendar day (a reporting clock) or an instant (a window's end); ``why``
    the ids of the events behind the item."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "alert_id": _EXAMPLE_ID,
                    "stage": "approaching",
                    "kind": "expedited-report",
                    "subject": "AE-0007-01",
                    "due": "2026-03-12",
                    "roles": ["safety_officer"],
                    "route": "POST /safety/expedited-reports",
                    "detail": "7-day report of AE-0007-01 (Respiratory failure, MSK-0007), day 0 "
                    "2026-03-05",
                    "why": ["0b6f4c56-1f0e-4b1e-9a7e-2f2d8b1f3c11"],
                    "notifier": "trialops-projections-3f9c2a71",
                }
            ]
        }
    )
    alert_id: AlertId
    stage: Stage
    kind: str = Field(min_length=1, max_length=64)
    subject: str = Field(min_length=1, max_length=128)
    due: str = Field(min_length=10, max_length=40, description="ISO 8601 day or instant")
    roles: tuple[RoleName, ...] = Field(min_length=1)
    route: str = Field(max_length=200)
    detail: str = Field(max_length=1000)
    why: tuple[str, ...] = ()
    part: Part | None = None
    notifier: NotifierName | None = Field(
        default=None,
        description="The notifier that raised it and alone delivers it (another takes over "
        "only after a stated time without a delivery record); None: any notifier",
    )


@event_type("AlertDelivered", version=1, context=CONTEXT)
class AlertDelivered(EventPayload):
    """Every channel configured for ``roles`` accepted the alert (apprise reported success,
    channel by channel, over one or more attempts): it is not sent again. The envelope's
    ``occurred_at`` is when."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"alert_id": _EXAMPLE_ID, "roles": ["safety_officer"], "channels": 1}]
        }
    )
    alert_id: AlertId
    roles: tuple[RoleName, ...] = Field(min_length=1)
    channels: int = Field(ge=1, description="How many configured channels were notified")


@event_type("AlertDeliveryFailed", version=1, context=CONTEXT)
class AlertDeliveryFailed(EventPayload):
    """An attempt to deliver the alert failed: a channel refused it (the problem names the
    channels, their secrets masked, and how many accepted; the worker tries the refusing ones
    again on a later tick), or no channel is configured for its roles (a configuration
    problem, recorded once per worker start, not retried)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "alert_id": _EXAMPLE_ID,
                    "roles": ["safety_officer"],
                    "problem": "a channel tagged safety_officer did not accept the alert",
                }
            ]
        }
    )
    alert_id: AlertId
    roles: tuple[RoleName, ...] = Field(min_length=1)
    problem: Problem
