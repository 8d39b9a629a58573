"""A command that waited past its deadline, or whose client has gone, is never executed: the
handler refuses it before it reads or writes anything (the store here is never opened)."""

from __future__ import annotations

import asyncio
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.envelope import Actor
from events.signing import Keyring, Signer
from services.eventstore import KafkaEventStore
from services.pending import RequestExpired
from services.quarantine.decider import QuarantineRecord, make_decider
from services.runtime import CommandHandler

from .builders import at

COMMAND = QuarantineRecord(
    occurred_at=at(0),
    topic="ns.enrollment.events",
    partition=0,
    offset=3,
    record_sha256="c" * 64,
    problem="unreadable: not JSON",
    reason="test",
)
SPONSOR = Actor(user_id="sp-1", role="sponsor")


def handler() -> CommandHandler:
    # No broker at this address: reaching the store would fail with another error.
    signer = Signer("quarantine-1", Ed25519PrivateKey.generate())
    store = KafkaEventStore(
        "127.0.0.1:9", "ns.quarantine.events", "T", writer_id="w",
        keyring=Keyring(keys=(signer.public("quarantine"),)), signer=signer,
    )
    return CommandHandler(make_decider(), store, context="quarantine")


def test_a_command_past_its_deadline_is_not_executed():
    with pytest.raises(RequestExpired):
        asyncio.run(handler().handle(COMMAND, SPONSOR, deadline=time.monotonic() - 1))


def test_a_command_whose_client_has_gone_is_not_executed():
    with pytest.raises(RequestExpired):
        asyncio.run(handler().handle(COMMAND, SPONSOR, still_wanted=lambda: False))


def test_a_command_queued_behind_a_slow_one_expires_in_the_queue():
    slow = handler()

    async def scenario():
        await slow._lock.acquire()  # a command that holds the context for a while
        queued = asyncio.create_task(
            slow.handle(COMMAND, SPONSOR, deadline=time.monotonic() + 0.05)
        )
        await asyncio.sleep(0.2)
        slow._lock.release()
        return await asyncio.gather(queued, return_exceptions=True)

    [outcome] = asyncio.run(scenario())
    assert isinstance(outcome, RequestExpired)
