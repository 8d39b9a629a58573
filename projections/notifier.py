"""The worker's alerts (decision 52): a Faust timer looks at the live desk's inbox, and for each
alert due (projections/alerts.py) that the log does not show delivered it raises the alert
(``POST /notifications/alerts``, Idempotency-Key = the alert id), delivers it through apprise
to the channels of the roles who must act, and records the outcome
(``POST /notifications/alert-deliveries``), all as the ``notifier`` user.

Never on every tick: the notifier keeps, per alert id, what it did (the channels that
accepted, its failed attempts and when to try again, an outcome not yet recorded), so an alert
is sent at most once per channel while the worker runs, whatever the services or the desk can
record or read meanwhile. It sends nothing while the desk stands at an unreadable record of the
notifications topic (it could not see a delivery) nor while the services cannot record: the
raise is sent before every delivery, with a body that is a function of the item (its
``occurred_at`` is when the stage began), so the services answer a repeat as the first request
(or ``idempotency-key-reused`` / ``alert-raised-once`` when the alert is already raised), and
any other answer, or none, means no send.

One notifier delivers an alert: the raise names the notifier (the worker's consumer group,
within which one leader ticks; decision 55 gives an older and a newer worker different
groups); another delivers it only once ``TAKEOVER`` has passed, beyond the raiser's retry wait,
without a delivery record. Delivery is at least once across restarts: an alert raised but not
recorded delivered is sent again by a restarted worker; the alert id in what a channel
receives lets the receiver drop the copy. A channel that refused is tried again after a
doubling wait; the channels that accepted are not sent to again. No channel for the alert's
roles is a configuration problem: recorded once (per worker start) and not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import uuid4

import orjson

from events.topics import NOTIFICATIONS, event_topic
from infra.alerts import AlertsConfigError, AlertSettings, Channels, no_channel, refused_by
from projections.alerts import Alert, retry_after, to_send
from projections.inbox import Desk
from projections.live_inbox import LiveDesk
from services.notifications.decider import NotificationsState
from trial.config import TrialConfig

log = logging.getLogger(__name__)

Post = Callable[[str, dict[str, Any], str | None], Awaitable[tuple[int, Any]]]
"""(path, body, idempotency key) -> (status, answer)"""

TAKEOVER = timedelta(minutes=10)
"""How long past the raiser's own next attempt (its retry wait, ``retry_after``) another
notifier waits without a delivery record before it delivers an alert it did not raise."""
ALREADY_RAISED = {(409, "alert-raised-once"), (422, "idempotency-key-reused")}
"""The services' answers to a raise of an alert already raised: by another request of this
notifier (another body) or by another notifier."""


class Desks(Protocol):
    async def catch_up(self) -> Desk: ...


@dataclass
class Attempts:
    """What this notifier did for one alert, in memory."""

    accepted: set[str] = field(default_factory=set)
    """The channels that accepted it"""
    failures: int = 0
    retry_at: datetime | None = None
    unrecorded: tuple[str, dict[str, Any]] | None = None
    """(Idempotency-Key, body) of an outcome sent but not yet recorded"""
    complete: bool = False
    """Every channel accepted it, or it has none (reported once)"""
    foreign: tuple[str, int, datetime] | None = None
    """(the notifier that raised it, its failed attempts seen, since when) when not ours"""

    def wait(self, now: datetime) -> None:
        self.failures += 1
        self.retry_at = now + retry_after(self.failures)


class Notifier:
    def __init__(self, live: Desks, trial: TrialConfig, channels: Channels, post: Post,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 name: str | None = None, notifications_topic: str | None = None) -> None:
        self.live, self.trial, self.channels = live, trial, channels
        self.post, self.clock = post, clock
        self.name = name
        """This notifier, named in the alerts it raises (None: any notifier delivers)"""
        self.notifications_topic = notifications_topic
        self.attempts: dict[str, Attempts] = {}
        self.ticks = 0
        self._lock = asyncio.Lock()
        self._said_halted = False

    def _halted(self) -> list[str]:
        """The desk's halts on the notifications topic (any halt when the topic is not known)."""
        halts: list[str] = getattr(self.live, "halts", list)()
        topic = self.notifications_topic
        return [h for h in halts if topic is None or h.startswith(f"{topic}@")]

    async def tick(self) -> int:
        """One look at the inbox; returns how many alerts were delivered."""
        async with self._lock:
            self.ticks += 1
            desk = await self.live.catch_up()
            if halts := self._halted():
                if not self._said_halted:
                    log.error("alerts: none sent while the desk cannot read the notifications "
                              "topic: %s", "; ".join(halts))
                self._said_halted = True
                return 0
            self._said_halted = False
            state = desk.notifications
            for alert_id in state.delivered & self.attempts.keys():
                del self.attempts[alert_id]
            now = self.clock()
            delivered = 0
            due = to_send(desk, self.trial, now)
            for alert in due:
                delivered += await self._attend(alert, state, now)
            await self._record_left_over(now, {a.alert_id for a in due})
            return delivered

    async def _record_left_over(self, now: datetime, attended: set[str]) -> None:
        """Records the outcomes not yet recorded of alerts no longer due (the item cleared
        meanwhile): a copy sent is on the log all the same."""
        for alert_id, attempts in list(self.attempts.items()):
            if alert_id in attended or attempts.unrecorded is None:
                continue
            if attempts.retry_at is not None and now < attempts.retry_at:
                continue
            if await self._record(alert_id, *attempts.unrecorded):
                attempts.unrecorded = None
            else:
                attempts.wait(now)

    async def _attend(self, alert: Alert, state: NotificationsState, now: datetime) -> int:
        attempts = self.attempts.setdefault(alert.alert_id, Attempts())
        if attempts.retry_at is not None and now < attempts.retry_at:
            return 0
        if attempts.unrecorded is not None:
            if not await self._record(alert.alert_id, *attempts.unrecorded):
                attempts.wait(now)
                return 0
            attempts.unrecorded = None
        if attempts.complete:
            return 0
        if not self._ours(alert, state, attempts, now):
            return 0
        if not await self._raise(alert, state, attempts, now):
            return 0
        return await self._deliver(alert, attempts, now)

    def _ours(self, alert: Alert, state: NotificationsState, attempts: Attempts,
              now: datetime) -> bool:
        """Whether this notifier delivers ``alert``: not raised yet, raised by it or by a
        notifier not named, or raised by another that has let ``TAKEOVER`` pass beyond its
        retry wait without a delivery record."""
        if alert.alert_id not in state.raised:
            return True
        raiser = state.notifier_of(alert.alert_id)
        if raiser is None or raiser == self.name:
            return True
        failures = state.failed_attempts(alert.alert_id)
        if attempts.foreign is None or attempts.foreign[:2] != (raiser, failures):
            attempts.foreign = (raiser, failures, now)
        if now < attempts.foreign[2] + retry_after(failures) + TAKEOVER:
            return False
        log.warning("alert %s: raised by %s, no delivery recorded for %s: delivered by %s",
                    alert.alert_id, raiser, now - attempts.foreign[2], self.name)
        return True

    async def _raise(self, alert: Alert, state: NotificationsState, attempts: Attempts,
                     now: datetime) -> bool:
        """Sends the raise (also when the desk shows it raised: the answer says the services
        can record); whether to deliver now."""
        item = alert.item
        body: dict[str, Any] = {
            "occurred_at": alert.began.isoformat(),
            "alert_id": alert.alert_id,
            "stage": alert.stage,
            "kind": item.kind,
            "subject": item.subject,
            "due": alert.due,
            "roles": list(item.roles),
            "route": item.route,
            "detail": item.detail,
            "why": list(item.why),
            **({} if alert.part is None else {"part": alert.part}),
            **({} if self.name is None else {"notifier": self.name}),
        }
        status, answer = await self.post("/notifications/alerts", body, alert.alert_id)
        if status in (200, 201):
            return True
        error = str(answer.get("error")) if isinstance(answer, dict) else None
        if (status, error) in ALREADY_RAISED:
            # Raised before: by this notifier (another body, or an answer the desk has not
            # read yet) or by another. Delivered once the desk shows whose it is.
            if alert.alert_id in state.raised:
                return True
            log.info("alert %s raised, not yet on the desk: delivered at a later tick",
                     alert.alert_id)
            return False
        attempts.wait(now)
        log.warning("alert %s not raised, nothing sent (next try after %s): %s %s",
                    alert.alert_id, attempts.retry_at, status, answer)
        return False

    async def _deliver(self, alert: Alert, attempts: Attempts, now: datetime) -> int:
        roles = list(alert.item.roles)
        names = self.channels.names_for(roles)
        if not names:
            attempts.complete = True
            problem = (f"{no_channel(roles)}: a configuration problem of the alerts file, "
                       "recorded once per worker start")
            log.error("alert %s: %s", alert.alert_id, problem)
            return await self._outcome(alert, attempts, now, {"outcome": "failed",
                                                              "problem": problem})
        # The trial first: with several trials one channel may hear from each (decision 64).
        trial_id = self.trial.trial_id
        body = orjson.dumps({"trial_id": trial_id, **alert.as_json()}).decode()
        title = (f"trialops {trial_id} {alert.stage}: {alert.item.kind} {alert.item.subject} "
                 f"[{alert.alert_id}]")
        refused = []
        for name in names:
            if name in attempts.accepted:
                continue
            try:
                accepted = await asyncio.to_thread(self.channels.send, name, title, body)
            except Exception as exc:  # an apprise plugin's own failure
                log.warning("alert %s: channel %s: %s", alert.alert_id, name,
                            type(exc).__name__)
                accepted = False
            if accepted:
                attempts.accepted.add(name)
            else:
                refused.append(name)
        if not refused:
            attempts.complete = True
            return await self._outcome(alert, attempts, now, {"outcome": "delivered",
                                                              "channels": len(names)})
        attempts.wait(now)
        problem = refused_by(refused, len(names))
        log.warning("alert %s not delivered (next try after %s): %s", alert.alert_id,
                    attempts.retry_at, problem)
        await self._outcome(alert, attempts, now, {"outcome": "failed", "problem": problem})
        return 0

    async def _outcome(self, alert: Alert, attempts: Attempts, now: datetime,
                       outcome: dict[str, Any]) -> int:
        body = {"occurred_at": now.isoformat(), "alert_id": alert.alert_id,
                "roles": list(alert.item.roles), **outcome}
        key = str(uuid4())
        if not await self._record(alert.alert_id, key, body):
            attempts.unrecorded = (key, body)
            if attempts.retry_at is None or attempts.retry_at <= now:
                attempts.wait(now)
        return 1 if outcome["outcome"] == "delivered" else 0

    async def _record(self, alert_id: str, key: str, body: dict[str, Any]) -> bool:
        """Records an outcome (the same key and body on every try: a retry of a record that
        was in fact appended is answered as the first, and appends nothing)."""
        status, answer = await self.post("/notifications/alert-deliveries", body, key)
        if status in (200, 201):
            return True
        log.warning("delivery of alert %s not recorded: %s %s", alert_id, status, answer)
        return False


def http_post(settings: AlertSettings, trial_path: str = "") -> Post:
    """POST to the command services as the notifier user; ``trial_path`` (``/trials/<id>``)
    before every route when the deployment runs several trials (decision 60)."""
    import aiohttp

    async def post(path: str, body: dict[str, Any], key: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {settings.token}",
                   "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        timeout = aiohttp.ClientTimeout(total=30)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                f"{settings.service_url}{trial_path}{path}", data=orjson.dumps(body),
                headers=headers,
            ) as answer:
                raw = await answer.read()
                return answer.status, (orjson.loads(raw) if raw else None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return 0, repr(exc)

    return post


def schedule_alerts(app: Any, live: LiveDesk, trial: TrialConfig,
                    settings: AlertSettings, *, one_of_several: bool = False) -> Notifier:
    """Registers the alerts' timer on the worker (the leader only, so two workers of one
    group do not both send). ``AlertsConfigError`` when the alerts file is unusable. With
    ``one_of_several`` the trial's commands go to ``/trials/<id>`` (decision 64)."""
    channels = Channels(settings.channels_file)
    trial_path = f"/trials/{trial.trial_id}" if one_of_several else ""
    notifier = Notifier(live, trial, channels, http_post(settings, trial_path),
                        name=str(app.conf.id),
                        notifications_topic=event_topic(NOTIFICATIONS, live.settings.namespace))
    if untagged := channels.untagged_roles(sorted({r for rs in trial.permissions.values()
                                                   for r in rs} - {"notifier"})):
        log.warning("alerts: no channel is tagged with %s: their alerts are recorded as not "
                    "delivered, once", ", ".join(untagged))

    async def alert() -> None:
        try:
            await notifier.tick()
        except Exception as exc:  # the broker or the services away: the next tick tries again
            log.warning("alerts: %r", exc)

    app.timer(interval=settings.interval_seconds, on_leader=True)(alert)

    return notifier


def start_alerts(app: Any, live: LiveDesk, trial: TrialConfig, *, demo: bool,
                 one_of_several: bool = False) -> str:
    """Starts the alerts when an alerts file is configured; what ``/ready`` says of them. A
    configuration that cannot be used turns the alerts off, said in the log and on
    ``/ready``, and the worker serves the board all the same."""
    try:
        settings = AlertSettings.from_env(demo=demo)
        if settings is None:
            return "off: no alerts file is configured"
        schedule_alerts(app, live, trial, settings, one_of_several=one_of_several)
    except AlertsConfigError as exc:
        log.error("alerts are off: %s", exc)
        return f"off: {exc}"
    return "on"


def start_trials_alerts(app: Any, desks: Mapping[str, tuple[LiveDesk, TrialConfig]], *,
                        demo: bool) -> str:
    """A worker of several trials: one notifier per trial, each ticking over its trial's desk
    with its trial file's roles and clocks and raising through ``/trials/<id>`` as the
    notifier user of that trial's access log (decision 64). What ``/ready`` says: one word
    for all when they agree, else each trial's."""
    said = {trial_id: start_alerts(app, live, trial, demo=demo, one_of_several=True)
            for trial_id, (live, trial) in sorted(desks.items())}
    words = set(said.values())
    if len(words) == 1:
        return words.pop()
    return "; ".join(f"{trial_id}: {word}" for trial_id, word in said.items())
