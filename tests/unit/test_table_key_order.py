"""An on-disk table reads its keys in order (decision 85): a view's page, or the keys under a
prefix, is a seek in each partition's RocksDB and a merge, so the keys must be stored in an
encoding whose byte order is the strings' order (UTF-8, not JSON: '"a b"' sorts before '"a"').

A real Faust table on a real RocksDB store (rocksdict), written as a recovery writes it (the
changelog's records into the store); no broker: the partitions held are given as the
assignor would give them."""

from __future__ import annotations

import random
from types import SimpleNamespace

import faust
import pytest
from faust.types import TP

from projections.applying import TrialTable
from projections.base import scope
from projections.faust_tables import CountedTable, InMemoryTable
from projections.paging import StoredOrder, page_of

KEYS = [
    "T-1/screening:MSK-0101", "T-1/screening:MSK-0102", "T-1/cohort:DL1", "T-1/cohort:DL1 b",
    "T-1/cohort:DL1!", "T-1/waiting:MSK-0107", "T-1/waiting:é-1", "T-1/w\"q", "T-1/w\\q",
    "T-10/cohort:DL1", "T-2/cohort:DL1", "T-2/screening:MSK-0101", "a", "a b", "ab", "",
]
"""Keys of two trials and some whose JSON form sorts otherwise than they do (a space, '!', a
quote, a backslash, a letter outside ASCII)."""


@pytest.fixture
def table(tmp_path):
    app = faust.App("test-key-order", broker="kafka://127.0.0.1:9", store="rocksdb://",
                    datadir=str(tmp_path))
    table = app.tables.add(CountedTable(app, name="cohort-occupancy", partitions=3,
                                        key_type=str, options={}))
    changelog = table.changelog_topic
    held = {TP(changelog.get_topic_name(), p) for p in (0, 1)}
    app.assignor.assigned_actives = lambda: held  # partitions 0 and 1; not 2

    def write(keys: list[str], partition: int) -> None:
        records = [
            SimpleNamespace(message=SimpleNamespace(
                tp=TP(changelog.get_topic_name(), partition), offset=n, partition=partition,
                key=app.serializers.dumps_key(str, key, serializer=changelog.key_serializer),
                value=b"{}",
            ))
            for n, key in enumerate(keys)
        ]
        table.data.apply_changelog_batch(records, None, None)

    table.write = write
    return table


def test_the_keys_come_in_their_order_from_the_partitions_held(table):
    shuffled = KEYS[:]
    random.Random(3).shuffle(shuffled)
    table.write(shuffled[:7], 0)
    table.write(shuffled[7:], 1)
    table.write(["T-1/cohort:DL0", "T-1/screening:MSK-0100"], 2)  # not held here
    assert list(table.keys_from("")) == sorted(KEYS) == sorted(table.keys())
    assert list(table.keys_from("T-1/w")) == sorted(k for k in KEYS if k >= "T-1/w")


def test_a_trials_keys_in_order_are_its_own(table):
    table.write(KEYS, 0)
    trial = TrialTable(table, "T-1")
    assert trial.prefix == scope("T-1")
    own = sorted(k.removeprefix("T-1/") for k in KEYS if k.startswith("T-1/"))
    assert trial.keys_from is not None
    assert list(trial.keys_from("")) == own
    stored = StoredOrder(trial.keys_from)
    for prefix in ("cohort:", "waiting:", "screening:", "w", "none:"):
        for limit in (1, 2, 100):
            assert stored.page(None, None, None, limit, prefix) == page_of(own, None, limit,
                                                                           prefix)


def test_a_table_in_memory_has_no_stored_order():
    """Its views keep their own order of its keys (``KeyOrder``)."""
    app = faust.App("test-key-order-memory", broker="kafka://127.0.0.1:9", store="memory://")
    table = InMemoryTable(app, name="dose-escalation", partitions=1, key_type=str)
    assert TrialTable(table, "T-1").keys_from is None
