"""Typed domain errors that name the rule they enforce, so adapters map them without parsing."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A command was refused by a rule of the trial. Nothing was appended."""

    status = 409

    def __init__(self, rule: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.rule, "message": self.message, "details": self.details}


class RuleViolated(DomainError):
    """The command conflicts with the current state (HTTP 409)."""


class NotFound(DomainError):
    """The command names something that does not exist (HTTP 404)."""

    status = 404


class Forbidden(DomainError):
    """The actor's role may not issue this command (HTTP 403)."""

    status = 403
