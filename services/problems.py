"""RFC 9457 problem details: the form of every 4xx and 5xx answer of the command services and
of the projections' views. Decision 44: ``type`` is a URI naming the rule; ``error`` (the
rule's name) and ``message`` (the same text as ``detail``) stay as extension members, as the
API answered before, with the refusal's other members (``fields``, ``details``)."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"
"""RFC 9457's media type."""
PROBLEM_TYPES = "https://trialops.example/problems/"
"""The base of every problem's ``type`` URI, the rule's name appended. The host is a reserved
example name (RFC 2606): the URI names the rule and is not meant to be fetched; the services'
``/docs`` page describes the answers."""


def problem_type(rule: str) -> str:
    return PROBLEM_TYPES + rule


def problem_title(rule: str) -> str:
    """The same short title for every occurrence of a rule: its name in words."""
    return rule.replace("-", " ").replace("_", " ").capitalize()


def problem_document(
    status: int, error: str, message: str, instance: str | None = None, **extra: Any
) -> dict[str, Any]:
    """RFC 9457's members (``type``, ``title``, ``status``, ``detail``, ``instance`` when
    known) and the API's earlier ones as extension members."""
    document: dict[str, Any] = {
        "type": problem_type(error),
        "title": problem_title(error),
        "status": status,
        "detail": message,
    }
    if instance is not None:
        document["instance"] = instance
    return {**document, "error": error, "message": message, **extra}
