"""The worker starts and stops without Faust's fixed waits (projections/faust_lifecycle.py,
decision 79): its table manager registers the tables as soon as it starts, and its worker
closes the event loop a tenth of a second after the last tasks were cancelled. No timing is
asserted: the tests record the sleeps asked for."""

from __future__ import annotations

import asyncio

from infra.keys import init_keys
from infra.settings import Settings
from projections.faust_lifecycle import (
    LOOP_CLOSE_GRACE_SECONDS,
    PromptTableManager,
    PromptWorker,
)
from projections.worker import create_app
from services.auth import UserDirectory


def _app(tmp_path):
    keyring, writers = init_keys(tmp_path / "keys")
    settings = Settings(bootstrap_servers="127.0.0.1:9", namespace="tfl", trial_id="NCT06623396",
                        replication_factor=1, keyring=str(keyring), writer_keys=str(writers))
    return create_app(settings, users=UserDirectory.demo(), data_dir=tmp_path / "data")


def test_the_worker_registers_its_tables_at_start_without_sleeping(tmp_path):
    app = _app(tmp_path)
    manager = app.tables
    assert isinstance(manager, PromptTableManager)
    steps: list[object] = []

    async def sleep(seconds, *args, **kwargs):
        steps.append(("sleep", seconds))

    async def update_channels():
        steps.append("tables registered")

    class Recovery:
        async def start(self):
            steps.append("recovery started")

    manager.sleep = sleep
    manager._update_channels = update_channels
    manager._recovery = Recovery()

    asyncio.run(manager.on_start())

    # Faust's own manager sleeps a second first (faust.tables.manager, TableManager.on_start).
    assert steps == ["tables registered", "recovery started"]


def test_a_stopping_worker_closes_its_loop_a_tenth_of_a_second_after_the_last_tasks(
    tmp_path, monkeypatch
):
    slept: list[float] = []

    async def sleep(seconds, *args, **kwargs):
        slept.append(seconds)

    worker = PromptWorker(_app(tmp_path), quiet=True)
    monkeypatch.setattr(asyncio, "sleep", sleep)

    asyncio.run(worker._sentinel_task())

    # mode's Worker sleeps 1.0 s there (mode.worker, Worker._sentinel_task).
    assert slept == [LOOP_CLOSE_GRACE_SECONDS] and LOOP_CLOSE_GRACE_SECONDS < 1.0
