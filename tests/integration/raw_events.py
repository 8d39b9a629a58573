"""Writing events straight onto a topic, bypassing the services: for testing what readers do
with what they find there (duplicates, poison, forgeries)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from kafka import KafkaProducer

from events.envelope import GENESIS_HASH, Actor, Envelope, seal, to_bytes
from events.registry import EventPayload
from events.signing import Signer
from events.topics import event_topic
from infra.kafka_io import Position
from infra.keys import load_keyring, load_signer
from infra.settings import Settings

WRITER = Actor(user_id="test-writer", role="investigator")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class RawWriter:
    """Stands in for a context's writer: seals, chains and signs with that writer's key (unless
    ``signer`` says otherwise: None for unsigned records), but sends with a plain producer."""

    def __init__(
        self,
        settings: Settings,
        context: str = "enrollment",
        signer: Signer | str | None = "writer",
    ):
        self.settings = settings
        self.topic = event_topic(context, settings.namespace)
        self.signer = (
            load_signer(settings.writer_keys, context, load_keyring(settings.keyring))
            if signer == "writer"
            else signer
        )
        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        self.heads: dict[str, tuple[int, str]] = {}
        self.clock = START

    def envelope(self, stream_id: str, event: EventPayload, /, **overrides) -> Envelope:
        seq, prev = self.heads.get(stream_id, (0, GENESIS_HASH))
        self.clock += timedelta(minutes=1)
        fields = {
            "event_id": uuid4(),
            "event_type": event.event_type,
            "schema_version": event.schema_version,
            "trial_id": self.settings.trial_id,
            "stream_id": stream_id,
            "stream_seq": seq + 1,
            "occurred_at": self.clock,
            "recorded_at": self.clock,
            "actor": WRITER,
            "reason": None,
            "correlation_id": uuid4(),
            "causation_id": None,
            "prev_hash": prev,
            "payload": event.model_dump(mode="json"),
        }
        envelope = seal(**{**fields, **overrides})
        if isinstance(self.signer, Signer):
            envelope = self.signer.sign(envelope)
        self.heads[stream_id] = (envelope.stream_seq, envelope.hash)
        return envelope

    def send_bytes(self, key: str, value: bytes) -> Position:
        meta = self.producer.send(self.topic, key=key.encode(), value=value).get(timeout=30)
        return Position(meta.topic, meta.partition, meta.offset)

    def append(self, stream_id: str, event: EventPayload, /, **overrides) -> Position:
        envelope = self.envelope(stream_id, event, **overrides)
        return self.send_bytes(stream_id, to_bytes(envelope))

    def resend(self, envelope: Envelope) -> Position:
        return self.send_bytes(envelope.stream_id, to_bytes(envelope))

    def close(self) -> None:
        self.producer.close()
