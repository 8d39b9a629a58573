"""Writers' snapshots on the real broker (decision 42): the enrollment service, restarted after
it wrote a snapshot, reads only the events after it and knows what a service that folds its
whole topic knows (its state, its streams' heads, its idempotency answers, the followed
topics' facts); a snapshot whose bytes were changed is ignored and the topic folded from its
start."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import weakref
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from events.envelope import Actor, Idempotency
from events.safety import EnrollmentPaused
from infra.keys import init_keys
from infra.snapshot_topic import SnapshotTopic
from infra.topic_admin import ensure_topics
from services.app import handler_for
from services.catalog import services
from services.enrollment.commands import RegisterSubject
from services.runtime import CommandHandler, Rebuilt
from services.snapshots import Sealed, to_plain
from trial.config import load_trial

from .helpers import append_upstream
from .raw_events import RawWriter

pytestmark = pytest.mark.kafka

COORDINATOR = Actor(user_id="demo-site_coordinator", role="site_coordinator")
AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
KEY = Idempotency(key="retry-1101", request_sha256="a" * 64)


@pytest.fixture
def settings(settings, tmp_path):
    """The session's settings with a keyring and writer keys of the test's own, and the
    namespace's topics made."""
    keyring, writers = init_keys(tmp_path / "keys")
    keyed = replace(settings, keyring=str(keyring), writer_keys=str(writers))
    ensure_topics(keyed.bootstrap_servers, keyed.namespace)
    return keyed


def enrollment(settings) -> CommandHandler:
    """The enrollment service's writer, built as ``trialops serve`` builds it."""
    return handler_for(services()["enrollment"], settings, load_trial())


async def started(handler: CommandHandler, *, from_snapshot: bool = True) -> CommandHandler:
    if not from_snapshot:
        handler.store._resume_point = lambda: None  # type: ignore[method-assign]
    await handler.start()
    assert handler.readiness()["ready"], handler.readiness()
    return handler


async def register(handler: CommandHandler, n: int, key: Idempotency | None = None) -> Any:
    command = RegisterSubject(subject_id=f"MSK-{n:04d}", site_id="MSK", occurred_at=AT)
    return await handler.handle(command, COORDINATOR, idempotency=key)


def known(handler: CommandHandler) -> dict[str, Any]:
    """Everything a writer decides and seals with, comparable."""
    return {
        "state": orjson.dumps(to_plain(handler.state), option=orjson.OPT_SORT_KEYS),
        "answered": dict(handler._answered),
        "heads": {s: (h.seq, h.hash) for s, h in handler.store._heads.items()},
        "end": handler.store._expected_end,
    }


def test_a_restarted_writer_reads_on_from_its_snapshot_and_knows_what_a_full_fold_knows(
    settings, caplog
):

    async def scenario() -> None:
        # Given a writer that registered subjects (one with an Idempotency-Key), followed a
        # safety fact, and wrote a snapshot
        first = await started(enrollment(settings))
        for n in range(1101, 1106):
            await register(first, n, KEY if n == 1101 else None)
        answer = (await register(first, 1101, KEY))[0].envelope
        append_upstream(settings, "safety", "ae-AE-1", EnrollmentPaused(
            ae_id="AE-1", subject_id="MSK-1102", rule="grade5-related"), "safety_officer")
        await register(first, 1106)  # the pause does not stop registrations
        snapshot = await first.write_snapshot()
        assert snapshot is not None and snapshot.events == 6
        # and went on after it
        await register(first, 1107)
        first.close()

        # When it restarts
        resumed = await started(enrollment(settings))
        # Then it read only what follows the snapshot
        assert resumed._snapshot_covers == snapshot.covers
        assert resumed.state.pause is not None and resumed.state.pause.ae_id == "AE-1"
        assert len(resumed.state.subjects) == 7
        knows = known(resumed)
        resumed.close()
        # and knows what a writer that folds the whole topic knows
        folded = await started(enrollment(settings), from_snapshot=False)
        assert folded._snapshot_covers == 0
        assert known(folded) == knows
        folded.close()

        # When it restarts from the snapshot again
        again = await started(enrollment(settings))
        assert again._snapshot_covers == snapshot.covers
        # Then it answers a retry as it did the first time
        assert (await register(again, 1101, KEY))[0].envelope == answer
        # and a fact the followed topic records after the snapshot reaches it
        append_upstream(settings, "safety", "ae-AE-2", EnrollmentPaused(
            ae_id="AE-2", subject_id="MSK-1103", rule="grade5-related"), "safety_officer")
        await register(again, 1108)
        assert again.state.pause is not None and again.state.pause.ae_id == "AE-2"
        assert again._upstream_state.pause is not None
        latest = await again.write_snapshot()
        assert latest is not None and latest.covers > snapshot.covers
        again.close()
        topic_name = again.store.topic

        # When the latest snapshot's body is changed on its topic
        topic = SnapshotTopic(settings.bootstrap_servers, topic_name,
                              principal="enrollment", client_id="test")
        sealed = topic.latest()
        assert sealed is not None
        body = bytearray(sealed.body)
        body[len(body) // 2] ^= 0xFF
        topic.write(Sealed(sealed.manifest, bytes(body)))
        # Then a restart ignores it, says so, and folds the topic from its start
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="services.eventstore"):
            distrusting = await started(enrollment(settings))
        assert distrusting._snapshot_covers == 0
        assert any("snapshot is not used" in r.getMessage() for r in caplog.records)
        folded = await started(enrollment(settings), from_snapshot=False)
        assert known(distrusting) == known(folded)
        assert len(distrusting.state.subjects) == 8
        distrusting.close()
        folded.close()

    asyncio.run(scenario())


def test_an_unreadable_record_after_the_snapshot_halts_the_restarted_writer_as_a_full_read_does(
    settings
):

    async def scenario() -> None:
        # Given a writer that wrote a snapshot
        first = await started(enrollment(settings))
        await register(first, 1201)
        await register(first, 1202)
        assert await first.write_snapshot() is not None
        first.close()
        # When a record no reader can apply lands on its topic after the snapshot
        junk = RawWriter(settings, "enrollment").send_bytes("junk", b"not an envelope")
        # Then the writer restarted from the snapshot stops at that record, as a writer that
        # reads the topic from its start does, and knows the same
        halted: dict[str, dict[str, Any]] = {}
        for name, from_snapshot in (("resumed", True), ("folded", False)):
            handler = enrollment(settings)
            if not from_snapshot:
                handler.store._resume_point = lambda: None  # type: ignore[method-assign]
            await handler.start()
            ready = handler.readiness()
            assert not ready["ready"] and f":{junk.offset} is unreadable" in ready["problem"]
            assert (handler._snapshot_covers > 0) == from_snapshot
            halted[name] = known(handler)
            handler.close()
        assert halted["resumed"] == halted["folded"]

    asyncio.run(scenario())



def test_a_writers_open_folds_each_event_as_it_reads_it_and_holds_none(
    settings, monkeypatch
):
    """Decision 86: the catch-up hands each event to the fold as it reads it. It used to
    return the whole history as a list first (4.7 GB of decoded events at 1M events)."""
    seen: list[weakref.ref] = []
    alive: list[int] = []  # events read before, still in memory, at each event read
    add = Rebuilt.add

    def watched(self, position, recorded) -> None:
        alive.append(sum(1 for ref in seen if ref() is not None))
        seen.append(weakref.ref(recorded.envelope))
        add(self, position, recorded)

    async def scenario() -> None:
        # Given a writer's topic of 40 registrations
        first = await started(enrollment(settings))
        for n in range(1201, 1241):
            await register(first, n)
        first.close()
        # When a writer opens it from its start
        monkeypatch.setattr(Rebuilt, "add", watched)
        again = await started(enrollment(settings), from_snapshot=False)
        # Then it folded every event, and none it had read was kept while it read the next
        assert len(seen) == 40 and len(again.state.subjects) == 40
        assert max(alive) <= 1, alive
        again.close()

    asyncio.run(scenario())


def test_a_snapshot_whose_key_was_retired_after_it_is_read_past_and_the_topic_folded_anew(
    settings, caplog
):
    """The catch-up read on from the snapshot, then found the key that sealed it retired by a
    rotation after it: it reads the topic from its start, and the fold begins again, keeping
    nothing of the first read (decision 86)."""

    async def scenario() -> None:
        # Given a writer that registered three subjects and wrote a snapshot
        first = await started(enrollment(settings))
        for n in range(1301, 1304):
            await register(first, n)
        snapshot = await first.write_snapshot()
        assert snapshot is not None
        first.close()
        # and then its key rotated (the writer rotates when it next opens its topic)
        rotated = subprocess.run(
            [sys.executable, "-m", "trialops", "keys", "rotate", "enrollment"],
            env={**os.environ, **settings.env()}, capture_output=True, timeout=120,
            check=False,
        )
        assert rotated.returncode == 0, rotated.stderr.decode()
        second = await started(enrollment(settings))
        await register(second, 1304, KEY)  # its answer, folded twice, would be kept twice
        second.close()

        # When it restarts
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="services.eventstore"):
            third = await started(enrollment(settings))
        # Then it read past the snapshot, folded the topic from its start, and knows what a
        # writer that never looked at the snapshot knows
        assert any("was retired after it" in r.getMessage() for r in caplog.records)
        assert third._snapshot_covers == 0
        assert len(third.state.subjects) == 4
        folded = await started(enrollment(settings), from_snapshot=False)
        assert known(third) == known(folded)
        third.close()
        folded.close()

    asyncio.run(scenario())
