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
from dataclasses import dataclass
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
    token: str

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

    def deliver(self, roles: Sequence[str], title: str, body: str) -> tuple[int, str | None]:
        """Send to every channel tagged with one of ``roles``: (channels, None) when all
        accepted it, (0, the problem) otherwise. Blocking."""
        tags = list(roles)
        targets = list(self._apprise.find(tag=tags))
        if not targets:
            return 0, f"no alert channel is tagged with {', '.join(roles)}"
        if self._apprise.notify(body=body, title=title, tag=tags):
            return len(targets), None
        return 0, f"{len(targets)} channel(s) tagged with {', '.join(roles)}: not all accepted"
