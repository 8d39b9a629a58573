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
from datetime import date, datetime, timedelta, timezone, tzinfo
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
    the server's clock plus a small skew for the clocks of the sites' devices, and never after
    the command's own ``occurred_at``.

    Every business time is checked, in every context, whatever its name and however deep it
    sits in the command (``business_times``): datetimes, and calendar dates (a last dose on a
    day). A date has no time zone, so it is held to the calendar day anywhere on Earth: in the
    future when no place has reached it yet at the latest allowed instant (UTC+14), before the
    trial when every place had left the trial's first day behind (UTC-12)."""

    earliest: datetime
    max_future_skew: timedelta

    def problems(self, command: BaseModel, now: datetime) -> list[Problem]:
        latest = now + self.max_future_skew
        minutes = self.max_future_skew.total_seconds() / 60
        found = []
        for field, at in business_times(command):
            if isinstance(at, datetime) and at.tzinfo is None:
                continue  # the command model refuses naive times itself
            if _after(at, latest, _LAST_TO_ARRIVE):
                found.append(
                    Problem(
                        field,
                        "business-time-in-future",
                        f"{field} {at.isoformat()} is more than {minutes:g} minutes ahead of "
                        f"the server clock ({now.isoformat()})",
                    )
                )
            elif _after(self.earliest, at, _FIRST_TO_LEAVE):
                found.append(
                    Problem(
                        field,
                        "business-time-before-trial-start",
                        f"{field} {at.isoformat()} is before the trial's earliest business "
                        f"time {self.earliest.isoformat()}",
                    )
                )
        return found or after_the_record(command)


_LAST_TO_ARRIVE = timezone(timedelta(hours=14))
"""The first place on Earth to reach a calendar day (Line Islands, UTC+14)."""
_FIRST_TO_LEAVE = timezone(timedelta(hours=-12))
"""The last place on Earth to leave a calendar day (Baker Island, UTC-12)."""


def _after(a: datetime | date, b: datetime | date, zone: tzinfo) -> bool:
    """``a`` later than ``b``; a date against an instant is compared with that instant's
    calendar day in ``zone``."""
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a > b
    day_a = a.astimezone(zone).date() if isinstance(a, datetime) else a
    day_b = b.astimezone(zone).date() if isinstance(b, datetime) else b
    return day_a > day_b


MAY_FOLLOW_THE_RECORD = frozenset({"sponsor_received_at"})
"""Times of another party than the one whose act ``occurred_at`` dates: the sponsor may first
receive an adverse event's information after the site reported it (21 CFR 312.32(c) starts
the clock at the sponsor's receipt, DOMAIN.md section 3)."""


def after_the_record(command: BaseModel) -> list[Problem]:
    """A command records what has happened: none of its business times (an onset, a signature,
    a last dose, an improvement, a regrade's effective time) lies after its own
    ``occurred_at``, the time of the act it records (``MAY_FOLLOW_THE_RECORD`` aside). A date
    is compared with the calendar day of ``occurred_at`` as the site wrote it (in its own UTC
    offset)."""
    recorded = getattr(command, "occurred_at", None)
    if not isinstance(recorded, datetime) or recorded.tzinfo is None:
        return []
    found = []
    for field, at in business_times(command):
        if field == "occurred_at" or field.rsplit(".", 1)[-1] in MAY_FOLLOW_THE_RECORD:
            continue
        if isinstance(at, datetime) and at.tzinfo is None:
            continue
        if _after(at, recorded, recorded.tzinfo):
            found.append(
                Problem(
                    field,
                    "business-time-after-record",
                    f"{field} {at.isoformat()} is after occurred_at {recorded.isoformat()}: a "
                    "command records what has already happened",
                )
            )
    return found


def business_times(value: Any, path: str = "") -> Iterator[tuple[str, datetime | date]]:
    """Every datetime and date of a validated command, nested models and collections
    included, with its field path."""
    if isinstance(value, date):  # a datetime is a date too
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from business_times(getattr(value, name), _join(path, name))
    elif isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        for index, item in enumerate(items):
            yield from business_times(item, _join(path, str(index)))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from business_times(item, _join(path, str(key)))


def datetimes(value: Any, path: str = "") -> Iterator[tuple[str, datetime]]:
    """Every datetime of a validated command, nested models and collections included, with
    its field path."""
    for field, at in business_times(value, path):
        if isinstance(at, datetime):
            yield field, at
