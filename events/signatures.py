"""Electronic signatures (21 CFR Part 11 sections 11.50 and 11.200): a signature is its own
event, appended in the same transaction right after the record it signs, in the same stream."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field

from events.registry import EventPayload, event_type

Meaning = Literal["review", "approval", "responsibility"]


@event_type("RecordSigned", version=1, context="shared")
class RecordSigned(EventPayload):
    """The manifestation of a signature: who (printed name), when, what it means, and the hash
    of the exact record signed, so the signature cannot be moved to another record."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "signed_event_id": "3f1c2b9e-5d1a-4c7e-9a44-1b6f2a0c9d11",
                    "signed_event_type": "LotDispositioned",
                    "signed_hash": "a" * 64,
                    "signer_id": "qa-nguyen",
                    "printed_name": "T. Nguyen",
                    "role": "manufacturing_qa",
                    "meaning": "approval",
                    "signed_at": "2026-03-02T10:30:00Z",
                }
            ]
        }
    )
    signed_event_id: UUID
    signed_event_type: str = Field(min_length=1)
    signed_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    signer_id: str = Field(min_length=1)
    printed_name: str = Field(min_length=1, max_length=128)
    role: str = Field(min_length=1)
    meaning: Meaning
    signed_at: AwareDatetime
