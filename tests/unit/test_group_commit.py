"""Group commit (decision 39): commands that queue while an append is in flight are decided one
after another against the state the previous ones left and appended in one transaction; each
gets its own answer, a refused one appends nothing and leaves the others alone.

The store here keeps its log in memory: what is tested is the handler's batching, not Kafka
(tests/integration/test_enrollment_service.py races commands on a real broker)."""

from __future__ import annotations

import asyncio
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.envelope import Actor, Envelope, Idempotency
from events.reading import Quarantine
from events.signing import Keyring, Signer
from infra.kafka_io import Position
from services.errors import DomainError
from services.eventstore import Appended, Folding, KafkaEventStore, StoreUnavailable
from services.pending import IdempotencyKeyReused
from services.quarantine.decider import QuarantineRecord, make_decider
from services.runtime import CommandHandler
from services.stream_heads import StreamHead

from .builders import at

SPONSOR = Actor(user_id="sp-1", role="sponsor")
TOPIC = "ns.quarantine.events"


def quarantine(offset: int) -> QuarantineRecord:
    return QuarantineRecord(
        occurred_at=at(0), topic="ns.enrollment.events", partition=0, offset=offset,
        record_sha256="c" * 64, problem="unreadable: not JSON", reason="test",
    )


class LogInMemory(KafkaEventStore):
    """The store's sealing and heads, with a list for a topic. Each append takes ``delay``
    seconds (a transaction's round trips), so commands arriving meanwhile form a batch."""

    def __init__(self, delay: float = 0.05):
        signer = Signer("quarantine-1", Ed25519PrivateKey.generate())
        super().__init__("unused:9", TOPIC, "T", writer_id="w",
                         keyring=Keyring(keys=(signer.public("quarantine"),)), signer=signer)
        self.delay = delay
        self.log: list[Envelope] = []
        self.transactions: list[int] = []
        self.calls = 0
        self.fail_call: int | None = None
        self.opened = False

    def open(self, quarantine: Quarantine, into: Folding) -> int:
        self.opened = True
        into.begin(None)
        return 0

    @property
    def is_open(self) -> bool:
        return self.opened

    def check_sole_writer(self) -> None:
        pass

    def append(self, envelopes: list[Envelope], traceparents=None) -> list[Appended]:
        self.calls += 1
        time.sleep(self.delay)
        if self.calls == self.fail_call:
            raise StoreUnavailable("the broker went away mid-transaction")
        appended = []
        for envelope in envelopes:
            appended.append(Appended(envelope, Position(TOPIC, 0, len(self.log))))
            self.log.append(envelope)
            head = self._heads.setdefault(envelope.stream_id, StreamHead())
            head.seq, head.hash = envelope.stream_seq, envelope.hash
        self.transactions.append(len(envelopes))
        return appended

    def close(self) -> None:
        self.opened = False


def handler(store: LogInMemory) -> CommandHandler:
    return CommandHandler(make_decider(), store, context="quarantine")


async def together(h: CommandHandler, commands, **kwargs):
    return await asyncio.gather(
        *(h.handle(c, SPONSOR, **kwargs) for c in commands), return_exceptions=True
    )


def test_commands_that_wait_together_are_appended_in_one_transaction_each_with_its_answer():
    store = LogInMemory()
    h = handler(store)

    async def scenario():
        first = asyncio.create_task(h.handle(quarantine(1), SPONSOR))
        await asyncio.sleep(0.01)  # the first command's append is in flight
        rest = await together(h, [quarantine(n) for n in range(2, 12)])
        return [await first, *rest]

    answers = asyncio.run(scenario())
    assert store.transactions == [1, 10]
    assert [a[0].envelope.payload["offset"] for a in answers] == list(range(1, 12))
    assert [a[0].position.offset for a in answers] == list(range(11))


def test_a_lone_command_is_appended_at_once_in_its_own_transaction():
    store = LogInMemory(delay=0)
    h = handler(store)
    for n in range(3):
        asyncio.run(h.handle(quarantine(n), SPONSOR))
    assert store.transactions == [1, 1, 1]


def test_the_second_of_two_racing_commands_is_decided_on_the_first_ones_state():
    store = LogInMemory()
    h = handler(store)

    async def scenario():
        blocker = asyncio.create_task(h.handle(quarantine(99), SPONSOR))
        await asyncio.sleep(0.01)
        racing = await together(h, [quarantine(7), quarantine(8), quarantine(7)])
        await blocker
        return racing

    won, other, lost = asyncio.run(scenario())
    assert isinstance(won, list) and isinstance(other, list)
    assert isinstance(lost, DomainError) and lost.rule == "quarantined-once"
    assert store.transactions == [1, 2]
    assert [e.payload["offset"] for e in store.log] == [99, 7, 8]


def test_a_failed_append_fails_every_command_of_its_batch_and_leaves_the_state():
    store = LogInMemory()
    h = handler(store)

    async def scenario():
        blocker = asyncio.create_task(h.handle(quarantine(1), SPONSOR))
        await asyncio.sleep(0.01)
        store.fail_call = 2
        failed = await together(h, [quarantine(2), quarantine(3)])
        await blocker
        return failed

    failed = asyncio.run(scenario())
    assert all(isinstance(f, StoreUnavailable) for f in failed)
    assert h.state == frozenset({"ns.enrollment.events@0:1"})
    # The same commands go through once the store is back: nothing of them was kept.
    again = asyncio.run(together(h, [quarantine(2), quarantine(3)]))
    assert all(isinstance(a, list) and len(a) == 1 for a in again)


def test_a_retry_in_the_same_batch_gets_the_first_answer_and_appends_nothing():
    store = LogInMemory()
    h = handler(store)
    key = Idempotency(key="k-1", request_sha256="a" * 64)
    other_request = Idempotency(key="k-1", request_sha256="b" * 64)

    async def scenario():
        blocker = asyncio.create_task(h.handle(quarantine(1), SPONSOR))
        await asyncio.sleep(0.01)
        answers = await asyncio.gather(
            h.handle(quarantine(2), SPONSOR, idempotency=key),
            h.handle(quarantine(2), SPONSOR, idempotency=key),
            h.handle(quarantine(3), SPONSOR, idempotency=other_request),
            return_exceptions=True,
        )
        await blocker
        return answers

    first, retry, reused = asyncio.run(scenario())
    assert retry == first
    assert isinstance(reused, IdempotencyKeyReused)
    assert store.transactions == [1, 1]


def test_a_command_that_expires_while_queued_is_not_decided_and_the_others_are():
    store = LogInMemory(delay=0.2)
    h = handler(store)

    async def scenario():
        blocker = asyncio.create_task(h.handle(quarantine(1), SPONSOR))
        await asyncio.sleep(0.01)
        answers = await asyncio.gather(
            h.handle(quarantine(2), SPONSOR, deadline=time.monotonic() + 0.05),
            h.handle(quarantine(3), SPONSOR),
            return_exceptions=True,
        )
        await blocker
        return answers

    expired, done = asyncio.run(scenario())
    assert isinstance(expired, StoreUnavailable) and expired.rule == "request-expired"
    assert isinstance(done, list)
    assert [e.payload["offset"] for e in store.log] == [1, 3]


@pytest.mark.parametrize("clients", [16, 64])
def test_many_concurrent_clients_each_get_their_own_event_once(clients):
    store = LogInMemory(delay=0.02)
    h = handler(store)
    answers = asyncio.run(together(h, [quarantine(n) for n in range(clients)]))
    assert sorted(a[0].envelope.payload["offset"] for a in answers) == list(range(clients))
    assert len(store.log) == clients
    assert len(store.transactions) < clients


def test_clients_answered_together_send_their_next_commands_into_one_batch():
    """Clients that each send their next command as soon as they are answered, a few ms later
    (their HTTP round trip): the writer waits for the clients its last batch answered, so they
    stay in one batch rather than splitting into two halves that take turns (issue 12)."""
    store = LogInMemory(delay=0.02)
    h = handler(store)
    clients, rounds = 16, 8

    async def client(number: int) -> None:
        for turn in range(rounds):
            await h.handle(quarantine(number * 100 + turn), SPONSOR)
            await asyncio.sleep(0.001 + 0.003 * (number % 4) / 3)  # the round trip

    async def scenario():
        await asyncio.gather(*(client(n) for n in range(clients)))

    asyncio.run(scenario())
    assert len(store.log) == clients * rounds
    assert store.transactions == [clients] * rounds
