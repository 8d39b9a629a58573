"""The topic catalogue: one event topic per bounded context, kept forever."""

from __future__ import annotations

from dataclasses import dataclass, field

CONTEXTS = ("enrollment", "manufacturing", "dosing", "safety")
QUARANTINE = "quarantine"
"""The quarantine service's context: decisions to set an unreadable record aside."""
ACCESS = "access"
"""The access service's context: who may act in the trial, and every change to it."""
NOTIFICATIONS = "notifications"
"""The notifications service's context: the alerts raised from the inbox and their delivery."""
WRITERS = (*CONTEXTS, QUARANTINE, ACCESS, NOTIFICATIONS)
"""Every context with a writer and a topic of its own."""
SHARED = "shared"
"""Context of event types any context may write (signatures)."""
DEFAULT_NAMESPACE = "trialops"

EVENT_TOPIC_CONFIG = {
    # Events are the system of record: never expire them, never compact them away.
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    configs: dict[str, str] = field(default_factory=dict)


def event_topic(context: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    if context not in WRITERS:
        raise ValueError(f"unknown bounded context {context!r}; known: {', '.join(WRITERS)}")
    return f"{namespace}.{context}.events"


def murmur2(data: bytes) -> int:
    """MurmurHash2 (Austin Appleby's 32-bit hash), seeded as Kafka's ``Utils.murmur2`` is, so
    that a trial's partition is the one Kafka's default partitioner gives the trial id as a
    record key: any Kafka client can say where a trial's events are. Unsigned 32-bit result."""
    mask = 0xFFFFFFFF
    mix, shift = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for at in range(0, whole, 4):
        k = int.from_bytes(data[at:at + 4], "little")
        k = (k * mix) & mask
        k ^= k >> shift
        k = (k * mix) & mask
        h = ((h * mix) & mask) ^ k
    tail = data[whole:]
    if tail:
        for index in range(len(tail) - 1, -1, -1):
            h ^= tail[index] << (8 * index)
        h = (h * mix) & mask
    h ^= h >> 13
    h = (h * mix) & mask
    h ^= h >> 15
    return h


def partition_of(trial_id: str, partitions: int) -> int:
    """The partition of every context topic that holds ``trial_id``'s streams (decision 60):
    Kafka's default partitioner for the trial id as key (the positive part of its murmur2
    hash, modulo the count), so a trial keeps one total order in each context."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    return (murmur2(trial_id.encode()) & 0x7FFFFFFF) % partitions


def checkpoint_topic(namespace: str = DEFAULT_NAMESPACE) -> str:
    """Where the auditor's signed checkpoints of the log are kept (audit/checkpoint.py)."""
    return f"{namespace}.checkpoints"


def context_of(topic: str) -> str | None:
    """The context whose writer owns ``topic`` (``<namespace>.<context>.events``), or None."""
    parts = topic.rsplit(".", 2)
    if len(parts) == 3 and parts[2] == "events" and parts[1] in WRITERS:
        return parts[1]
    return None


def dead_letter_topic(consumer_group: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}.dlq.{consumer_group}"


def catalogue(namespace: str = DEFAULT_NAMESPACE, partitions: int = 1) -> list[TopicSpec]:
    # One partition per trial at most (decision 60; one by default, decision 2): a phase I
    # trial writes a few thousand events, and its partition gives every projection one total
    # order per context. Every context topic has the same count, so a trial's partition is
    # the same number in each.
    # The checkpoints are kept like the events: they prove what the log held.
    if partitions < 1:
        raise ValueError(f"partitions: at least 1, not {partitions}")
    return [
        *(TopicSpec(event_topic(context, namespace), partitions, dict(EVENT_TOPIC_CONFIG))
          for context in WRITERS),
        TopicSpec(checkpoint_topic(namespace), 1, dict(EVENT_TOPIC_CONFIG)),
    ]
