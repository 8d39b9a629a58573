"""Quarantine: the signed decision that one unreadable record of the log is set aside.

The log is never edited: an unreadable record stays where it is, and every reader stops at it
(events/reading.py). An authorised person who has looked at it records this event, naming the
record by position and by the SHA-256 of its bytes; readers then pass over exactly that record.
The events live on their own topic, written by the quarantine service, so a halted context
can still be released.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from events.reading import Where
from events.registry import EventPayload, event_type

CONTEXT = "quarantine"

TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,248}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


@event_type("RecordQuarantined", version=1, context=CONTEXT)
class RecordQuarantined(EventPayload):
    """An unreadable record set aside: readers skip the record at ``topic``/``partition``/
    ``offset`` whose bytes hash to ``record_sha256``, and only while it is unreadable. The
    envelope's ``reason`` says why, its actor who decided; a Part 11 signature follows it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "topic": "trialops.enrollment.events",
                    "partition": 0,
                    "offset": 412,
                    "record_sha256": "b" * 64,
                    "problem": "unreadable: unexpected character: line 1 column 1 (char 0)",
                }
            ]
        }
    )
    topic: TopicName
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    record_sha256: Sha256
    problem: str = Field(
        min_length=1, max_length=500, description="What the reader reported about the record"
    )

    @property
    def where(self) -> Where:
        return Where(self.topic, self.partition, self.offset)


def stream_of(where: Where) -> str:
    """One stream per quarantined position."""
    return str(where)
