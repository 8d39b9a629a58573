"""The Faust worker: one agent per projection folds its contexts' topics into a
changelog-backed table, and the web server serves each projection as JSON.

Agents only decode, de-duplicate and call the projection's pure ``apply``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faust
from pydantic import ValidationError

from events.envelope import from_bytes
from events.registry import UnknownEventType, read
from events.topics import dead_letter_topic, event_topic
from projections.base import Projection, to_json
from projections.catalog import PROJECTIONS
from projections.faust_kafka import ReadCommittedTransport
from trialops.settings import Settings

log = logging.getLogger(__name__)


class TrialopsApp(faust.App):
    def _new_transport(self):
        return ReadCommittedTransport(self.conf.broker_consumer, self)


def create_app(
    settings: Settings,
    *,
    web_port: int = 6066,
    web_host: str = "127.0.0.1",
    data_dir: Path = Path(".trialops"),
    store: str = "memory://",
) -> TrialopsApp:
    group = f"{settings.namespace}-projections"
    (data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = TrialopsApp(
        group,
        broker=[f"kafka://{hp.strip()}" for hp in settings.bootstrap_servers.split(",")],
        store=store,
        datadir=str(data_dir / "faust"),
        web_host=web_host,
        web_port=web_port,
        web_bind=web_host,
        topic_partitions=1,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        producer_acks=-1,
    )
    dead_letters = app.topic(
        dead_letter_topic(group, settings.namespace),
        key_serializer="raw",
        value_serializer="raw",
        partitions=1,
    )
    # Last stream_seq applied per (projection, topic, stream): Kafka delivers at least once, a
    # projection applies each event once.
    applied = app.Table("applied-seq", default=int, partitions=1, key_type=str)
    for projection in PROJECTIONS.values():
        _wire(app, settings, projection, applied, dead_letters)
    return app


def _wire(app, settings, projection: Projection, applied, dead_letters) -> None:
    table = app.Table(projection.name, partitions=1, key_type=str)
    sources = app.topic(
        *(event_topic(c, settings.namespace) for c in projection.contexts),
        key_serializer="raw",
        value_serializer="raw",
    )

    async def fold(stream):
        async for event in stream.events():
            message = event.message
            try:
                recorded = read(from_bytes(event.value))
            except (ValueError, ValidationError, UnknownEventType) as exc:
                await _dead_letter(dead_letters, event, exc)
                continue
            envelope = recorded.envelope
            # Streams are numbered per context: the topic is part of the stream's identity.
            seen_key = f"{projection.name}|{message.topic}|{envelope.stream_id}"
            if envelope.stream_seq <= applied[seen_key]:
                log.info("skipping redelivered %s@%s", message.topic, message.offset)
                continue
            key = projection.key_of(recorded)
            if key is not None:
                table[key] = projection.apply(table.get(key) or projection.initial(key), recorded)
            applied[seen_key] = envelope.stream_seq

    app.agent(sources, name=f"fold-{projection.name}")(fold)

    async def view(web, request):
        document = projection.render(dict(table.items()))
        return web.bytes(to_json(document), content_type="application/json")

    app.page(f"/projections/{projection.name}", name=f"view-{projection.name}")(view)


async def _dead_letter(dead_letters, event, exc: Exception) -> None:
    message = event.message
    reason = f"{type(exc).__name__}: {exc}"[:1000]
    log.error("dead-lettering %s@%s: %s", message.topic, message.offset, reason)
    await dead_letters.send(
        key=message.key,
        value=message.value,
        headers=[
            ("reason", reason.encode()),
            ("source", f"{message.topic}:{message.partition}:{message.offset}".encode()),
        ],
    )
