"""Issue 5: how fast ``trialops replay`` rebuilds every projection, and ``trialops verify``
checks the log, against reading the same topics raw with kafka-python.

For each size (``--sizes``; each in a namespace of its own), after producing N events:

a. raw consumption with kafka-python: ``infra.kafka_io.read_to_end`` over every context's
   topic, counting bytes (what replay and verify read through); and the same read with the
   consumer's CRC check off, to show what the checksum costs;
b. ``audit.replay.replay(settings, name)`` for every projection of the catalogue, one after
   the other, each reading the topics itself: events/s per projection and for all together;
c. ``audit.verify.verify(settings)``.

Run from the repository root:  python -m bench.bench_replay [--quick] [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from audit.replay import ReplayStats, replay
from audit.verify import verify
from bench.common import (
    Produced,
    Ticker,
    WorkloadOptions,
    decode_costs,
    decode_lines,
    drop_namespace,
    fresh_settings,
    kafka_broker,
    parse_sizes,
    print_block,
    produce_and_say,
    projection_catalog,
    rate,
    ratio,
    run,
    say,
)
from events.topics import CONTEXTS, event_topic
from infra.kafka_io import read_to_end
from infra.settings import Settings
from projections.base import to_json

PROJECTIONS = projection_catalog()


@dataclass
class Timing:
    events: int = 0
    bytes: int = 0
    seconds: float = 0.0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class SizeRun:
    size: int
    namespace: str = ""
    produced: Produced | None = None
    raw: Timing | None = None
    raw_no_crc: Timing | None = None
    replays: dict[str, Timing] = field(default_factory=dict)
    verify: Timing | None = None
    costs: dict[str, float] | None = None


def topics_of(settings: Settings) -> list[str]:
    return [event_topic(c, settings.namespace) for c in CONTEXTS]


def raw_read_to_end(settings: Settings, expected: int) -> Timing:
    say(f"a. kafka-python read_to_end over {len(CONTEXTS)} topics ...")
    timing = Timing()
    with Ticker("read_to_end", lambda: timing.events, expected):
        started = time.perf_counter()
        for _position, _key, value in read_to_end(
            settings.bootstrap_servers, topics_of(settings), client_id="trialops-bench-raw"
        ):
            timing.events += 1
            timing.bytes += len(value)
        timing.seconds = time.perf_counter() - started
    say(f"  done in {timing.seconds:.2f}s: {rate(timing.events, timing.seconds)}")
    return timing


def raw_without_crc(settings: Settings, expected: int) -> Timing:
    """read_to_end's consumer and loop with ``check_crcs=False``: the difference to
    ``raw_read_to_end`` is what verifying each record batch's CRC-32C costs."""
    say("a. the same read with check_crcs=False ...")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="trialops-bench-raw",
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        check_crcs=False,
    )
    timing = Timing()
    try:
        partitions = []
        for topic in topics_of(settings):
            partitions += [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        with Ticker("no-crc read", lambda: timing.events, expected):
            started = time.perf_counter()
            for tp in partitions:
                if ends[tp] == 0:
                    continue
                consumer.assign([tp])
                consumer.seek_to_beginning(tp)
                while consumer.position(tp) < ends[tp]:
                    batch = consumer.poll(timeout_ms=1000, max_records=2000)
                    for record in batch.get(tp, []):
                        if record.offset < ends[tp]:
                            timing.events += 1
                            timing.bytes += len(record.value)
            timing.seconds = time.perf_counter() - started
    finally:
        consumer.close()
    say(f"  done in {timing.seconds:.2f}s: {rate(timing.events, timing.seconds)}")
    return timing


def replay_one(settings: Settings, name: str, expected: int) -> Timing:
    say(f"b. replay {name} ...")
    stats = ReplayStats()
    with Ticker(f"replay {name}", lambda: stats.events, expected):
        started = time.perf_counter()
        document = replay(settings, name, stats=stats)
        seconds = time.perf_counter() - started
    t = time.perf_counter()
    size = len(to_json(document))
    serialise = time.perf_counter() - t
    if stats.halts:
        raise RuntimeError(
            f"replay {name}: halted at unreadable records: "
            + "; ".join(halt.describe() for halt in stats.halts)
        )
    timing = Timing(
        stats.events,
        seconds=seconds,
        note=f"{stats.applied:,} applied; document {size / 1e6:,.1f} MB "
        f"(to_json {serialise:.2f}s, not included)",
    )
    say(f"  done in {seconds:.2f}s: {rate(timing.events, seconds)}; {timing.note}")
    return timing


def verify_all(settings: Settings, expected: int) -> Timing:
    say("c. trialops verify ...")
    last = [0.0]

    def progress(events: int, seconds: float) -> None:
        if seconds - last[0] >= 5:
            last[0] = seconds
            say(f"  verify: {events:,} ({100 * events // max(expected, 1)}%) read, "
                f"{events / seconds:,.0f} events/s")  # fmt: skip

    report = verify(settings, progress=progress)
    note = f"{report.streams:,} streams; " + (
        "no problems found" if report.ok else f"PROBLEMS: {report.by_kind()}"
    )
    timing = Timing(report.events, seconds=report.seconds, note=note)
    say(f"  done in {report.seconds:.2f}s: {rate(report.events, report.seconds)}; {note}")
    return timing


def run_size(
    bootstrap: str, size: int, options: WorkloadOptions, keep_topics: bool, runs: list[SizeRun]
) -> None:
    """Measure one size; its partial figures are in ``runs`` even when a step fails."""
    settings = fresh_settings(bootstrap)
    result = SizeRun(size, settings.namespace)
    runs.append(result)
    try:
        result.produced = produce_and_say(settings, size, options)
        result.costs = decode_costs(result.produced.samples)
        result.raw = raw_read_to_end(settings, size)
        result.raw_no_crc = raw_without_crc(settings, size)
        for name in PROJECTIONS:
            result.replays[name] = replay_one(settings, name, size)
        result.verify = verify_all(settings, size)
    finally:
        if not keep_topics:
            drop_namespace(settings)


def crc_implementation() -> str:
    try:
        from kafka.record import util

        if getattr(util, "crc32c_c", None) is not None:
            return "C (the crc32c package)"
        return "pure Python (the crc32c package is not installed)"
    except ImportError:
        return "unknown"


def report(runs: list[SizeRun], options: WorkloadOptions, broker: str) -> None:
    lines = [
        f"broker {broker}; {os.cpu_count()} cores; Python {sys.version.split()[0]}",
        f"workload: {options.describe()}",
        f"kafka-python's CRC-32C check of fetched batches: {crc_implementation()}",
    ]
    for r in runs:
        if r.produced is None:
            continue
        p = r.produced
        lines += [
            "",
            f"-- {r.size:,} events (namespace {r.namespace}, {p.bytes / 1e6:,.1f} MB, "
            f"{p.workload.describe()})",
            f"  generation (seal + to_bytes, own process)  {rate(p.events, p.generate_seconds)}",
            f"  produce (kafka-python, acks=all, overall)  {rate(p.events, p.seconds)}",
        ]
        raw = r.raw
        if raw is not None:
            lines.append(
                f"a. raw read_to_end (kafka-python)           {rate(raw.events, raw.seconds):>18}"
                f"  ({raw.seconds:.2f}s, {raw.bytes / 1e6 / raw.seconds:,.1f} MB/s)"
            )
        if r.raw_no_crc is not None:
            t = r.raw_no_crc
            lines.append(
                f"   same read, check_crcs=False              {rate(t.events, t.seconds):>18}"
                f"  ({t.seconds:.2f}s)"
            )
        if r.replays:
            lines.append("b. replay                                     events/s"
                         "            seconds   replay/raw")  # fmt: skip
            for name, t in r.replays.items():
                if not t.events:
                    contexts = ", ".join(PROJECTIONS[name].contexts)
                    lines.append(
                        f"   {name:<40} {'no events':>18} {t.seconds:9.2f}s"
                        f"   (reads {contexts}: empty in this workload)"
                    )
                    continue
                lines.append(
                    f"   {name:<40} {rate(t.events, t.seconds):>18} {t.seconds:9.2f}s"
                    f"   {ratio(t.rate, raw.rate if raw else 0):>9}"
                )
                lines.append(f"     ({t.note})")
            if len(r.replays) == len(PROJECTIONS):
                total = sum(t.seconds for t in r.replays.values())
                together = r.size / total
                lines.append(
                    f"   all {len(r.replays)} projections, one after the other "
                    f"{rate(r.size, total):>18} {total:9.2f}s"
                    f"   {ratio(together, raw.rate if raw else 0):>9}"
                )
                lines.append("     (N / the sum of the replays' times: every replay reads "
                             "the topics again)")  # fmt: skip
        if r.verify is not None:
            t = r.verify
            lines.append(
                f"c. trialops verify                           {rate(t.events, t.seconds):>18}"
                f" {t.seconds:9.2f}s   {ratio(t.rate, raw.rate if raw else 0):>9}"
            )
            lines.append(f"     ({t.note})")
        if r.costs is not None:
            lines.append("  per-event CPU of every reader (sample of the topic, this process):")
            lines += decode_lines(r.costs)
    done = [r for r in runs if r.verify is not None]
    if len(done) >= 2:
        small, large = done[0], done[-1]
        lines += ["", f"rate at {large.size:,} / rate at {small.size:,} events "
                      "(1.00 = throughput independent of history)"]  # fmt: skip
        pairs = [("raw read_to_end", small.raw, large.raw)]
        pairs += [
            (f"replay {n}", small.replays[n], large.replays[n])
            for n in small.replays
            if small.replays[n].events
        ]
        pairs.append(("verify", small.verify, large.verify))
        for label, a, b in pairs:
            if a is not None and b is not None and a.rate:
                lines.append(f"  {label:<40} {b.rate / a.rate:6.2f}")
    print_block("trialops replay / verify benchmark (issue 5)", lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_replay",
        description="Replay of every projection and verify, against raw kafka-python reading.",
    )
    parser.add_argument(
        "--sizes",
        default="100000,1000000",
        help="event counts, comma-separated (default 100000,1000000)",
    )
    parser.add_argument("--quick", action="store_true", help="sizes 10000,100000 instead")
    parser.add_argument(
        "--keep-topics", action="store_true", help="do not delete the run's topics at the end"
    )
    WorkloadOptions.add_arguments(parser)
    args = parser.parse_args()
    args.size_list = sorted(set(parse_sizes("10000,100000" if args.quick else args.sizes)))
    return args


def main() -> None:
    args = parse_args()
    options = WorkloadOptions.from_args(args)
    say(f"plan: sizes {', '.join(f'{s:,}' for s in args.size_list)}; {options.describe()}")
    runs: list[SizeRun] = []
    with kafka_broker() as bootstrap:
        try:
            for size in args.size_list:
                say(f"==== {size:,} events")
                run_size(bootstrap, size, options, args.keep_topics, runs)
        finally:
            if runs:
                report(runs, options, bootstrap)


if __name__ == "__main__":
    run(main)
