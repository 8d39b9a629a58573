"""An idle worker's agents sleep until their next event (decision 82). ``take_batches`` asks
how long to wait for a batch (``within``), finds nothing in that time, and then waits for an
event rather than for the end of another wait; the event that ends it is taken at once, not
after a timed wait. Faust's ``take_events`` loop, which it kept before, woke every ``within()``
seconds for nothing: 24 and 25 asks in half a second of idleness, in two runs of this test.

A real Faust stream over an in-memory channel: no broker is reached."""

from __future__ import annotations

import asyncio
import contextlib

import faust

from projections.faust_kafka import take_batches

IDLE_SECONDS = 0.5
WITHIN = 0.02
"""The worker's short wait (``BATCH_SECONDS``): 25 of them fit in the idle time."""


def run_idle_then_two_events() -> tuple[int, list[tuple[int, list[bytes]]]]:
    """How many times ``within`` was asked during the idle time, and each batch taken with how
    many times it had been asked by then."""
    loop = asyncio.new_event_loop()
    app = faust.App("take-batches-idle", broker="kafka://127.0.0.1:9", web_enabled=False,
                    loop=loop)
    channel = app.channel()
    asked: list[float] = []
    batches: list[tuple[int, list[bytes]]] = []

    def within() -> float:
        asked.append(loop.time())
        return WITHIN

    async def scenario() -> int:
        app.flow_control.resume()  # Faust resumes it once the worker has started
        stream = app.stream(channel)

        async def consume() -> None:
            async for batch in take_batches(stream, 10, within):
                batches.append((len(asked), [event.value for event in batch]))

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(IDLE_SECONDS)
        idle_asks = len(asked)
        await channel.send(value=b"one")
        await channel.send(value=b"two")
        for _ in range(300):
            if sum(len(values) for _, values in batches) >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await stream.stop()
        return idle_asks

    try:
        idle_asks = loop.run_until_complete(scenario())
    finally:
        loop.close()
    return idle_asks, batches


def test_an_idle_take_batches_waits_for_its_next_event_and_takes_it_at_once():
    idle_asks, batches = run_idle_then_two_events()

    # One wait of `within()`, found empty; then no more wakes until an event came.
    assert idle_asks == 1
    # Both events are taken, in order, and the first batch without another timed wait.
    assert [value for _, values in batches for value in values] == [b"one", b"two"]
    assert batches[0][0] == 1
