"""The worker's alerts (decision 52): a Faust timer looks at the live desk's inbox, and for each
alert due (projections/alerts.py) that the log does not show delivered it raises the alert
(``POST /notifications/alerts``, Idempotency-Key = the alert id), delivers it through apprise
to the channels of the roles who must act, and records the outcome
(``POST /notifications/alert-deliveries``), all as the ``notifier`` user.

Delivery is at least once: the desk is rebuilt from the log at every start, so an alert
recorded delivered is never sent again, while one raised but not yet recorded delivered (the
worker stopped between sending and recording) is sent again; the alert id in what a channel
receives lets the receiver drop the copy. A failed delivery is recorded and tried again later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from infra.alerts import AlertSettings, Channels
from projections.alerts import Alert, to_send
from projections.live_inbox import LiveDesk
from trial.config import TrialConfig

log = logging.getLogger(__name__)

Post = Callable[[str, dict[str, Any], str | None], Awaitable[tuple[int, Any]]]
"""(path, body, idempotency key) -> (status, answer)"""


class Notifier:
    def __init__(self, live: LiveDesk, trial: TrialConfig, channels: Channels, post: Post,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.live, self.trial, self.channels = live, trial, channels
        self.post, self.clock = post, clock
        self._lock = asyncio.Lock()

    async def tick(self) -> int:
        """One look at the inbox; returns how many alerts were delivered."""
        async with self._lock:
            desk = await self.live.catch_up()
            delivered = 0
            for alert in to_send(desk, self.trial, self.clock()):
                if alert.alert_id not in desk.notifications.raised and not await self._raise(
                    alert
                ):
                    continue
                delivered += await self._deliver(alert)
            return delivered

    async def _raise(self, alert: Alert) -> bool:
        item = alert.item
        status, answer = await self.post(
            "/notifications/alerts",
            {
                "occurred_at": self.clock().isoformat(),
                "alert_id": alert.alert_id,
                "stage": alert.stage,
                "kind": item.kind,
                "subject": item.subject,
                "due": alert.due,
                "roles": list(item.roles),
                "route": item.route,
                "detail": item.detail,
                "why": list(item.why),
            },
            alert.alert_id,
        )
        if status in (200, 201):
            return True
        if status == 409 and isinstance(answer, dict) and answer.get("error") == (
            "alert-raised-once"
        ):
            return True  # raised by an attempt the desk has not read yet
        log.warning("alert %s not raised: %s %s", alert.alert_id, status, answer)
        return False

    async def _deliver(self, alert: Alert) -> int:
        roles = list(alert.item.roles)
        body = orjson.dumps(alert.as_json()).decode()
        title = f"trialops {alert.stage}: {alert.item.kind} {alert.item.subject} [{alert.alert_id}]"
        try:
            channels, problem = await asyncio.to_thread(self.channels.deliver, roles, title, body)
        except Exception as exc:  # an apprise plugin's own failure
            channels, problem = 0, f"{type(exc).__name__}: {exc}"[:500]
        outcome: dict[str, Any] = {
            "occurred_at": self.clock().isoformat(),
            "alert_id": alert.alert_id,
            "roles": roles,
            **({"outcome": "delivered", "channels": channels} if problem is None
               else {"outcome": "failed", "problem": problem[:500]}),
        }
        status, answer = await self.post("/notifications/alert-deliveries", outcome, None)
        if status not in (200, 201):
            log.warning("delivery of alert %s not recorded: %s %s", alert.alert_id, status,
                        answer)
        if problem is not None:
            log.warning("alert %s not delivered: %s", alert.alert_id, problem)
            return 0
        return 1


def http_post(settings: AlertSettings) -> Post:
    """POST to the command services as the notifier user."""
    import aiohttp

    async def post(path: str, body: dict[str, Any], key: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {settings.token}",
                   "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        timeout = aiohttp.ClientTimeout(total=30)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                f"{settings.service_url}{path}", data=orjson.dumps(body), headers=headers
            ) as answer:
                raw = await answer.read()
                return answer.status, (orjson.loads(raw) if raw else None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return 0, repr(exc)

    return post


def schedule_alerts(app: Any, live: LiveDesk, trial: TrialConfig,
                    settings: AlertSettings) -> Notifier:
    """Registers the alerts' timer on the worker (the leader only, so two workers of one
    group do not both send)."""
    notifier = Notifier(live, trial, Channels(settings.channels_file), http_post(settings))

    async def alert() -> None:
        try:
            await notifier.tick()
        except Exception as exc:  # the broker or the services away: the next tick tries again
            log.warning("alerts: %r", exc)

    app.timer(interval=settings.interval_seconds, on_leader=True)(alert)

    return notifier
