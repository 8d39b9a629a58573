"""Key rotation as an event: a writer retires its signing key on its own topic.

A writer's key is changed without losing what the old one signed: the writer appends
``WriterKeyRotated``, signed with the key it retires and naming its successor (which the
deployment's keyring already lists for that writer). Every reader applies the same rule at that
position of the log (events/reading.py): the events before it keep verifying under the old key,
the events after it must be signed by another active key of the writer. So an auditor can tell,
for every event, which key was allowed to sign it, and a leaked key stops being accepted the
moment its rotation is on the log. NIST SP 800-57 Part 1 (section 5.3) asks for exactly this: a
key's cryptoperiod ends, and data it protected stays verifiable.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from events.registry import EventPayload, event_type

KEY_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def stream_of(writer: str) -> str:
    return f"writer-key-{writer}"


@event_type("WriterKeyRotated", version=1, context="shared")
class WriterKeyRotated(EventPayload):
    """From the next record of this topic on, ``retired_key_id`` signs nothing more; the writer
    signs with ``next_key_id``. Signed with the retired key itself."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"writer": "enrollment", "retired_key_id": "enrollment-1",
                 "next_key_id": "enrollment-2"}
            ]
        }
    )
    writer: str = Field(min_length=1, max_length=64)
    retired_key_id: str = Field(pattern=KEY_ID)
    next_key_id: str = Field(pattern=KEY_ID)
