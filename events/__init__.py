"""What happened: the event envelope, every event type, the topic catalogue."""

# Importing the context modules registers their event types.
from events import (  # noqa: F401
    access,
    dosing,
    enrollment,
    keys,
    manufacturing,
    notifications,
    quarantine,
    safety,
    signatures,
)
from events.envelope import Actor, Envelope, from_bytes, seal, to_bytes
from events.registry import EventPayload, Recorded, all_types, read

__all__ = [
    "Actor",
    "Envelope",
    "EventPayload",
    "Recorded",
    "all_types",
    "from_bytes",
    "read",
    "seal",
    "to_bytes",
]
