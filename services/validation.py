"""What the HTTP layer checks in a request besides the command model's own shape: characters
that no string may hold, the envelope's ``reason`` on every route, and business times that
cannot be true. Pure functions: each returns the problems it found, each naming the field, the
rule and the values, in the form the HTTP layer answers 422 with.

Why here and not in each command model: these rules hold for every field of every command of
every context, present and future, so one walk over the body and one over the validated
command cover them all; a new command cannot forget them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from services.fields import Reason


@dataclass(frozen=True)
class Problem:
    field: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


# ---------------------------------------------------------------- characters

FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 controls (CR, LF and TAB included), DEL and C1 controls, and the bidirectional formatting
characters (marks, embeddings, overrides, isolates). A control character breaks logs and CSV
exports; a bidi override shows a reader text in another order than the one stored (the
"Trojan Source" attack, CVE-2021-42574). No free-text field of the trial needs a line break:
a reason or a rationale is one paragraph, so they are refused everywhere, keys included."""


def character_problems(value: Any, path: str = "") -> list[Problem]:
    """Every string of a JSON value (object keys too) that holds a forbidden character."""
    problems: list[Problem] = []
    if isinstance(value, str):
        found = FORBIDDEN.search(value)
        if found:
            problems.append(_forbidden(path or "(body)", found, "holds"))
    elif isinstance(value, dict):
        for key, item in value.items():
            found = FORBIDDEN.search(key)
            if found:
                field = _join(path, _printable(key))
                problems.append(_forbidden(field, found, "has a key that holds"))
                continue
            problems.extend(character_problems(item, _join(path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems.extend(character_problems(item, _join(path, str(index))))
    return problems


def _forbidden(field: str, found: re.Match[str], holds: str) -> Problem:
    # The value itself is never repeated: it may be a secret (a signature token), and it is
    # the very text that would garble a log.
    char = found.group()
    name = unicodedata.name(char, "a control character")
    return Problem(
        field,
        "forbidden-character",
        f"{field} {holds} U+{ord(char):04X} ({name}) at position {found.start()}: control "
        "and bidirectional formatting characters are refused",
    )


def _printable(text: str) -> str:
    return FORBIDDEN.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---------------------------------------------------------------- the envelope's reason

class _ReasonOnly(BaseModel):
    reason: Reason | None = None


def checked_reason(value: Any) -> tuple[str | None, list[Problem]]:
    """The ``reason`` a body carries for a command whose model has no reason field: it goes
    into the envelope, so it obeys the same type as a declared one (a string, not blank, at
    most ``services.fields.REASON_MAX_LENGTH`` characters)."""
    try:
        return _ReasonOnly.model_validate({"reason": value}).reason, []
    except ValidationError as exc:
        return None, [
            Problem("reason", err["type"], f"reason: {err['msg']}")
            for err in exc.errors(include_url=False)
        ]


# ---------------------------------------------------------------- business times


@dataclass(frozen=True)
class BusinessTimeWindow:
    """When a business time of a command may lie: not before the trial began, not later than
    the server's clock plus a small skew for the clocks of the sites' devices."""

    earliest: datetime
    max_future_skew: timedelta

    def problems(self, command: BaseModel, now: datetime) -> list[Problem]:
        latest = now + self.max_future_skew
        minutes = self.max_future_skew.total_seconds() / 60
        found = []
        for field, at in datetimes(command):
            if at.tzinfo is None:
                continue  # the command model refuses naive times itself
            if at > latest:
                found.append(
                    Problem(
                        field,
                        "business-time-in-future",
                        f"{field} {at.isoformat()} is more than {minutes:g} minutes ahead of "
                        f"the server clock ({now.isoformat()})",
                    )
                )
            elif at < self.earliest:
                found.append(
                    Problem(
                        field,
                        "business-time-before-trial-start",
                        f"{field} {at.isoformat()} is before the trial's earliest business "
                        f"time {self.earliest.isoformat()}",
                    )
                )
        return found


def datetimes(value: Any, path: str = "") -> Iterator[tuple[str, datetime]]:
    """Every datetime of a validated command, nested models and collections included, with
    its field path."""
    if isinstance(value, datetime):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from datetimes(getattr(value, name), _join(path, name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from datetimes(item, _join(path, str(index)))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from datetimes(item, _join(path, str(key)))
