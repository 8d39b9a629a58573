"""A query that waits for a position (``wait_for``) is woken by the worker's batch that moves
it (projections/views.py ``PositionsMoved``), not by a poll: a waiter given a minute is
answered as soon as the position it waits for is written."""

from __future__ import annotations

import asyncio
import collections

from projections.views import PositionsMoved, _wait_for

MINUTE = {"timeout": "60"}


def test_a_waiter_is_answered_when_the_batch_that_applies_its_offset_ends():
    positions: collections.defaultdict[str, int] = collections.defaultdict(int)
    moved = PositionsMoved()

    async def scenario():
        waiting = asyncio.create_task(
            _wait_for(positions, "cohort-occupancy", "ns.enrollment.events:0:41", MINUTE, moved)
        )
        await asyncio.sleep(0)
        positions["ns.enrollment.events:0"] = 30  # a batch that does not reach it
        moved.notify()
        await asyncio.sleep(0)
        assert not waiting.done()
        positions["ns.enrollment.events:0"] = 42  # the batch that applied offset 41
        moved.notify()
        # Woken by the notification: well before the minute, and before a recheck would come.
        return await asyncio.wait_for(waiting, 0.4)

    assert asyncio.run(scenario()) is None


def test_a_position_written_without_a_batch_is_still_seen():
    positions: collections.defaultdict[str, int] = collections.defaultdict(int)
    moved = PositionsMoved()

    async def scenario():
        waiting = asyncio.create_task(
            _wait_for(positions, "cohort-occupancy", "ns.enrollment.events:0:5", MINUTE, moved)
        )
        await asyncio.sleep(0)
        positions["ns.enrollment.events:0"] = 6  # restored from a changelog: nobody notifies
        return await asyncio.wait_for(waiting, 10)

    assert asyncio.run(scenario()) is None


def test_a_waiter_past_its_timeout_is_told_how_far_the_projection_is():
    positions: collections.defaultdict[str, int] = collections.defaultdict(int)
    positions["ns.enrollment.events:0"] = 3
    status, body = asyncio.run(_wait_for(
        positions, "cohort-occupancy", "ns.enrollment.events:0:9", {"timeout": "0.2"},
        PositionsMoved(),
    ))
    assert status == 504 and body["error"] == "projection-behind"
    assert "up to offset 2, not yet 9" in body["message"]
