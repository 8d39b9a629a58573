"""Service restart against the length of its history (issue 12): how long the enrollment
service takes to become ready, and its peak memory, on N events of history.

For each size the script writes the benchmark workload (bench/common.py) onto a fresh
namespace's enrollment topic, then starts the enrollment service's command handler in a child
process of its own (``services.app.handler_for``, as ``trialops serve`` builds it) and times
``start()``: fencing, reading the topic to its end, folding it into the decider's state and
catching up the followed topics. The child reports the wall time, the part spent folding
(the decider's ``evolve``, called as the topic is read) and its peak RSS. Each size is
restarted ``--restarts`` times; the best time and the largest RSS are kept.

Writers keep snapshots (decision 42): the first restart of a size finds none, folds the whole
topic and then writes one (its time is reported apart, it is off the command path); the
restarts after it start from that snapshot and fold only what follows it. The report gives
both: *from offset 0* (the first restart) and *from a snapshot* (the best of the others).
``--no-snapshot`` makes every restart read the topic from its start and write none. A snapshot
is ignored when the code that reads it differs from the code that wrote it (its code version,
services/snapshots.py); the working tree may change while a run lasts, so the run pins the
code version its children write and read with (``SNAPSHOT_CODE_ENV``) to the one it started
with. A restart that ignored a snapshot says why.

The figure that matters is the restart time from a snapshot at the largest size against the
smallest: issue 12 asks for at most 2x between 10k and 1M events.

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

SNAPSHOT_CODE_ENV = "BENCH_SNAPSHOT_CODE_VERSION"


@dataclass
class Restart:
    events: int
    seconds: float
    fold_seconds: float
    peak_rss_mb: float
    resumed_at: int = 0
    """The offset the snapshot it started from covers (0: it read the topic from its start)."""
    snapshot_seconds: float = 0.0
    """How long writing a snapshot took after it was ready (0: none written)."""
    ignored: str = ""
    """Why a snapshot on the topic was not used (empty: none was ignored)."""


@dataclass
class SizeRun:
    size: int
    namespace: str
    restarts: list[Restart] = field(default_factory=list)

    @property
    def best(self) -> Restart | None:
        return min(self.restarts, key=lambda r: r.seconds) if self.restarts else None

    @property
    def cold(self) -> Restart | None:
        """The best restart that read the topic from its start."""
        cold = [r for r in self.restarts if not r.resumed_at]
        return min(cold, key=lambda r: r.seconds) if cold else None

    @property
    def resumed(self) -> Restart | None:
        """The best restart that started from a snapshot."""
        warm = [r for r in self.restarts if r.resumed_at]
        return min(warm, key=lambda r: r.seconds) if warm else None

    @property
    def peak_rss_mb(self) -> float:
        return max((r.peak_rss_mb for r in self.restarts), default=0.0)


def child(namespace: str, bootstrap: str, snapshots: bool = True) -> None:
    """One restart of the enrollment service, in this process: prints one JSON line. With
    ``snapshots`` it starts from the latest snapshot if there is one and, once ready, writes
    one (timed apart)."""
    import logging

    import services.snapshots as snapshot_module
    from services.app import handler_for
    from services.catalog import services
    from trial.config import load_trial

    pinned = os.environ.get(SNAPSHOT_CODE_ENV)
    if pinned:
        snapshot_module.code_version = lambda: pinned
    ignored: list[str] = []

    class Ignored(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "snapshot" in record.getMessage():
                ignored.append(record.getMessage())

    logging.getLogger("services.eventstore").addHandler(Ignored(logging.WARNING))

    settings = Settings(bootstrap_servers=bootstrap, namespace=namespace)
    handler = handler_for(services()["enrollment"], settings, load_trial())
    folded = {"seconds": 0.0}
    resumed = {"at": 0}
    evolve, adopt = handler._evolve, handler._adopt

    def timed_evolve(state, payload):  # the fold alone, as the open reads (decision 86)
        t = time.perf_counter()
        try:
            return evolve(state, payload)
        finally:
            folded["seconds"] += time.perf_counter() - t

    def noted_adopt(rebuilt):
        resumed["at"] = rebuilt.snapshot.covers if rebuilt.snapshot is not None else 0
        adopt(rebuilt)

    handler._evolve = timed_evolve  # type: ignore[method-assign]
    handler._adopt = noted_adopt  # type: ignore[method-assign]
    handler._keep_snapshots = lambda: None  # type: ignore[method-assign]  # written below
    if not snapshots:
        handler.store._resume_point = lambda: None  # type: ignore[method-assign]

    async def restart() -> tuple[int, float, float]:
        started = time.perf_counter()
        count = await handler.start()
        seconds = time.perf_counter() - started
        if handler.readiness()["problem"] is not None or not snapshots:
            return count, seconds, 0.0
        started = time.perf_counter()
        written = await handler.write_snapshot()
        return count, seconds, time.perf_counter() - started if written is not None else 0.0

    count, seconds, snapshot_seconds = asyncio.run(restart())
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
        "resumed_at": resumed["at"],
        "snapshot_seconds": snapshot_seconds,
        "ignored": "; ".join(ignored)[:300],
    }))


def restart_once(settings: Settings, snapshots: bool) -> Restart:
    from services.snapshots import code_version

    env = {**os.environ, **settings.env(), SNAPSHOT_CODE_ENV: code_version()}
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_restart", "--child", settings.namespace,
         settings.bootstrap_servers, *([] if snapshots else ["--no-snapshot"])],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the restart failed: {done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return Restart(**figures)


def run_size(bootstrap: str, size: int, options: WorkloadOptions, restarts: int,
             keep_topics: bool, runs: list[SizeRun], snapshots: bool = True) -> None:
    settings = fresh_settings(bootstrap)
    result = SizeRun(size, settings.namespace)
    runs.append(result)
    try:
        produce_and_say(settings, size, options)
        for attempt in range(1, restarts + 1):
            say(f"  restart {attempt}/{restarts} of the enrollment service on {size:,} events ...")
            r = restart_once(settings, snapshots)
            result.restarts.append(r)
            say(f"  ready in {r.seconds:.2f}s (fold {r.fold_seconds:.2f}s), "
                f"peak RSS {r.peak_rss_mb:,.0f} MB, "
                + (f"from the snapshot at offset {r.resumed_at:,}" if r.resumed_at
                   else "from offset 0")
                + (f"; then a snapshot written in {r.snapshot_seconds:.2f}s"
                   if r.snapshot_seconds else "")
                + (f"; a snapshot was ignored: {r.ignored}" if r.ignored else ""))
    finally:
        if not keep_topics:
            drop_namespace(settings)


def report(runs: list[SizeRun], options: WorkloadOptions, broker: str) -> None:
    lines = [f"broker: {broker}; workload: {options.describe()}", ""]
    lines.append(f"{'events':>10} {'start':>12} {'ready s':>8} {'µs/event':>9} {'fold s':>7} "
                 f"{'peak RSS MB':>12} {'snapshot written s':>19}")
    for run_ in runs:
        for label, r in (("offset 0", run_.cold), ("a snapshot", run_.resumed)):
            if r is None:
                continue
            lines.append(
                f"{run_.size:>10,} {label:>12} {r.seconds:>8.2f} "
                f"{r.seconds / run_.size * 1e6:>9.1f} {r.fold_seconds:>7.2f} "
                f"{r.peak_rss_mb:>12,.0f} "
                + (f"{r.snapshot_seconds:>19.2f}" if r.snapshot_seconds else f"{'-':>19}")
            )
    if len(runs) >= 2:
        small, large = runs[0], runs[-1]
        lines += ["", f"{large.size:,} against {small.size:,} events "
                      f"({large.size / small.size:.0f}x the history):"]
        for label, pick in (("from offset 0", lambda r: r.cold),
                            ("from a snapshot", lambda r: r.resumed)):
            a, b = pick(small), pick(large)
            if a is None or b is None:
                continue
            lines += [
                f"  restart time {label}: {ratio(b.seconds, a.seconds)}"
                + (" (issue 12: at most 2x)" if label == "from a snapshot" else ""),
                f"  peak RSS {label}: {ratio(b.peak_rss_mb, a.peak_rss_mb)}",
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
    parser.add_argument("--restarts", type=int, default=3,
                        help="restarts per size: the first from offset 0, the others from its "
                             "snapshot; the best time of each kind is kept (default 3)")
    parser.add_argument("--keep-topics", action="store_true",
                        help="do not delete the run's topics at the end")
    parser.add_argument("--fold-only", action="store_true",
                        help="fold the workload's payloads in this process, without Kafka")
    parser.add_argument("--no-snapshot", action="store_true",
                        help="every restart reads the topic from its start; none is written")
    parser.add_argument("--child", nargs=2, metavar=("NAMESPACE", "BOOTSTRAP"),
                        help=argparse.SUPPRESS)
    WorkloadOptions.add_arguments(parser)
    args = parser.parse_args()
    args.size_list = sorted(set(parse_sizes("10000,100000" if args.quick else args.sizes)))
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child(args.child[0], args.child[1], snapshots=not args.no_snapshot)
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
                run_size(bootstrap, size, options, args.restarts, args.keep_topics, runs,
                         snapshots=not args.no_snapshot)
        finally:
            if runs:
                report(runs, options, bootstrap)


if __name__ == "__main__":
    run(main)
