"""What a decider returns: new facts, not yet sealed into envelopes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from events.registry import EventPayload


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A fact a decider wants appended to ``stream_id``; the appender seals it."""

    stream_id: str
    payload: EventPayload
    occurred_at: datetime
