"""The worker's Prometheus metrics, served at ``/metrics`` without a token (decision 47).

Labels are topic names and ``topic:partition`` sources only: no subject id, no free text.
Events applied are counted by this process (from 0 at each start, as Prometheus counters are);
lag, halted partitions and dead letters are read when scraped from what the worker's ``/ready``
and ``/projections`` already report (dead letters from the changelog-backed table, so they
survive a restart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

EVENTS_APPLIED = Counter(
    "trialops_worker_events_applied",
    "Events the worker applied to its projections (a redelivered copy is not counted), by "
    "event topic.",
    ["topic"],
)

READ_PAST_THE_CONSUMER = Counter(
    "trialops_worker_records_read_past_the_consumer",
    "Committed records the worker read from the log itself because its Kafka consumer passed "
    "over them (decisions 69, 77 and 78), by event topic. Nothing is lost: they are applied "
    "first. It stays at 0 unless the consumer passes records over in a way not yet understood.",
    ["topic"],
)


def read_past_the_consumer(topic: str, records: int) -> None:
    """Counts ``records`` of ``topic`` the worker read itself (a gap the consumer left)."""
    READ_PAST_THE_CONSUMER.labels(topic).inc(records)


CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""Prometheus's text exposition format (0.0.4)."""


def applied_counter(topic: str) -> Callable[[], None]:
    """Counts one event of ``topic`` applied (the labelled child found once, not per event)."""
    child = EVENTS_APPLIED.labels(topic)
    return lambda: child.inc()


class WorkerState(Collector):
    """Read when scraped: lag per partition, the partitions halted at an unreadable record,
    events dead-lettered per topic."""

    def __init__(
        self,
        lag: Callable[[], Mapping[str, int]],
        halted: Callable[[], Iterable[str]],
        dead_letters: Callable[[], Mapping[str, int]],
    ) -> None:
        self.lag = lag
        self.halted = halted
        self.dead_letters = dead_letters

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "trialops_worker_lag",
            "Records between what the worker applied and the end of the partition (commit "
            "markers included: an idle partition shows 1 after a transactional append), by "
            "topic:partition.",
            labels=["partition"],
        )
        for source, behind in sorted(self.lag().items()):
            lag.add_metric([source], float(behind))
        yield lag
        halted = GaugeMetricFamily(
            "trialops_worker_halted",
            "1 for a partition whose agent stands at an unreadable record (decision 17).",
            labels=["partition"],
        )
        for source in sorted(self.halted()):
            halted.add_metric([source], 1.0)
        yield halted
        dead = CounterMetricFamily(
            "trialops_worker_dead_letters",
            "Events sent to the dead-letter topic, by source topic (kept in the worker's "
            "table: not reset by a restart).",
            labels=["topic"],
        )
        for topic, count in sorted(self.dead_letters().items()):
            dead.add_metric([topic], float(count))
        yield dead


def exposition(state: WorkerState) -> bytes:
    """The process's metrics (this module's counter, the process and Python collectors) and
    ``state``, read now, in Prometheus's text format."""
    extra = CollectorRegistry(auto_describe=False)
    extra.register(state)
    return generate_latest(REGISTRY) + generate_latest(extra)
