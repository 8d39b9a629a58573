"""The worker's Faust tables: in memory or counted on RocksDB, and patient with a changelog
the consumer has not seen yet.

Faust checks, at a table's first write for a source topic, that the source topic and the
table's changelog have as many partitions (``Table._verify_source_topic_partitions``), reading
both counts from the consumer's metadata. At a worker's first start the changelogs are created
moments before the group assigns, and the metadata may not hold them yet: Faust then counts 0
partitions, raises ``PartitionsMismatch`` and the fold agent crashed on the first event of a
partition, losing the events it had in hand (the many-trials test, under load, decision 67).
A changelog the metadata does not know yet is not a mismatch: the check waits for a later write,
when the metadata knows it; a changelog known with another count still raises.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

import faust
from mode.utils.times import want_seconds


class _CheckedWhenKnown(faust.Table):
    def _verify_source_topic_partitions(self, source_topic: str) -> None:
        if not self.app.consumer.topic_partitions(self.changelog_topic_name):
            return  # not in the consumer's metadata yet: checked at a later write
        super()._verify_source_topic_partitions(source_topic)


class InMemoryTable(_CheckedWhenKnown):
    """A table in memory whatever the app's store: Faust ignores a table's own
    ``store="memory://"`` (a URL with no host or path is false) and takes the app's."""

    def _new_store(self):
        return self._new_store_by_url("memory://")


class CountedTable(_CheckedWhenKnown):
    """An on-disk table that knows its size and reads its keys in order. RocksDB counts keys
    by reading every one, and the views ask for a table's size on every request
    (projections/views.py): the count is taken once (and again after a recovery, which writes
    to the store directly), then kept. RocksDB keeps each partition's keys sorted: a view's
    page, or the keys under a prefix, is a seek there (``keys_from``), not a pass over every
    key (decision 85)."""

    _count: int | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Keys stored (and sent to the changelog) as their UTF-8 bytes, not as JSON strings:
        # RocksDB's byte order is then the keys' order ('"a b"' sorts before '"a"' in JSON).
        if self.key_type is str:
            self.key_serializer = "raw"

    def keys_from(self, start: str) -> Iterator[str]:
        """The keys from ``start`` on, in key order, of the partitions this worker holds
        actively (those ``keys()`` reads): a seek in each partition's RocksDB and a merge.
        The worker's keys are strings stored as their UTF-8 bytes (the raw key serializer),
        whose byte order is the strings' order."""
        store: Any = self.data  # Faust's RocksDB store (faust.stores.rocksdb.Store)
        if store.key_serializer != "raw" or self.key_type is not str:
            raise TypeError(f"{self.name}: keys in order need str keys stored raw")
        begin, offset_key = store._encode_key(start), store.offset_key
        runs = [
            (store._decode_key(key) for key in db.keys(from_key=begin) if key != offset_key)
            for db in store._dbs_for_actives()
        ]
        return heapq.merge(*runs)

    def __len__(self) -> int:
        if self._count is None:
            self._count = super().__len__()
        return self._count

    def __setitem__(self, key, value) -> None:
        if self._count is not None and key not in self:
            self._count += 1
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        existed = key in self
        super().__delitem__(key)
        if self._count is not None and existed:
            self._count -= 1

    async def on_recovery_completed(self, active_tps, standby_tps) -> None:
        self._count = None
        await super().on_recovery_completed(active_tps, standby_tps)
        self._count = None

    async def on_rebalance(self, assigned, revoked, newly_assigned, generation_id=0) -> None:
        self._count = None
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        self._count = None


def changelog_topics(app: faust.App) -> dict[str, tuple[int, int, dict[str, str]]]:
    """Every table's changelog as Faust would create it (name: partitions, replication factor,
    configs). Made before the worker's consumer joins its group (decision 69): Faust creates
    them at start, moments before the group's first assignment, and its assignor leaves out a
    topic the metadata does not list yet ("Ignoring missing topic"). A table whose changelog
    was left out had no partition assigned, and served nothing, for good: the many-trials
    test's patient timeline, after a changed fold version started a new group."""
    topics = {}
    for table in app.tables.values():
        topic = table.changelog_topic
        configs: dict[str, str] = {}
        policies = [p for p, on in (("compact", topic.compacting), ("delete", topic.deleting))
                    if on]
        if policies:
            configs["cleanup.policy"] = ",".join(policies)
        if topic.retention:
            configs["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        configs.update({k: str(v) for k, v in (topic.config or {}).items()})
        topics[topic.get_topic_name()] = (
            topic.partitions or app.conf.topic_partitions,
            topic.replicas or app.conf.topic_replication_factor,
            configs,
        )
    return topics
