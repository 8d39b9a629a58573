"""Issue 4: how fast the Faust worker folds the enrollment topic into the projections, against
reading the same topic raw with aiokafka, and how query latency grows with history.

For N events (``--events``), in a namespace of their own:

a. raw consumption of the topic with aiokafka (read_committed, beginning to end offset);
b. the Faust worker (``python -m trialops worker``) applying the same N events, watched through
   ``GET /projections`` until every projection's position reaches the end offset: events/s
   with and without the worker's start-up, per projection, and per tenth of the topic;
c. b / a;
d. for each size of ``--sizes`` (each in its own namespace; N is reused when it is one of
   them): sequential GETs of the projections' views once everything is applied.

Run from the repository root:  python -m bench.bench_projections [--quick] [--events N] ...
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.common import (
    Produced,
    WorkloadOptions,
    drop_namespace,
    fresh_settings,
    kafka_broker,
    parse_sizes,
    percentile,
    print_block,
    produce_and_say,
    projection_catalog,
    rate,
    ratio,
    run,
    say,
)
from bench.decode_costs import decode_costs, decode_lines
from bench.worker_process import Worker, WorkerFailed
from events.topics import event_topic
from infra.settings import Settings
from projections.paging import encode_cursor

CONTEXT = "enrollment"


PROJECTIONS = projection_catalog()

# ---------------------------------------------------------------- a. raw aiokafka


@dataclass
class RawRead:
    events: int
    bytes: int
    seconds: float
    cpu_seconds: float = 0.0
    """CPU time of this process while it read (user and system)."""


async def _aiokafka_read(bootstrap_servers: str, topic: str, end: int) -> RawRead:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id="trialops-bench-raw",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        events = size = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    if record.offset < end:
                        events += 1
                        size += len(record.value)
        return RawRead(events, size, time.perf_counter() - started,
                       time.process_time() - cpu_started)
    finally:
        await consumer.stop()


def raw_aiokafka(settings: Settings, end: int) -> RawRead:
    say(f"a. reading the {end:,} events raw with aiokafka ...")
    result = asyncio.run(
        _aiokafka_read(settings.bootstrap_servers, event_topic(CONTEXT, settings.namespace), end)
    )
    if result.events != end:
        raise RuntimeError(f"aiokafka read {result.events} events, expected {end}")
    say(f"  done in {result.seconds:.2f}s: {rate(result.events, result.seconds)}")
    return result


# ---------------------------------------------------------------- b. the Faust worker


@dataclass
class Progress:
    """What ``GET /projections`` showed of one projection's position on the topic."""

    first_at: float | None = None
    first_position: int = 0
    done_at: float | None = None
    position: int = 0
    tenths: list[float] = field(default_factory=list)
    """Time at which the position first reached 10%, 20%, ... of the end offset."""


@dataclass
class Applied:
    end: int
    spawned_at: float
    web_up_at: float | None = None
    projections: dict[str, Progress] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    failure: str | None = None
    cpu_at_first: float | None = None
    """The worker's CPU seconds when the first applied event was seen, and when every
    projection had caught up."""
    cpu_at_done: float | None = None

    @property
    def finished(self) -> bool:
        return self.failure is None and all(p.done_at for p in self.projections.values())

    @property
    def first_at(self) -> float | None:
        times = [p.first_at for p in self.projections.values() if p.first_at is not None]
        return min(times) if times else None

    @property
    def done_at(self) -> float | None:
        times = [p.done_at for p in self.projections.values() if p.done_at is not None]
        return max(times) if len(times) == len(self.projections) else None


@dataclass(frozen=True)
class Part:
    """A partition of the enrollment topic a run wrote, the end offset to apply it to, and the
    trial whose ``GET /projections?trial_id=`` shows its positions (None: the deployment's only
    trial, asked without a trial id)."""

    partition: int
    end: int
    trial_id: str | None = None

    @property
    def path(self) -> str:
        return "/projections" + (f"?trial_id={self.trial_id}" if self.trial_id else "")


def apply_with_worker(
    worker: Worker,
    settings: Settings,
    end: int,
    stall_timeout: float,
    poll: float = 0.2,
    parts: tuple[Part, ...] = (),
) -> Applied:
    """Start the worker and poll its positions until every projection reading the enrollment
    topic has applied ``end`` events of partition 0, or with ``parts`` each part's partition up
    to its end (``end`` is then their sum); a failure (exit, stall) is recorded, not raised.
    A projection's position is what it applied of all the parts together."""
    parts = parts or (Part(0, end),)
    topic = event_topic(CONTEXT, settings.namespace)
    say(f"b. starting the Faust worker (web port {worker.port}) to apply {end:,} events ...")
    worker.start()
    result = Applied(end=end, spawned_at=worker.started_at)
    result.projections = {
        name: Progress()
        for name, projection in sorted(PROJECTIONS.items())
        if CONTEXT in projection.contexts
    }
    # Per positions key (<projection>|<topic>:<partition>), the last value answered: a trial
    # whose view did not answer this poll (its holder rebalancing) keeps its last.
    seen: dict[str, int] = {}
    last_change, last_total, next_say = time.monotonic(), -1, time.monotonic() + 15
    try:
        while not result.finished:
            worker.check_alive()
            documents = _answers(worker, {part.path for part in parts})
            now = time.monotonic()
            if documents:
                _observe_answers(result, worker, documents, parts, topic, seen, now)
            total = sum(p.position for p in result.projections.values())
            if total != last_total:
                last_total, last_change = total, now
            elif now - last_change > stall_timeout:
                raise WorkerFailed(
                    f"no progress for {stall_timeout:.0f}s; end of the worker's log:\n"
                    + worker.log_tail()
                )
            if now >= next_say and result.web_up_at is not None:
                _say_progress(result, now)
                next_say = now + 15
                worker.sample_rss()
            if not result.finished:
                time.sleep(poll)
    except WorkerFailed as exc:
        result.failure = str(exc)
        say(f"  the worker did not finish: {str(exc).splitlines()[0]}")
        return result
    caught_up = result.done_at
    assert caught_up is not None, "finished means every projection has a done_at"
    say(f"  all projections caught up after {caught_up - worker.started_at:.1f}s")
    return result


def _answers(worker: Worker, paths: set[str]) -> dict[str, dict]:
    """The document each of ``paths`` answered with 200: a worker starting, or a group
    rebalancing, answers some of them with an error or not at all."""
    documents = {}
    for path in sorted(paths):
        try:
            status, body = worker.get(path, timeout=60)
        except (OSError, http.client.HTTPException):
            continue
        if status == 200:
            documents[path] = orjson.loads(body)
    return documents


def _observe_answers(
    result: Applied,
    worker: Worker,
    documents: dict[str, dict],
    parts: tuple[Part, ...],
    topic: str,
    seen: dict[str, int],
    now: float,
) -> None:
    """Note what the answered documents show. Each part's positions are taken from its own
    trial's answer only: a worker lists every partition it has a position for under any trial
    asked, and only the trial's holder knows where that trial's partition stands."""
    if result.web_up_at is None:
        result.web_up_at = now
        say(f"  worker web server up after {now - worker.started_at:.1f}s")
    for document in documents.values():
        result.dead_lettered.update(document.get("dead_lettered", {}))
    for part in parts:
        if part.path in documents:
            positions = documents[part.path].get("positions", {})
            for name in result.projections:
                # Held at the part's end, so that the sum reaches the total only once every
                # part has reached its own end.
                key = f"{name}|{topic}:{part.partition}"
                seen[key] = min(positions.get(key, 0), part.end)
    for name, progress in result.projections.items():
        applied = sum(seen.get(f"{name}|{topic}:{part.partition}", 0) for part in parts)
        _observe(progress, applied, result.end, now)
    if result.first_at is not None and result.cpu_at_first is None:
        result.cpu_at_first = worker.cpu_seconds()
    if result.finished:
        result.cpu_at_done = worker.cpu_seconds()


def _say_progress(result: Applied, now: float) -> None:
    elapsed = now - (result.first_at or now)
    slowest = min(p.position for p in result.projections.values())
    say(
        f"  applied {slowest:,}/{result.end:,} ({100 * slowest // result.end}%) by every "
        f"projection, {elapsed:.0f}s since the first event"
    )


def _observe(progress: Progress, position: int, end: int, now: float) -> None:
    progress.position = position
    if position > 0 and progress.first_at is None:
        progress.first_at, progress.first_position = now, position
    while len(progress.tenths) < 10 and position >= end * (len(progress.tenths) + 1) / 10:
        progress.tenths.append(now)
    if position >= end and progress.done_at is None:
        progress.done_at = now


def applied_lines(applied: Applied, raw: RawRead | None) -> list[str]:
    end = applied.end
    lines = []
    if applied.first_at is not None:
        lines.append(
            f"  worker start-up (spawn -> first applied event seen): "
            f"{applied.first_at - applied.spawned_at:.1f}s"
        )
    for name, p in applied.projections.items():
        if p.done_at is None or p.first_at is None:
            lines.append(f"  {name:<18} did not finish: reached offset {p.position:,} of {end:,}")
            continue
        whole = p.done_at - applied.spawned_at
        warm = p.done_at - p.first_at
        lines.append(
            f"  {name:<18} incl. start-up {rate(end, whole):>18} ({whole:.1f}s);"
            f"  excl. start-up {rate(end - p.first_position, warm):>18} ({warm:.1f}s)"
        )
    if len(applied.projections) > 1:
        lines.append(
            "  (one worker process: a single consumer feeds every agent on one event loop, so "
            "the projections advance together)"
        )
    for name, p in applied.projections.items():
        if p.first_at is None:
            continue
        marks = [p.first_at, *p.tenths]
        starts = [p.first_position, *(end * k // 10 for k in range(1, len(p.tenths) + 1))]
        rates = []
        for k in range(1, len(marks)):
            seconds, events = marks[k] - marks[k - 1], starts[k] - starts[k - 1]
            rates.append(f"{events / seconds:,.0f}" if seconds > 0 and events > 0 else "-")
        lines.append(f"  {name:<18} events/s per tenth of the topic: {' '.join(rates)}")
    if applied.dead_lettered:
        lines.append(f"  dead-lettered (should be none): {applied.dead_lettered}")
    first_at, done_at = applied.first_at, applied.done_at
    if applied.finished and raw is not None and first_at is not None and done_at is not None:
        warm = done_at - first_at
        faust = (end - min(p.first_position for p in applied.projections.values())) / warm
        raw_rate = raw.events / raw.seconds
        lines.append(
            f"c. Faust apply (all projections, excl. start-up) / raw aiokafka: "
            f"{faust:,.0f} / {raw_rate:,.0f} = {ratio(faust, raw_rate)} "
            f"(the worker is {raw_rate / faust:,.0f}x slower than reading)"
        )
        if applied.cpu_at_first is not None and applied.cpu_at_done is not None and raw.events:
            applied_events = end - min(p.first_position for p in applied.projections.values())
            worker_us = 1e6 * (applied.cpu_at_done - applied.cpu_at_first) / applied_events
            raw_us = 1e6 * raw.cpu_seconds / raw.events
            lines.append(
                f"   CPU per event (user+system, every thread): worker {worker_us:,.0f} us, "
                f"raw read {raw_us:,.1f} us; raw / worker = {ratio(raw_us, worker_us)} "
                "(moves less with the machine's load than events/s)"
            )
    if applied.failure:
        lines.append("  failure: " + applied.failure.replace("\n", "\n    "))
    return lines


# ---------------------------------------------------------------- d. query latency


@dataclass
class Timed:
    label: str
    path: str
    ms: list[float] = field(default_factory=list)
    bytes: int = 0
    status: int = 0

    def summary(self) -> str:
        if self.status != 200:
            return f"HTTP {self.status}"
        return (
            f"{percentile(self.ms, 50):8.2f} {percentile(self.ms, 95):8.2f} "
            f"{max(self.ms):8.2f}  {self.bytes:>11,} B"
        )


def query_latency(worker: Worker, produced: Produced, queries: int, full: int) -> list[Timed]:
    workload = produced.workload
    cohort, subject = workload.sample_cohort, workload.sample_subject
    views = "/projections"
    plan = [
        ("cohort-occupancy?cohort_id", f"{views}/cohort-occupancy?cohort_id={cohort}", queries),
        ("patient-timeline?subject_id", f"{views}/patient-timeline?subject_id={subject}", queries),
        # The view without a filter is a page of the screening list (decision 85), the first
        # with the cohorts and the waiting list; a page in the middle starts after a cursor.
        ("cohort-occupancy (first page)", f"{views}/cohort-occupancy", full),
        ("cohort-occupancy (a middle page)",
         f"{views}/cohort-occupancy?cursor={encode_cursor('screening:' + subject)}", full),
        ("patient-timeline (a middle page)",
         f"{views}/patient-timeline?cursor={encode_cursor(subject)}", full),
    ]
    results = []
    for label, path, count in plan:
        say(f"d. {count} sequential GETs of {path} ...")
        timed = Timed(label, path)
        timed.status, body = worker.get(path)  # warm-up, not counted
        timed.bytes = len(body)
        if timed.status == 200:
            for _ in range(count):
                t = time.perf_counter()
                status, body = worker.get(path)
                timed.ms.append((time.perf_counter() - t) * 1e3)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
        results.append(timed)
    return results


# ---------------------------------------------------------------- one size


@dataclass
class SizeRun:
    size: int
    namespace: str = ""
    produced: Produced | None = None
    raw: RawRead | None = None
    costs: dict[str, float] | None = None
    applied: Applied | None = None
    queries: list[Timed] = field(default_factory=list)
    peak_rss_mb: float = 0.0


def run_size(
    bootstrap: str,
    size: int,
    args: argparse.Namespace,
    options: WorkloadOptions,
    runs: list[SizeRun],
) -> None:
    """Measure one size; its partial figures are in ``runs`` even when a step fails."""
    settings = fresh_settings(bootstrap)
    result = SizeRun(size, settings.namespace)
    runs.append(result)
    rates = size == args.events
    try:
        result.produced = produce_and_say(settings, size, options)
        if rates:
            result.raw = raw_aiokafka(settings, result.produced.end_offset)
            result.costs = decode_costs(result.produced.samples)
        with tempfile.TemporaryDirectory(prefix="trialops-bench-") as data_dir:
            worker = Worker(settings, Path(data_dir), args.worker_loglevel)
            try:
                result.applied = apply_with_worker(
                    worker, settings, result.produced.end_offset, args.stall_timeout
                )
                if result.applied.finished and size in args.size_list:
                    result.queries = query_latency(
                        worker, result.produced, args.queries, args.full_queries
                    )
            finally:
                worker.stop()
                result.peak_rss_mb = worker.peak_rss_kb / 1024
    finally:
        if not args.keep_topics:
            drop_namespace(settings)


# ---------------------------------------------------------------- report


def report(runs: list[SizeRun], args: argparse.Namespace, options: WorkloadOptions, broker: str):
    lines = [
        f"broker {broker}; {os.cpu_count()} cores; Python {sys.version.split()[0]}",
        f"workload: {options.describe()}",
    ]
    for run_ in runs:
        produced = run_.produced
        if produced is None:
            continue
        parts = ["a-c" if run_.raw is not None else "", "d" if run_.queries else ""]
        lines += [
            "",
            f"-- {run_.size:,} events ({', '.join(p for p in parts if p) or 'b'}; namespace "
            f"{run_.namespace}, {produced.bytes / 1e6:,.1f} MB)",
            f"  {produced.workload.describe()}",
            "  generation (seal + to_bytes, own process)  "
            + rate(produced.events, produced.generate_seconds),
            "  produce (kafka-python, acks=all, overall)  "
            + rate(produced.events, produced.seconds),
        ]
        if run_.raw is not None:
            raw = run_.raw
            lines.append(
                f"a. raw aiokafka consumption                 {rate(raw.events, raw.seconds)}"
                f" ({raw.bytes / 1e6 / raw.seconds:,.1f} MB/s, {raw.seconds:.2f}s)"
            )
        if run_.applied is not None:
            lines.append("b. Faust worker apply")
            lines += applied_lines(run_.applied, run_.raw)
        else:
            lines.append(
                "b. Faust worker apply: not measured (interrupted, or an earlier step failed)"
            )
        if run_.peak_rss_mb:
            lines.append(f"  peak worker RSS (VmHWM, applying and queries)  "
                         f"{run_.peak_rss_mb:,.0f} MB")
        if run_.costs is not None:
            lines.append("  per-event CPU of every reader (sample of the topic, this process):")
            lines += decode_lines(run_.costs)
    measured = sorted((r for r in runs if r.queries), key=lambda r: r.size)
    if measured:
        lines += ["", "d. query latency, sequential keep-alive GETs (ms: p50 p95 max; body size)"]
        for r in measured:
            lines.append(f"  history {r.size:,} events (namespace {r.namespace}):")
            for timed in r.queries:
                lines.append(f"    {timed.label:<33} n={len(timed.ms):<4} {timed.summary()}")
        if len(measured) >= 2:
            small, large = measured[0], measured[-1]
            lines.append(f"  large/small ({large.size:,} / {small.size:,} events):")
            for a, b in zip(small.queries, large.queries, strict=True):
                if a.ms and b.ms:
                    lines.append(
                        f"    {a.label:<33} p50 x{percentile(b.ms, 50) / percentile(a.ms, 50):.2f}"
                        f"   p95 x{percentile(b.ms, 95) / percentile(a.ms, 95):.2f}"
                        f"   body x{b.bytes / max(a.bytes, 1):.2f}"
                    )
        key = PROJECTIONS["cohort-occupancy"].key_name
        if key != "cohort_id":
            lines.append(
                f"  note: cohort-occupancy's filter is ?{key}= (its state is keyed by "
                f"{key}), so ?cohort_id= is ignored and the whole document comes back"
            )
    with_rss = sorted((r for r in runs if r.peak_rss_mb and r.applied and r.applied.finished),
                      key=lambda r: r.size)
    if len(with_rss) >= 2:
        small, large = with_rss[0], with_rss[-1]
        lines += ["", f"peak worker RSS: {small.peak_rss_mb:,.0f} MB at {small.size:,} events, "
                  f"{large.peak_rss_mb:,.0f} MB at {large.size:,} "
                  f"(x{large.peak_rss_mb / small.peak_rss_mb:.2f})"]
    missing = [r.size for r in runs if r.size in args.size_list and not r.queries]
    if missing:
        lines.append(
            f"  no query latency for {', '.join(f'{s:,}' for s in missing)} events: "
            "the worker did not finish applying them"
        )
    print_block("trialops projections benchmark (issue 4)", lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_projections",
        description="Faust apply rate vs raw aiokafka consumption, and query latency vs history.",
    )
    parser.add_argument(
        "--events", type=int, default=100_000, help="N for parts a-c (default 100000)"
    )
    parser.add_argument(
        "--sizes",
        default="10000,1000000",
        help="histories for the query latency (d), comma-separated (default 10000,1000000)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="query latency with 10000,100000 events instead"
    )
    parser.add_argument("--queries", type=int, default=200, help="GETs per filtered view")
    parser.add_argument("--full-queries", type=int, default=20,
                        help="GETs of each page of a list view")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=300,
        help="give a worker up after this many seconds without progress (default 300)",
    )
    parser.add_argument("--worker-loglevel", default="warn", help="the worker's --loglevel")
    parser.add_argument(
        "--keep-topics", action="store_true", help="do not delete the run's topics at the end"
    )
    WorkloadOptions.add_arguments(parser)
    args = parser.parse_args()
    args.size_list = parse_sizes("10000,100000" if args.quick else args.sizes)
    if args.events < 1:
        parser.error("--events must be >= 1")
    return args


def main() -> None:
    args = parse_args()
    options = WorkloadOptions.from_args(args)
    sizes = [args.events, *sorted(s for s in set(args.size_list) if s != args.events)]
    say(
        f"plan: N={args.events:,} for a-c; query latency with "
        f"{', '.join(f'{s:,}' for s in sorted(set(args.size_list)))} events; {options.describe()}"
    )
    runs: list[SizeRun] = []
    with kafka_broker() as bootstrap:
        try:
            for size in sizes:
                say(f"==== {size:,} events")
                run_size(bootstrap, size, args, options, runs)
        finally:
            if runs:
                report(runs, args, options, bootstrap)


if __name__ == "__main__":
    run(main)
