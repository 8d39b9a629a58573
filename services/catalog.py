"""Every command service: its context, decider, HTTP routes and the contexts it follows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from events.signatures import Meaning
from services.decider import Decider
from trial.config import TrialConfig


@dataclass(frozen=True)
class Route:
    path: str
    command: str
    """The command's name in the trial file's ``permissions``: who may issue it."""
    model: type[BaseModel]
    signature: Meaning | None = None
    """The meaning of the electronic signature the command requires (review, approval,
    responsibility), or None when it needs none."""
    issues_token: bool = False
    """The server makes a new token, puts its hash in the command (``token_hash``) and answers
    the token once (adding a user, rotating a token)."""


@dataclass(frozen=True)
class ServiceSpec:
    context: str
    make_decider: Callable[[TrialConfig], Decider]
    routes: tuple[Route, ...]
    upstream: tuple[str, ...] = ()
    """Contexts whose topics this service follows read-only."""


def services() -> dict[str, ServiceSpec]:
    from services.access.routes import SERVICE as access
    from services.dosing.routes import SERVICE as dosing
    from services.enrollment.routes import SERVICE as enrollment
    from services.manufacturing.routes import SERVICE as manufacturing
    from services.notifications.routes import SERVICE as notifications
    from services.quarantine.routes import SERVICE as quarantine
    from services.safety.routes import SERVICE as safety

    specs = (enrollment, manufacturing, dosing, safety, quarantine, access, notifications)
    return {spec.context: spec for spec in specs}
