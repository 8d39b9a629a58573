"""Where alerts go, and how the worker sends its alert commands (decision 52): deployment
configuration, not the trial file's.

``TRIALOPS_ALERTS_FILE`` names an apprise configuration file (YAML) whose URLs are tagged with
the roles they reach; it may hold secrets (webhook tokens, mail passwords), so it must be open to
its owner only, like the users file and the Kafka configuration::

    version: 1
    urls:
      - json://alerts.example.org/trialops:
          tag: safety_officer, investigator
      - mailtos://user:password@example.org?to=qa@example.org:
          tag: manufacturing_qa

Unset, the worker raises no alert. ``TRIALOPS_ALERTS_INTERVAL``: seconds between two looks at
the inbox (default 60). ``TRIALOPS_SERVICE_URL``: the command services (default
``http://127.0.0.1:8081``). ``TRIALOPS_NOTIFIER_TOKEN``: the bearer token of the ``notifier``
user the alerts are recorded as; a worker started with ``--demo`` uses ``demo-notifier``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.secrets_files import open_to_others

ALERTS_FILE_ENV = "TRIALOPS_ALERTS_FILE"
ALERTS_INTERVAL_ENV = "TRIALOPS_ALERTS_INTERVAL"
NOTIFIER_TOKEN_ENV = "TRIALOPS_NOTIFIER_TOKEN"
SERVICE_URL_ENV = "TRIALOPS_SERVICE_URL"
DEFAULT_INTERVAL_SECONDS = 60.0
DEFAULT_SERVICE_URL = "http://127.0.0.1:8081"
DEMO_NOTIFIER_TOKEN = "demo-notifier"


class AlertsConfigError(ValueError):
    """The alert configuration is missing a piece, unreadable, or open to others."""


@dataclass(frozen=True)
class AlertSettings:
    channels_file: Path
    interval_seconds: float
    service_url: str
    token: str = field(repr=False)
    """A secret: never in a repr or a log line."""

    @classmethod
    def from_env(cls, *, demo: bool = False) -> AlertSettings | None:
        """None when no alerts file is named; ``AlertsConfigError`` when a piece is wrong."""
        path = os.environ.get(ALERTS_FILE_ENV, "").strip()
        if not path:
            return None
        raw_interval = os.environ.get(ALERTS_INTERVAL_ENV, str(DEFAULT_INTERVAL_SECONDS))
        try:
            interval = float(raw_interval)
        except ValueError:
            interval = 0.0
        if not 0 < interval <= 24 * 3600:
            raise AlertsConfigError(
                f"{ALERTS_INTERVAL_ENV}={raw_interval!r}: seconds in (0, 86400]"
            )
        token = os.environ.get(NOTIFIER_TOKEN_ENV, "").strip() or (
            DEMO_NOTIFIER_TOKEN if demo else ""
        )
        if not token:
            raise AlertsConfigError(
                f"{ALERTS_FILE_ENV} is set but {NOTIFIER_TOKEN_ENV} is not: the worker records "
                "its alerts as the notifier user (a token the users file or the access log "
                "knows), or run it with --demo"
            )
        service_url = os.environ.get(SERVICE_URL_ENV, "").strip() or DEFAULT_SERVICE_URL
        return cls(Path(path).expanduser(), interval, service_url.rstrip("/"), token)


class Channels:
    """The apprise channels of an alerts file, tagged by role."""

    def __init__(self, path: Path) -> None:
        import apprise

        try:
            problem = open_to_others(path)
        except OSError as exc:
            raise AlertsConfigError(f"{ALERTS_FILE_ENV}: cannot read {path}: {exc}") from None
        if problem is not None:
            raise AlertsConfigError(f"{ALERTS_FILE_ENV}: {problem}")
        config = apprise.AppriseConfig()
        if not config.add(str(path.resolve())):
            raise AlertsConfigError(f"{ALERTS_FILE_ENV}: apprise cannot read {path}")
        self._apprise = apprise.Apprise()
        self._apprise.add(config)
        if not len(self._apprise):
            raise AlertsConfigError(
                f"{ALERTS_FILE_ENV}: {path} holds no URL apprise can use (a YAML file with "
                "'urls:' entries tagged with role names)"
            )
        self._one: dict[str, apprise.Apprise] = {}
        """channel name -> an Apprise of that channel alone, to send to each on its own"""
        for number, plugin in enumerate(self._apprise, start=1):
            one = apprise.Apprise()
            one.add(plugin)
            self._one[self._name(number, plugin)] = one

    @staticmethod
    def _name(number: int, plugin: object) -> str:
        """A channel's name in outcomes and logs: its place in the file and its URL with
        passwords and tokens masked (apprise's privacy form), never a secret."""
        url = getattr(plugin, "url", None)
        shown = url(privacy=True) if callable(url) else type(plugin).__name__
        return f"#{number} {str(shown).split('?', 1)[0]}"

    def names_for(self, roles: Sequence[str]) -> list[str]:
        """The channels tagged with one of ``roles``, in file order."""
        tags = list(roles)
        return [name for name, one in self._one.items() if list(one.find(tag=tags))]

    def send(self, name: str, title: str, body: str) -> bool:
        """Send to the one channel ``name``: whether it accepted. Blocking."""
        return bool(self._one[name].notify(body=body, title=title))

    def untagged_roles(self, roles: Sequence[str]) -> list[str]:
        """Those of ``roles`` no channel is tagged with (their alerts cannot be delivered)."""
        return [r for r in roles if not self.names_for([r])]

    def deliver(self, roles: Sequence[str], title: str, body: str) -> tuple[int, str | None]:
        """Send to every channel tagged with one of ``roles``: (channels, None) when all
        accepted it, (accepted, the problem naming the others) otherwise. Blocking."""
        names = self.names_for(roles)
        if not names:
            return 0, no_channel(roles)
        refused = [n for n in names if not self.send(n, title, body)]
        if not refused:
            return len(names), None
        return len(names) - len(refused), refused_by(refused, len(names))


def no_channel(roles: Sequence[str]) -> str:
    return f"no alert channel is tagged with {', '.join(roles)}"


def refused_by(refused: Sequence[str], of: int) -> str:
    return (f"{len(refused)} of {of} channel(s) did not accept the alert: "
            f"{', '.join(refused)}")[:500]
