"""One term of office per trial (decisions 59, 60): what an instance of the services opens and
closes as the writers' group moves the trials' partitions, without a broker. The handlers are
stand-ins that record being started and closed."""

from __future__ import annotations

import asyncio

import pytest

from events.topics import partition_of
from services.writer_group import Holding
from services.writers import Writers

FIRST, SECOND = "NCT06623396", "NCT00000001"
N = 4


class StandIn:
    def __init__(self, trial_id: str, partition: int, context: str):
        self.trial_id, self.partition, self.context = trial_id, partition, context
        self.started = self.closed = False
        self.snapshots = 0

    async def start(self) -> int:
        self.started = True
        return 0

    async def write_snapshot(self, newer_by: int = 1):
        self.snapshots += 1

    def close(self) -> None:
        self.closed = True

    def readiness(self):
        return {"ready": self.started and not self.closed, "problem": None, "topic": "t"}


def writers(trials=(FIRST, SECOND)):
    made: list[StandIn] = []
    welcomed: list[str] = []

    def make(trial_id: str, partition: int):
        handlers = {c: StandIn(trial_id, partition, c) for c in ("enrollment", "access")}
        made.extend(handlers.values())
        return handlers

    async def started(trial_id, _handlers):
        welcomed.append(trial_id)

    return Writers(list(trials), make, started, "http://me"), made, welcomed


def holding(*held: int, partitions: int = N, owners=None, settled=True) -> Holding:
    return Holding(frozenset(held), owners or {p: "http://me" for p in held}, settled,
                   partitions)


def run(coro):
    return asyncio.run(coro)


def test_an_instance_writes_the_trials_whose_partitions_it_is_given_and_only_those():
    w, made, welcomed = writers()
    w.note(holding(partition_of(FIRST, N)))
    run(w.settle())
    assert list(w.terms) == [FIRST] and welcomed == [FIRST]
    assert {(h.trial_id, h.partition) for h in made} == {(FIRST, partition_of(FIRST, N))}
    assert all(h.started for h in made)


def test_a_trial_moved_away_is_snapshotted_and_closed_and_the_others_stay_open():
    w, made, _ = writers()
    w.note(holding(partition_of(FIRST, N), partition_of(SECOND, N)))
    run(w.settle())
    w.note(holding(partition_of(SECOND, N),
                   owners={partition_of(FIRST, N): "http://other",
                           partition_of(SECOND, N): "http://me"}))
    run(w.settle())
    assert list(w.terms) == [SECOND]
    first = [h for h in made if h.trial_id == FIRST]
    assert all(h.closed and h.snapshots == 1 for h in first)
    assert not any(h.closed for h in made if h.trial_id == SECOND)
    assert w.holder(FIRST) == "http://other"


def test_while_the_group_rebalances_what_is_held_stays_held():
    w, made, _ = writers()
    w.note(holding(partition_of(FIRST, N)))
    run(w.settle())
    w.note(Holding(frozenset(), {}, settled=False, partitions=N))
    run(w.settle())
    assert list(w.terms) == [FIRST] and not any(h.closed for h in made)


def test_two_trials_on_one_partition_write_nothing_and_say_why():
    # NCT06623396 and NCT04577326 fall on one partition of 2 (the trial ids' murmur2)
    w, made, _ = writers(("NCT06623396", "NCT04577326"))
    assert partition_of("NCT06623396", 2) == partition_of("NCT04577326", 2)
    w.note(holding(0, 1, partitions=2))
    run(w.settle())
    assert w.terms == {} and made == []
    assert "both fall on partition" in (w.problem or "")
    status, body = run(w.standby("NCT06623396"))
    assert status == 503 and "both fall on partition" in body["detail"]


@pytest.mark.parametrize("partitions", [0, -1])
def test_nothing_is_written_while_the_partition_count_is_unknown_or_differs(partitions):
    w, made, _ = writers()
    w.note(Holding(frozenset({1, 3}), {1: "http://me", 3: "http://me"}, True, partitions,
                   counts={"a": 4, "b": 2}))
    run(w.settle())
    assert w.terms == {} and made == []


def test_a_standby_asked_by_another_instance_does_not_ask_back():
    w, _made, _ = writers()
    w.note(holding(partition_of(SECOND, N),
                   owners={partition_of(FIRST, N): "http://other",
                           partition_of(SECOND, N): "http://me"}))
    run(w.settle())
    status, body = run(w.standby(FIRST, asked=True))
    assert status == 503 and body["error"] == "not-held-here"
    assert run(w.standby(SECOND)) is None  # held here: its contexts answer


def _forwarding_pair(w: Writers, holder_answers: asyncio.Event):
    """A holder on loopback that answers 201 only once ``holder_answers`` is set, and this
    instance's app (``forward_unheld`` behind the correlation middleware), both started."""
    from uuid import uuid4

    from aiohttp import web

    from services.correlation import Correlation
    from services.http import CORRELATION
    from services.writers import forward_unheld

    async def slow(_request):
        await holder_answers.wait()
        return web.json_response({"decided": True}, status=201)

    holder = web.Application()
    holder.router.add_post("/enrollment/subjects", slow)

    @web.middleware
    async def correlated(request, handler):
        request[CORRELATION] = Correlation(uuid4(), None, "new")
        return await handler(request)

    async def here(_request):
        return web.json_response({"decided": "here"}, status=201)

    standby = web.Application(middlewares=[correlated, forward_unheld(w)])
    standby.router.add_post("/enrollment/subjects", here)
    return holder, standby


async def _serve(app):
    from aiohttp import web

    from tests.conftest import free_port

    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", runner


def test_a_command_passed_to_a_holder_that_loses_the_partition_is_answered_at_once():
    """The holder stalls with a command in hand; when the group gives the partition to this
    instance, the command is answered 503 (undecided: send it again with its key) without
    waiting for the forward's deadline. A word that moves nothing leaves it waiting, and the
    holder's answer comes back as given."""
    import aiohttp

    w, _made, _ = writers(trials=(FIRST,))
    partition = partition_of(FIRST, N)

    async def scenario():
        holder_answers = asyncio.Event()
        holder_app, standby_app = _forwarding_pair(w, holder_answers)
        holder_url, holder_runner = await _serve(holder_app)
        standby_url, standby_runner = await _serve(standby_app)
        w.note(holding(partitions=N, owners={partition: holder_url}))
        await w.settle()
        try:
            async with aiohttp.ClientSession() as session:
                async def post():
                    async with session.post(f"{standby_url}/enrollment/subjects",
                                            json={}) as answer:
                        return answer.status, await answer.json(content_type=None)

                # A word that moves nothing (a rebalance, then the same holder) keeps waiting
                waiting = asyncio.create_task(post())
                await asyncio.sleep(0.2)
                w.note(holding(partitions=N, owners={partition: holder_url}, settled=False))
                await asyncio.sleep(0.1)
                w.note(holding(partitions=N, owners={partition: holder_url}))
                await asyncio.sleep(0.2)
                assert not waiting.done()
                holder_answers.set()
                kept = await waiting
                holder_answers.clear()
                # The group gives the partition to this instance while a command is with the
                # holder
                moved = asyncio.create_task(post())
                await asyncio.sleep(0.2)
                w.note(holding(partitions=N, owners={partition: "http://me"}))
                # the holder never answers it: only the group's word can (the forward's
                # deadline is 20 s)
                return kept, await asyncio.wait_for(moved, 10)
        finally:
            holder_answers.set()
            await standby_runner.cleanup()
            await holder_runner.cleanup()

    kept, (status, body) = run(scenario())
    assert kept == (201, {"decided": True})
    assert status == 503 and body["error"] == "holder-unreachable"
    assert "send it again with the same Idempotency-Key" in body["detail"]


def test_a_starting_instance_waits_past_an_assignment_made_without_the_topics_metadata():
    """The first assignment can come before the leader knows the topics' partition counts: it
    gives nothing. The instance waits for the next one, which gives it the trial, before it
    answers commands; partition counts that differ are a word to act on, not to wait past."""
    w, made, _ = writers(trials=(FIRST,))

    async def scenario():
        w.note(holding(partitions=0))
        waiting = asyncio.create_task(w.first_word(timeout=10))
        await asyncio.sleep(0.1)
        still_waiting = not waiting.done()
        w.note(holding(partition_of(FIRST, N)))
        await asyncio.wait_for(waiting, 5)
        return still_waiting

    assert run(scenario())
    assert w.holds(FIRST) and all(h.started for h in made)

    differing, _made, _ = writers(trials=(FIRST,))

    async def differ():
        differing.note(holding(partitions=-1))
        await asyncio.wait_for(differing.first_word(timeout=10), 5)

    run(differ())
    assert differing.problem is not None and not differing.holds(FIRST)
