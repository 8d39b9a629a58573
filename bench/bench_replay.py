"""Issues 5 and 12: how fast ``trialops replay --all``, one projection's replay and
``trialops verify`` read the log, against reading the same topics raw with kafka-python, and
how much memory each needs.

For each size (``--sizes``; each in a namespace of its own), after producing N events, each
step runs in a process of its own (so its peak RSS is its own), one after the other:

a. raw consumption with kafka-python: ``infra.kafka_io.read_to_end`` over every context's
   topic, counting bytes (what replay and verify read through);
b. ``audit.replay.replay_all``: every projection of the catalogue from one read of the topics
   (``trialops replay --all``);
c. ``audit.replay.replay(settings, NAME)`` for one projection (``--one``, default
   patient-timeline, which folds every context's topic, so it reads what raw reads);
d. ``audit.verify.verify(settings)``.

Each line gives events/s, the ratio to (a) in the same run and the step's peak RSS. With
``--profile`` each step also runs under cProfile and prints its 20 most expensive functions
(own time) on stderr. ``--namespace NS`` measures a namespace that already holds events
(``--keep-topics`` of an earlier run, with the same ``TRIALOPS_KEYRING``) instead of producing.

Run from the repository root:  python -m bench.bench_replay [--quick] [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field

from bench.common import (
    TRIAL_ID,
    Produced,
    Workload,
    WorkloadOptions,
    drop_namespace,
    fresh_settings,
    kafka_broker,
    parse_sizes,
    print_block,
    produce_and_say,
    rate,
    ratio,
    run,
    say,
)
from bench.decode_costs import decode_costs, decode_lines
from events.topics import CONTEXTS, event_topic
from infra.settings import Settings

DEFAULT_ONE = "patient-timeline"


@dataclass
class Timing:
    events: int = 0
    seconds: float = 0.0
    rss_mb: float = 0.0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class SizeRun:
    size: int
    namespace: str = ""
    produced: Produced | None = None
    steps: dict[str, Timing] = field(default_factory=dict)
    costs: dict[str, float] | None = None


# ---------------------------------------------------------------- the steps (child process)


def step_raw(settings: Settings) -> Timing:
    from infra.kafka_io import read_to_end

    timing = Timing()
    size = 0
    started = time.perf_counter()
    topics = [event_topic(c, settings.namespace) for c in CONTEXTS]
    for _position, _key, value in read_to_end(
        settings.bootstrap_servers, topics, client_id="trialops-bench-raw"
    ):
        timing.events += 1
        size += len(value)
    timing.seconds = time.perf_counter() - started
    timing.note = f"{size / 1e6 / max(timing.seconds, 1e-9):,.1f} MB/s"
    return timing


def step_replay_all(settings: Settings) -> Timing:
    from audit.replay import ReplayStats, replay_all

    stats = ReplayStats()
    started = time.perf_counter()
    documents = replay_all(settings, stats=stats)
    seconds = time.perf_counter() - started
    if stats.halts:
        raise RuntimeError("replay --all halted: " + "; ".join(h.describe() for h in stats.halts))
    return Timing(
        stats.events, seconds,
        note=f"{len(documents)} projections, {stats.applied:,} folds from one read",
    )


def step_replay_one(settings: Settings, name: str) -> Timing:
    from audit.replay import ReplayStats, replay

    stats = ReplayStats()
    started = time.perf_counter()
    replay(settings, name, stats=stats)
    seconds = time.perf_counter() - started
    if stats.halts:
        raise RuntimeError(f"replay {name} halted: " + "; ".join(h.describe() for h in stats.halts))
    return Timing(stats.events, seconds, note=f"{stats.applied:,} applied")


def step_verify(settings: Settings) -> Timing:
    from audit.verify import verify

    report = verify(settings)
    note = f"{report.streams:,} streams; " + (
        "no problems found" if report.ok else f"PROBLEMS: {report.by_kind()}"
    )
    return Timing(report.events, report.seconds, note=note)


def child(step: str, bootstrap: str, namespace: str, profile: bool) -> None:
    """Run one step and print its figures as the last line of stdout (JSON)."""
    settings = Settings(bootstrap_servers=bootstrap, namespace=namespace, trial_id=TRIAL_ID)
    if step == "raw":
        work = lambda: step_raw(settings)  # noqa: E731
    elif step == "replay-all":
        work = lambda: step_replay_all(settings)  # noqa: E731
    elif step.startswith("replay:"):
        work = lambda: step_replay_one(settings, step.removeprefix("replay:"))  # noqa: E731
    elif step == "verify":
        work = lambda: step_verify(settings)  # noqa: E731
    else:
        raise SystemExit(f"unknown step {step!r}")
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        timing = profiler.runcall(work)
        print(f"---- cProfile of {step} (own time; slowed by the profiler)", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)
    else:
        timing = work()
    timing.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(timing.__dict__), flush=True)


def measure(step: str, settings: Settings, profile: bool) -> Timing:
    say(f"{step} (own process) ...")
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_replay", "--child", step,
         settings.bootstrap_servers, settings.namespace, *(["--profile"] if profile else [])],
        stdout=subprocess.PIPE, text=True, check=True,
    )
    timing = Timing(**json.loads(done.stdout.strip().splitlines()[-1]))
    say(f"  {timing.events:,} events in {timing.seconds:.2f}s: "
        f"{rate(timing.events, timing.seconds)}; peak RSS {timing.rss_mb:,.0f} MB; {timing.note}")
    return timing


# ---------------------------------------------------------------- the run (parent process)


def run_size(
    bootstrap: str, size: int, args: argparse.Namespace, options: WorkloadOptions,
    runs: list[SizeRun],
) -> None:
    """Measure one size; its partial figures are in ``runs`` even when a step fails."""
    if args.namespace:
        settings = Settings(bootstrap_servers=bootstrap, namespace=args.namespace,
                            trial_id=TRIAL_ID)
    else:
        settings = fresh_settings(bootstrap)
    result = SizeRun(size, settings.namespace)
    runs.append(result)
    try:
        if not args.namespace:
            result.produced = produce_and_say(settings, size, options)
            result.costs = decode_costs(result.produced.samples)
        for step in ("raw", "replay-all", f"replay:{args.one}", "verify"):
            result.steps[step] = measure(step, settings, args.profile)
    finally:
        if not args.keep_topics and not args.namespace:
            drop_namespace(settings)


def signature_microseconds(n: int = 2000) -> float:
    """What one writer-signature check costs here, as every reader makes it once per record
    (``events.signing.check_writer_signature``, decisions 20 and 40), so one core cannot read
    faster than its inverse."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from events.signing import Keyring, Signer, check_writer_signature

    signer = Signer("bench-1", Ed25519PrivateKey.generate())
    keyring = Keyring(keys=(signer.public("enrollment"),))
    envelope = signer.sign(next(iter(Workload().envelopes(1))))
    started = time.perf_counter()
    for _ in range(n):
        check_writer_signature(envelope, keyring, "enrollment")
    return (time.perf_counter() - started) / n * 1e6


def report(runs: list[SizeRun], options: WorkloadOptions, broker: str, one: str) -> None:
    lines = [
        f"broker {broker}; {os.cpu_count()} cores; Python {sys.version.split()[0]}",
        f"workload: {options.describe()}",
        "each step in its own process, one after the other; ratio = step's events/s / raw's",
    ]
    signature = signature_microseconds()
    labels = {
        "raw": "a. raw read_to_end (kafka-python)",
        "replay-all": "b. replay --all (one read, every projection)",
        f"replay:{one}": f"c. replay {one}",
        "verify": "d. verify",
    }
    for r in runs:
        lines += ["", f"-- {r.size:,} events (namespace {r.namespace})"]
        if r.produced is not None:
            p = r.produced
            lines.append(f"  produced {p.bytes / 1e6:,.1f} MB; {p.workload.describe()}")
        raw = r.steps.get("raw")
        lines.append(
            f"  {'step':<46} {'events/s':>16} {'seconds':>9} {'ratio':>7} {'peak RSS':>10}"
        )
        for step, t in r.steps.items():
            lines.append(
                f"  {labels.get(step, step):<46} {rate(t.events, t.seconds):>16} "
                f"{t.seconds:8.2f}s {ratio(t.rate, raw.rate if raw else 0):>7} "
                f"{t.rss_mb:8,.0f} MB"
            )
            lines.append(f"     ({t.note})")
        per_record = signature / options.signed_batch
        lines.append(
            f"  Ed25519 verify {signature:.0f} us, once per {options.signed_batch} record(s) in "
            f"every reader (decision 70): {per_record:.1f} us a record, a ceiling of "
            f"{1e6 / per_record:,.0f} events/s on one core = "
            f"{ratio(1e6 / per_record, raw.rate if raw else 0)} of raw"
        )
        if r.costs is not None:
            lines.append("  per-event CPU of every reader (sample of the topic, this process):")
            lines += decode_lines(r.costs)
    done = [r for r in runs if "verify" in r.steps]
    if len(done) >= 2:
        small, large = done[0], done[-1]
        lines += ["", f"at {large.size:,} / at {small.size:,} events: rate, peak RSS"]
        for step in small.steps:
            a, b = small.steps[step], large.steps.get(step)
            if b is not None and a.rate and a.rss_mb:
                lines.append(f"  {labels.get(step, step):<46} {b.rate / a.rate:6.2f} "
                             f"{b.rss_mb / a.rss_mb:6.2f}")
    print_block("trialops replay --all / replay / verify benchmark (issues 5, 12)", lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_replay",
        description="replay --all, one replay and verify against raw kafka-python reading.",
    )
    parser.add_argument(
        "--sizes", default="100000,1000000",
        help="event counts, comma-separated (default 100000,1000000)",
    )
    parser.add_argument("--quick", action="store_true", help="sizes 10000,100000 instead")
    parser.add_argument("--one", default=DEFAULT_ONE, help=f"the single projection ({DEFAULT_ONE})")
    parser.add_argument("--profile", action="store_true", help="cProfile each step (stderr)")
    parser.add_argument("--namespace", help="measure this namespace's events; produce nothing")
    parser.add_argument(
        "--keep-topics", action="store_true", help="do not delete the run's topics at the end"
    )
    WorkloadOptions.add_arguments(parser)
    args = parser.parse_args()
    args.size_list = sorted(set(parse_sizes("10000,100000" if args.quick else args.sizes)))
    if args.namespace:
        args.size_list = args.size_list[:1]
    return args


def main() -> None:
    if len(sys.argv) >= 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], "--profile" in sys.argv[5:])
        return
    args = parse_args()
    options = WorkloadOptions.from_args(args)
    say(f"plan: sizes {', '.join(f'{s:,}' for s in args.size_list)}; {options.describe()}")
    runs: list[SizeRun] = []
    with kafka_broker() as bootstrap:
        try:
            for size in args.size_list:
                say(f"==== {size:,} events")
                run_size(bootstrap, size, args, options, runs)
        finally:
            if runs:
                report(runs, options, bootstrap, args.one)


if __name__ == "__main__":
    run(main)
