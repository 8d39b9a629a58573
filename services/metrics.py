"""The command services' Prometheus metrics, served at ``/metrics`` without a token.

No label carries patient data or free text (decision 47): a route is its path template from
the route tables, a status a number, a rule one of the code's kebab-case rule names, a context
one of the catalogue's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

COMMANDS = Counter(
    "trialops_commands",
    "Commands (POST requests) answered, by route template, HTTP status and the rule that "
    "refused them (empty when accepted).",
    ["route", "status", "rule"],
)
APPEND_SECONDS = Histogram(
    "trialops_append_seconds",
    "Time to append one batch of commands' events in one Kafka transaction (group commit, "
    "decision 39), by context.",
    ["context"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 15.0),
)
BATCH_COMMANDS = Histogram(
    "trialops_batch_commands",
    "Commands whose events one append carried (group commit, decision 39), by context.",
    ["context"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)

UNMATCHED = "unmatched"
"""The route label of a request to a path no route takes (its path is not repeated)."""


def appended(context: str, commands: int, seconds: float) -> None:
    """One batch appended: ``commands`` commands' events in ``seconds``."""
    BATCH_COMMANDS.labels(context).observe(commands)
    APPEND_SECONDS.labels(context).observe(seconds)


def command_answered(route: str, status: int, rule: str) -> None:
    COMMANDS.labels(route, str(status), rule).inc()


class _Readiness(Collector):
    """``trialops_context_ready``: 1 for each context that takes commands, read when scraped."""

    def __init__(self, contexts: Callable[[], Iterable[tuple[str, bool]]]) -> None:
        self.contexts = contexts

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "trialops_context_ready",
            "1 when the context takes commands (store open and caught up, no unreadable "
            "record in the way, not retired), else 0.",
            labels=["context"],
        )
        for context, ready in self.contexts():
            gauge.add_metric([context], 1.0 if ready else 0.0)
        yield gauge


def exposition(*collectors: Collector) -> bytes:
    """The process's metrics (the default registry: these counters, the process and Python
    collectors) followed by ``collectors``, read now, in Prometheus's text format."""
    extra = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        extra.register(collector)
    return generate_latest(REGISTRY) + generate_latest(extra)


def metrics_page(contexts: Callable[[], Iterable[tuple[str, bool]]]):
    """The ``/metrics`` handler; ``contexts`` says, when scraped, which contexts are ready."""
    readiness = _Readiness(contexts)

    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=exposition(readiness))
        response.headers["Content-Type"] = CONTENT_TYPE_PLAIN_0_0_4
        return response

    return metrics
