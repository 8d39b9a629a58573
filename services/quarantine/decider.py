"""The quarantine decider: an authorised person sets one unreadable record aside. Pure.

Whether the record is unreadable is not this decider's to judge: readers skip a quarantined
record only while the reading rule refuses it (events/reading.py), so a quarantine can never
hide a readable event. The decider keeps the decision single and explained.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from events.quarantine import RecordQuarantined, Sha256, TopicName, stream_of
from events.reading import Where
from events.registry import EventPayload
from services.decider import Decider, NewEvent
from services.errors import RuleViolated
from trial.config import TrialConfig


class QuarantineRecord(BaseModel):
    """Set aside the record at ``topic``/``partition``/``offset`` whose bytes hash to
    ``record_sha256`` (as the 503 answer or ``/ready`` reported it), saying why."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime
    topic: TopicName
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    record_sha256: Sha256
    problem: str = Field(min_length=1, max_length=500)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]

    @property
    def where(self) -> Where:
        return Where(self.topic, self.partition, self.offset)


QuarantineState = frozenset[str]
"""The positions already quarantined."""


def decide(command: QuarantineRecord, state: QuarantineState) -> list[NewEvent]:
    stream = stream_of(command.where)
    if stream in state:
        raise RuleViolated(
            "quarantined-once", f"the record at {stream} is already quarantined", record=stream
        )
    return [
        NewEvent(
            stream,
            RecordQuarantined(
                topic=command.topic,
                partition=command.partition,
                offset=command.offset,
                record_sha256=command.record_sha256,
                problem=command.problem,
            ),
            command.occurred_at,
        )
    ]


def evolve(state: QuarantineState, event: EventPayload) -> QuarantineState:
    if isinstance(event, RecordQuarantined):
        return state | {stream_of(event.where)}
    return state


def make_decider(_trial: TrialConfig | None = None) -> Decider[QuarantineState]:
    return Decider(frozenset(), decide, evolve)
