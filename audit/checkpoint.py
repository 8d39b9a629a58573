"""Anchored checkpoints: a signed statement, kept outside the log, of what the log held.

The hash chain shows an altered or reordered event, but not a log cut short or re-created: the
last event of a stream can be rewritten with a fresh hash, or a topic wiped, and what is left
still chains. Transparency logs close that gap the same way (Certificate Transparency, RFC 6962
section 3.5: a signed tree head that auditors keep and compare later): ``take`` writes every
stream's head (sequence and hash) and every topic's end offset, signed with the auditor's key,
to a file the auditor keeps and to the checkpoint topic; ``compare`` later proves the log still
holds, unchanged, everything the checkpoint covered.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import datetime

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import AwareDatetime, Field

from events.envelope import Envelope, Frozen
from events.reading import LogReader
from events.signing import Keyring, Signer
from events.topics import WRITERS, checkpoint_topic, event_topic
from infra.kafka_io import AUDITOR, load_quarantine, read_log
from infra.kafka_security import kafka_python_settings
from infra.keys import CHECKPOINT_SIGNER, load_keyring
from infra.settings import Settings

SIGNER = CHECKPOINT_SIGNER


class StreamHead(Frozen):
    seq: int = Field(ge=1)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class TopicState(Frozen):
    end_offsets: dict[str, int]
    """Per partition (as a string): the offset after the last record."""
    streams: dict[str, StreamHead]


class Statement(Frozen):
    namespace: str
    taken_at: AwareDatetime
    topics: dict[str, TopicState]


class SignedCheckpoint(Frozen):
    statement: Statement
    key_id: str
    signature: str

    def payload(self) -> bytes:
        return canonical(self.statement)


def canonical(statement: Statement) -> bytes:
    return orjson.dumps(statement.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def take(
    settings: Settings,
    signer: Signer,
    now: datetime,
    progress: Callable[[int, float], None] | None = None,
) -> SignedCheckpoint:
    """Read every topic through the reading rule and sign the heads and the end offsets;
    ``progress(records, seconds)`` every 10,000 records read."""
    started = time.monotonic()
    keyring = load_keyring(settings.keyring)
    topics = [event_topic(c, settings.namespace) for c in WRITERS]
    ends = end_offsets(settings.bootstrap_servers, topics)
    reader = LogReader(
        keyring, load_quarantine(settings.bootstrap_servers, settings.namespace, keyring)
    )
    for count, _ in enumerate(read_log(settings.bootstrap_servers, topics, reader), 1):
        if progress is not None and count % 10_000 == 0:
            progress(count, time.monotonic() - started)
    states = {
        topic: TopicState(
            end_offsets={str(p): end for (t, p), end in ends.items() if t == topic},
            streams={
                stream: StreamHead(seq=head.seq, hash=head.hash)
                for (t, stream), head in sorted(reader.heads.items())
                if t == topic
            },
        )
        for topic in topics
    }
    statement = Statement(namespace=settings.namespace, taken_at=now, topics=states)
    signature = signer.private_key.sign(canonical(statement))
    return SignedCheckpoint(
        statement=statement, key_id=signer.key_id, signature=base64.b64encode(signature).decode()
    )


def publish(settings: Settings, checkpoint: SignedCheckpoint) -> None:
    """Append the checkpoint to the checkpoint topic (kept forever, like the events)."""
    producer = KafkaProducer(
        **kafka_python_settings(AUDITOR), bootstrap_servers=settings.bootstrap_servers, acks="all"
    )
    try:
        producer.send(
            checkpoint_topic(settings.namespace),
            key=settings.namespace.encode(),
            value=orjson.dumps(checkpoint.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS),
        ).get(timeout=30)
    finally:
        producer.close()


def signature_problem(checkpoint: SignedCheckpoint, keyring: Keyring) -> str | None:
    """Why the checkpoint's signature does not hold (None when it does)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = keyring.key(checkpoint.key_id)
    if key is None or key.context != SIGNER:
        return f"key {checkpoint.key_id!r} is not an {SIGNER} key of the keyring"
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key)).verify(
            base64.b64decode(checkpoint.signature), checkpoint.payload()
        )
    except (InvalidSignature, ValueError):
        return "the checkpoint's signature does not verify: it was altered or not ours"
    return None


def compare(
    checkpoint: Statement,
    ends: dict[tuple[str, int], int],
    streams: dict[tuple[str, str], list[Envelope]],
) -> list[tuple[str, str, str]]:
    """``(kind, where, detail)`` for everything the checkpoint covered that the log no longer
    holds unchanged: a topic that ends before the checkpoint's end (cut, wiped or re-created),
    a stream whose checkpointed event is gone, an event rewritten since."""
    problems = []
    for topic, state in sorted(checkpoint.topics.items()):
        for partition, end in sorted(state.end_offsets.items()):
            now = ends.get((topic, int(partition)), 0)
            if now < end:
                problems.append((
                    "checkpoint-truncated", f"{topic}@{partition}",
                    f"ends at offset {now}, before {end} at the checkpoint of "
                    f"{checkpoint.taken_at.isoformat()}: cut short, wiped or re-created",
                ))
        for stream, head in sorted(state.streams.items()):
            held = {e.stream_seq: e for e in streams.get((topic, stream), [])}
            event = held.get(head.seq)
            where = f"{topic} stream {stream}"
            if event is None:
                problems.append((
                    "checkpoint-missing", where,
                    f"seq {head.seq}, on the log at the checkpoint, is gone",
                ))
            elif event.hash != head.hash:
                problems.append((
                    "checkpoint-rewritten", where,
                    f"seq {head.seq} has hash {event.hash[:12]}..., the checkpoint "
                    f"{head.hash[:12]}...: rewritten since",
                ))
    return problems


def end_offsets(bootstrap_servers: str, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = KafkaConsumer(
        **kafka_python_settings(AUDITOR),
        bootstrap_servers=bootstrap_servers,
        isolation_level="read_committed",
    )
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        return {
            (tp.topic, tp.partition): end for tp, end in consumer.end_offsets(partitions).items()
        }
    finally:
        consumer.close()
