"""Service restart against the length of its history (issue 12): how long the enrollment
service takes to become ready, and its peak memory, on N events of history.

For each size the script writes the benchmark workload (bench/common.py) onto a fresh
namespace's enrollment topic, then starts the enrollment service's command handler in a child
process of its own (``services.app.handler_for``, as ``trialops serve`` builds it) and times
``start()``: fencing, reading the topic to its end, folding it into the decider's state and
catching up the followed topics. The child reports the wall time, the part spent folding
(``_rebuild``) and its peak RSS. Each size is restarted ``--restarts`` times; the best time and
the largest RSS are kept.

The figure that matters is the restart time per event: it must not grow with the history.

``--fold-only`` leaves Kafka out: it folds the same workload's payloads (not sealed, not
written) through the enrollment decider's ``evolve`` in this process and prints the cost per
event in each tenth of the history, which shows whether an event's cost grows with the state
before it. It reaches 1M events in about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import cast

from bench.common import (
    Workload,
    WorkloadOptions,
    drop_namespace,
    fresh_settings,
    kafka_broker,
    parse_sizes,
    print_block,
    produce_and_say,
    ratio,
    run,
    say,
)
from events.registry import EventPayload
from infra.settings import Settings


@dataclass
class Restart:
    events: int
    seconds: float
    fold_seconds: float
    peak_rss_mb: float


@dataclass
class SizeRun:
    size: int
    namespace: str
    restarts: list[Restart] = field(default_factory=list)

    @property
    def best(self) -> Restart | None:
        return min(self.restarts, key=lambda r: r.seconds) if self.restarts else None

    @property
    def peak_rss_mb(self) -> float:
        return max((r.peak_rss_mb for r in self.restarts), default=0.0)


def child(namespace: str, bootstrap: str) -> None:
    """One restart of the enrollment service, in this process: prints one JSON line."""
    from services.app import handler_for
    from services.catalog import services
    from trial.config import load_trial

    settings = Settings(bootstrap_servers=bootstrap, namespace=namespace)
    handler = handler_for(services()["enrollment"], settings, load_trial())
    folded = {"seconds": 0.0}
    rebuild = handler._rebuild

    def timed_rebuild(history):  # the fold alone, without reading and decoding the topic
        t = time.perf_counter()
        rebuild(history)
        folded["seconds"] += time.perf_counter() - t

    handler._rebuild = timed_rebuild  # type: ignore[method-assign]
    started = time.perf_counter()
    count = asyncio.run(handler.start())
    seconds = time.perf_counter() - started
    problem = handler.readiness()["problem"]
    handler.close()
    if problem is not None:
        raise SystemExit(f"the enrollment service is not ready: {problem}")
    print(json.dumps({
        "events": count,
        "seconds": seconds,
        "fold_seconds": folded["seconds"],
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def restart_once(settings: Settings) -> Restart:
    env = {**os.environ, **settings.env()}
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_restart", "--child", settings.namespace,
         settings.bootstrap_servers],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the restart failed: {done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return Restart(**figures)


def run_size(bootstrap: str, size: int, options: WorkloadOptions, restarts: int,
             keep_topics: bool, runs: list[SizeRun]) -> None:
    settings = fresh_settings(bootstrap)
    result = SizeRun(size, settings.namespace)
    runs.append(result)
    try:
        produce_and_say(settings, size, options)
        for attempt in range(1, restarts + 1):
            say(f"  restart {attempt}/{restarts} of the enrollment service on {size:,} events ...")
            r = restart_once(settings)
            result.restarts.append(r)
            say(f"  ready in {r.seconds:.2f}s (fold {r.fold_seconds:.2f}s), "
                f"peak RSS {r.peak_rss_mb:,.0f} MB")
    finally:
        if not keep_topics:
            drop_namespace(settings)


def report(runs: list[SizeRun], options: WorkloadOptions, broker: str) -> None:
    lines = [f"broker: {broker}; workload: {options.describe()}", ""]
    lines.append(f"{'events':>10} {'ready s':>9} {'µs/event':>9} {'fold s':>8} "
                 f"{'fold µs/ev':>10} {'peak RSS MB':>12}")
    measured = [(r, r.best) for r in runs if r.best is not None]
    for run_, best in measured:
        assert best is not None
        lines.append(
            f"{best.events:>10,} {best.seconds:>9.2f} {best.seconds / best.events * 1e6:>9.1f} "
            f"{best.fold_seconds:>8.2f} {best.fold_seconds / best.events * 1e6:>10.1f} "
            f"{run_.peak_rss_mb:>12,.0f}"
        )
    if len(measured) >= 2:
        (small_run, small), (large_run, large) = measured[0], measured[-1]
        assert small is not None and large is not None
        growth = large.events / small.events
        lines += [
            "",
            f"{large.events:,} against {small.events:,} events ({growth:.0f}x the history):",
            f"  restart time: {ratio(large.seconds, small.seconds)}",
            f"  restart time per event: "
            f"{ratio(large.seconds / large.events, small.seconds / small.events)} "
            "(1.00: the cost of an event does not depend on the history)",
            f"  fold time per event: "
            f"{ratio(large.fold_seconds / large.events, small.fold_seconds / small.events)}",
            f"  peak RSS: {ratio(large_run.peak_rss_mb, small_run.peak_rss_mb)}",
        ]
    print_block("service restart benchmark (issue 12)", lines)


@dataclass(frozen=True)
class _Fact:
    payload: EventPayload
    hash: str


class _Unsealed(Workload):
    """The benchmark workload's payloads without envelopes: nothing to seal, sign or send."""

    def _seal(self, stream_id, seq, prev_hash, event, reason=None):
        self.events += 1
        return _Fact(event, f"{stream_id}/{seq}")


def fold_only(sizes: list[int], options: WorkloadOptions) -> None:
    from services.enrollment.state import evolve, initial_state

    lines = [
        f"workload: {options.describe()}; enrollment evolve only, no Kafka, no decoding",
        "",
        f"{'events':>10} {'fold s':>8} {'µs/event':>9}   µs/event in each tenth of the history",
    ]
    per_event: list[tuple[int, float]] = []
    for size in sizes:
        workload = _Unsealed(cohorts=options.cohorts, capacity=options.capacity,
                             waitlist_cap=options.waitlist_cap)
        payloads = [cast(_Fact, fact).payload for fact in workload.envelopes(size)]
        say(f"folding {len(payloads):,} events ({workload.describe()}) ...")
        state = initial_state
        tenth = max(1, len(payloads) // 10)
        tenths: list[float] = []
        started = time.perf_counter()
        for start in range(0, len(payloads), tenth):
            t = time.perf_counter()
            for payload in payloads[start:start + tenth]:
                state = evolve(state, payload)
            tenths.append((time.perf_counter() - t) / len(payloads[start:start + tenth]) * 1e6)
        seconds = time.perf_counter() - started
        say(f"  done in {seconds:.2f}s: {len(state.subjects):,} subjects in the state")
        per_event.append((size, seconds / len(payloads) * 1e6))
        lines.append(f"{len(payloads):>10,} {seconds:>8.2f} {per_event[-1][1]:>9.1f}   "
                     + " ".join(f"{t:.0f}" for t in tenths))
    if len(per_event) >= 2:
        (small, small_us), (large, large_us) = per_event[0], per_event[-1]
        lines += ["", f"fold time per event, {large:,} against {small:,} events: "
                  f"{ratio(large_us, small_us)} (1.00: an event costs the same however long the "
                  "history before it)"]
    print_block("enrollment fold, no Kafka (issue 12)", lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_restart",
        description="Restart time and peak RSS of the enrollment service against its history.",
    )
    parser.add_argument("--sizes", default="10000,1000000",
                        help="event counts, comma-separated (default 10000,1000000)")
    parser.add_argument("--quick", action="store_true", help="sizes 10000,100000 instead")
    parser.add_argument("--restarts", type=int, default=2,
                        help="restarts per size; the best time is kept (default 2)")
    parser.add_argument("--keep-topics", action="store_true",
                        help="do not delete the run's topics at the end")
    parser.add_argument("--fold-only", action="store_true",
                        help="fold the workload's payloads in this process, without Kafka")
    parser.add_argument("--child", nargs=2, metavar=("NAMESPACE", "BOOTSTRAP"),
                        help=argparse.SUPPRESS)
    WorkloadOptions.add_arguments(parser)
    args = parser.parse_args()
    args.size_list = sorted(set(parse_sizes("10000,100000" if args.quick else args.sizes)))
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child(*args.child)
        return
    options = WorkloadOptions.from_args(args)
    if args.fold_only:
        fold_only(args.size_list, options)
        return
    say(f"plan: sizes {', '.join(f'{s:,}' for s in args.size_list)}; {options.describe()}; "
        f"{args.restarts} restart(s) each")
    runs: list[SizeRun] = []
    with kafka_broker() as bootstrap:
        try:
            for size in args.size_list:
                say(f"==== {size:,} events")
                run_size(bootstrap, size, options, args.restarts, args.keep_topics, runs)
        finally:
            if runs:
                report(runs, options, bootstrap)


if __name__ == "__main__":
    run(main)
