"""Issue 13: commands/s and the projections' apply rate with one and with two instances of each,
on a three-node local cluster started for the run, in the same run.

The cluster: ``LocalKafka(nodes=3)``, as the three-node fault test starts it; every namespace's
event topics at replication factor 3 with ``min.insync.replicas=2``, the workers' changelogs at
3 replicas too.

a. **Commands.** ``trialops serve --demo`` on a fresh namespace; ``--clients`` concurrent clients
   (16) post ``RegisterSubject`` commands as ``bench_commands`` does (a new subject each, so none
   is refused): first all to that one instance; then, once a second ``serve`` of the same
   namespace has joined the writers' group and its ``/ready`` says ``standby_for`` (decision
   59), half of them to each instance (the second passes every command to the first, which
   holds the contexts' partitions); then all to the first again once the second has stopped.
   Each step follows a warm-up at the same load. Commands/s, p50/p99 latency, and two over the
   mean of the two one-instance steps (the machine is shared: the mean of a step before and one
   after takes out a drift).
b. **Projections.** The same workload of N events (``bench_projections``' generator) written to
   a fresh namespace for each run: one Faust worker, then two workers in one group (the second
   with its own web port and data dir, started once the first holds the partitions, so it joins
   a running group as an added worker does), then one again.
   Events/s from spawn and from the first applied event to the last, as ``bench_projections``
   times them through ``GET /projections``, each worker's CPU seconds, and two over the mean
   of the one-worker runs.

With one partition per event topic (decision 2) two instances are one holder and one standby
(decisions 58 and 59): see bench/README.md for what the ratios mean. With ``--trials`` the two
shipped trials run on topics of 4 partitions (decision 60): the commands go to both trials, and
the N events are split between the trials, each trial's share in its own partition, so that
two workers in one group hold one trial each.

Run from the repository root:  python -m bench.bench_instances [--quick] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.bench_commands import Measured, _clients
from bench.bench_projections import Applied, Part, apply_with_worker
from bench.cluster import NODES, REPLICAS, cluster_settings, settle, three_node_cluster
from bench.common import (
    WorkloadOptions,
    free_port,
    percentile,
    print_block,
    produce_and_say,
    ratio,
    run,
    say,
)
from bench.worker_process import Worker
from clients.http import call, wait_until_up
from events.topics import event_topic
from infra.settings import Settings
from infra.topic_admin import configured_partitions
from trial.config import load_trials, trial_partitions

# ---------------------------------------------------------------- a. commands


class Service:
    """``trialops serve --demo --port P`` in a session of its own."""

    def __init__(self, settings: Settings, work_dir: Path, name: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work_dir / f"{name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 (lives as long as the child)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trialops", "serve", "--demo", "--port", str(self.port)],
            env={**os.environ, **settings.env()}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=work_dir, start_new_session=True,
        )
        log.close()

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"serve on {self.port} exited ({self.process.returncode}):\n{tail}")

    def ready(self) -> dict:
        try:
            _status, body = call("GET", f"{self.url}/ready", timeout=10)
        except OSError:
            return {}
        return body if isinstance(body, dict) else {}

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            _killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def split(clients: int, parts: int) -> list[int]:
    """``clients`` spread over ``parts`` URLs as evenly as they go, the first ones taking the
    remainder: 16 over 2 is 8 and 8, 5 over 2 is 3 and 2."""
    return [clients // parts + (1 if n < clients % parts else 0) for n in range(parts)]


async def _together(urls: list[str], clients: int, per_client: int, tag: str) -> list[Measured]:
    """The clients split over ``urls`` post at once; what each URL's clients measured, then the
    whole, timed from the first request to the last answer."""
    shares = [(url, count) for url, count in zip(urls, split(clients, len(urls)), strict=True)
              if count]
    began = time.perf_counter()
    parts = await asyncio.gather(*(
        _clients(url, count, per_client, f"{tag}{n}") for n, (url, count) in enumerate(shares)))
    seconds = time.perf_counter() - began
    whole = Measured(
        f"{clients} clients", sum(p.commands for p in parts), seconds,
        [lat for p in parts for lat in p.latencies], sum(p.refused for p in parts))
    return [*parts, whole]


@dataclass
class CommandRun:
    namespace: str = ""
    one: list[Measured] = field(default_factory=list)
    two: list[Measured] = field(default_factory=list)
    again: list[Measured] = field(default_factory=list)
    """One instance again, once the second has left: the machine is shared, so the base of the
    ratio is the mean of the two one-instance steps around the two-instance step."""
    holder: str = ""
    standby: str = ""
    standby_for: str = ""
    logs: str = ""
    trials: list[str] = field(default_factory=list)
    held: dict[str, list[str]] = field(default_factory=dict)
    """Per instance URL, the trials it wrote during the two-instance step."""
    two_sent_to: list[tuple[str, str]] = field(default_factory=list)
    """With several trials, per part of the two-instance step: the instance and the trial."""


def standing_by(ready: dict) -> str:
    """Whom an instance's ``/ready`` says it stands by for (one trial, or any of several)."""
    if "standby_for" in ready:
        return str(ready["standby_for"])
    for body in (ready.get("trials") or {}).values():
        if isinstance(body, dict) and body.get("standby_for"):
            return str(body["standby_for"])
    return ""


def held(ready: dict) -> list[str]:
    """The trials an instance's ``/ready`` says it writes (those it does not stand by for)."""
    return sorted(t for t, body in (ready.get("trials") or {}).items()
                  if isinstance(body, dict) and not body.get("standby_for"))


def measure_commands(bootstrap: str, args: argparse.Namespace, result: CommandRun) -> None:
    settings = cluster_settings(bootstrap)
    result.namespace = settings.namespace
    work_dir = Path(tempfile.mkdtemp(prefix="trialops-bench-instances-"))
    result.logs = str(work_dir)
    per_client = max(1, args.commands // args.clients)
    services: list[Service] = []
    trials = sorted(load_trials())
    result.trials = trials

    def urls(*instances: Service) -> list[str]:
        """Where the clients post: with one trial each instance's root; with several, every
        trial's commands spread over every instance (``/trials/<id>``), as clients that do not
        know which instance writes a trial send them."""
        if len(trials) == 1:
            return [i.url for i in instances]
        return [f"{i.url}/trials/{t}" for t in trials for i in instances]

    def step(urls: list[str], tag: str, warm_seconds: float = 0.0) -> list[Measured]:
        # A warm-up at the same load first (connections, token caches, the forwarding path;
        # before the first step, the new cluster's JVMs too: its first minute is slower).
        began, rounds = time.monotonic(), 0
        while rounds == 0 or time.monotonic() - began < warm_seconds:
            asyncio.run(_together(urls, args.clients, WARM_UP, f"W{tag}{rounds:03d}"))
            rounds += 1
        measured = asyncio.run(_together(urls, args.clients, per_client, tag))
        say(f"  {measured[-1].rate:,.1f} commands/s")
        return measured

    try:
        first = Service(settings, work_dir, "services-1")
        services.append(first)
        wait_until_up(f"{first.url}/ready", 180, "the first serve", first.check_alive)
        result.holder = first.url
        settle(bootstrap)
        say(f"a. one instance ready at {first.url} (namespace {settings.namespace}); "
            f"{args.clients} clients x {per_client} commands ...")
        result.one = step(urls(first), "A", args.warm_up)

        second = Service(settings, work_dir, "services-2")
        services.append(second)
        result.standby = second.url
        say(f"a. a second instance at {second.url} joins the writers' group ...")
        deadline = time.monotonic() + 180
        # One trial: the second stands by for the first. Several: the group gives it its share
        # of the trials (decision 59), and it stands by for the others.
        while not ((standby_for := standing_by(second.ready()))
                   and (len(trials) == 1 or held(second.ready()))):
            second.check_alive()
            first.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{second.url}/ready never said standby_for: "
                                   f"{second.ready()}; its log: {second.log_path}")
            time.sleep(0.5)
        result.standby_for = standby_for
        result.held = {first.url: held(first.ready()), second.url: held(second.ready())}
        settle(bootstrap)
        say(f"  it stands by for {standby_for}; {args.clients} clients split between the two")
        sent_to = [(i.url, t) for t in trials for i in (first, second)]
        result.two_sent_to = [where for where, count in
                              zip(sent_to, split(args.clients, len(sent_to)), strict=True)
                              if count]
        result.two = step(urls(first, second), "B")

        say("a. the second instance stopped; one instance again ...")
        second.stop()
        deadline = time.monotonic() + 60
        while not first.ready().get("ready"):
            first.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{first.url}/ready: {first.ready()}")
            time.sleep(0.5)
        result.again = step(urls(first), "C")
    finally:
        for service in reversed(services):
            service.stop()


WARM_UP = 10
"""Commands per client before each measured step."""


def command_lines(result: CommandRun) -> list[str]:
    if not result.one:
        return ["a. commands: not measured (interrupted, or an earlier step failed)"]

    def line(label: str, m: Measured) -> str:
        p50, p99 = (percentile(m.latencies, p) * 1000 for p in (50, 99))
        refused = f", {m.refused} not 201" if m.refused else ""
        return (f"  {label:<32} {m.commands:>6,} commands {m.rate:8,.1f} commands/s   "
                f"p50 {p50:7.1f} ms   p99 {p99:7.1f} ms{refused}")

    lines = [f"a. commands (RegisterSubject), namespace {result.namespace}, the services' logs "
             f"in {result.logs}; trials: {', '.join(result.trials)}",
             line("one instance", result.one[-1])]
    if result.two and len(result.trials) > 1:
        *parts, whole = result.two
        lines.append(line("two instances, all clients", whole))
        for part, (instance, trial) in zip(parts, result.two_sent_to, strict=True):
            writer = "writes it" if trial in result.held.get(instance, []) else "forwards"
            lines.append(line(f"  {trial} via :{instance.rsplit(':', 1)[-1]} ({writer})", part))
    elif result.two:
        direct, *forwarded, whole = result.two
        lines.append(line("two instances, all clients", whole))
        lines.append(line("  of which sent to the holder", direct))
        for part in forwarded:
            lines.append(line("  of which sent to the standby", part))
    if result.again:
        lines.append(line("one instance again", result.again[-1]))
    if result.two:
        ones = [m[-1].rate for m in (result.one, result.again) if m]
        base = sum(ones) / len(ones)
        lines.append(f"  two / one: {ratio(result.two[-1].rate, base)} commands/s (against the "
                     f"mean of the one-instance steps, {base:,.1f}); the second instance stood "
                     f"by for {result.standby_for} (the first: {result.holder})")
        if len(result.trials) > 1:
            lines.append("  instances' trials in the two-instance step: " + "; ".join(
                f"{url} writes {', '.join(ts) or 'none'}" for url, ts in result.held.items()))
    return lines


# ---------------------------------------------------------------- b. projections


@dataclass
class ApplyRun:
    workers: int
    namespace: str = ""
    parts: tuple[Part, ...] = ()
    """The partitions written and each one's trial (with ``--trials``; else partition 0)."""
    applied: Applied | None = None
    roles: list[str] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    logs: str = ""
    """Where the workers' data dirs and logs were kept: only when they did not finish."""

    def rates(self) -> tuple[float, float] | None:
        """Events/s from the first worker's spawn, and from the first applied event, to every
        projection having applied the log."""
        a = self.applied
        if a is None or not a.finished or a.first_at is None or a.done_at is None:
            return None
        first_position = min(p.first_position for p in a.projections.values())
        return (a.end / (a.done_at - a.spawned_at),
                (a.end - first_position) / max(a.done_at - a.first_at, 1e-9))


def measure_apply(bootstrap: str, workers: int, args: argparse.Namespace,
                  options: WorkloadOptions, result: ApplyRun) -> None:
    settings = cluster_settings(bootstrap)
    result.namespace = settings.namespace
    result.parts = write_events(settings, args, options)
    folder = Path(tempfile.mkdtemp(prefix="trialops-bench-instances-"))
    group = []
    for n in range(workers):
        data_dir = folder / f"worker-{n + 1}"
        data_dir.mkdir()
        group.append(Worker(settings, data_dir, args.worker_loglevel))
    stopping = threading.Event()
    joining = threading.Thread(target=_join_when_held, args=(group[0], group[1:], stopping),
                               daemon=True)
    try:
        say(f"b. {workers} worker(s) in one group, namespace {settings.namespace}")
        joining.start()
        # With two trials the first worker is asked for each: it answers for the trial it
        # holds and passes the other's request to the member that holds that one.
        result.applied = apply_with_worker(
            group[0], settings, sum(part.end for part in result.parts), args.stall_timeout,
            parts=result.parts)
        for worker in group:  # what each says it was, finished or not
            result.roles.append(_role(worker, result.parts))
            result.cpu_seconds.append(worker.cpu_seconds())
    finally:
        stopping.set()
        if joining.is_alive():
            joining.join()
        for worker in group:
            worker.stop(timeout=5)  # its namespace is thrown away: no need to wait
        if result.applied is not None and result.applied.finished:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            result.logs = str(folder)
            say(f"  the workers' data dirs and logs are kept in {folder}")


def write_events(settings: Settings, args: argparse.Namespace,
                 options: WorkloadOptions) -> tuple[Part, ...]:
    """``--events`` events onto partition 0; with ``--trials``, split between the trials, each
    trial's share onto its own partition (decision 60), as the services write them: the group
    gives partitions, hence trials, to its members, so two workers can fold one trial each."""
    if not args.trials:
        return (Part(0, produce_and_say(settings, args.events, options).end_offset),)
    placed = trial_partitions(load_trials(), configured_partitions())
    shares = split(args.events, len(placed))
    return tuple(
        Part(partition, produce_and_say(settings, n, options, trial_id, partition).end_offset,
             trial_id)
        for (trial_id, partition), n in zip(sorted(placed.items()), shares, strict=True))


def _join_when_held(first: Worker, others: list[Worker], stopping: threading.Event,
                    timeout: float = 180) -> None:
    """Start ``others`` once ``first`` holds the partitions (``/ready`` 200): they join a
    running group, as a worker added to a deployment does, and the first stays the group's
    leader. A worker that is not the leader cannot tell that it holds the partitions (Faust
    reads the topics' partition counts from the group leader's metadata only), so a holder that
    is not the leader answers no view and the apply could not be watched (bench/README.md)."""
    deadline = time.monotonic() + timeout
    while others and time.monotonic() < deadline:
        if stopping.is_set():
            return
        if first.process is not None:
            with contextlib.suppress(OSError):
                status, _body = call("GET", f"http://127.0.0.1:{first.port}/ready", timeout=5)
                if status == 200:
                    break
        time.sleep(0.2)
    for worker in others:
        worker.start()
        say(f"  worker on port {worker.port} joins the group")


def _role(worker: Worker, parts: tuple[Part, ...]) -> str:
    if worker.process is not None and worker.process.poll() is not None:
        return f"exited with code {worker.process.returncode}"
    try:
        _status, body = worker.get("/ready", timeout=10)
        ready = orjson.loads(body)
    except (OSError, ValueError, http.client.HTTPException):
        return "did not answer /ready"
    if standby_for := ready.get("standby_for"):
        return f"stood by for {standby_for}"
    if not ready.get("ready"):
        return f"not ready: {ready.get('problems')}"
    if any(part.trial_id for part in parts):
        return _trials_held(ready, event_topic("enrollment", worker.settings.namespace), parts)
    return "held the partitions"


def _trials_held(ready: dict, topic: str, parts: tuple[Part, ...]) -> str:
    """Which partitions of the enrollment topic ``/ready`` says a worker holds (its ``lag``
    names every held event partition), and the trials written to them: with partitioned
    topics every member of the group is ready, each holding its share."""
    held = sorted(int(source.rsplit(":", 1)[1]) for source in ready.get("lag", {})
                  if source.rsplit(":", 1)[0] == topic)
    trials = [part.trial_id for part in parts if part.partition in held and part.trial_id]
    return (f"held enrollment partitions {', '.join(map(str, held)) or 'none'} "
            f"({', '.join(trials) or 'no trial'})")


def apply_lines(runs: list[ApplyRun], events: int) -> list[str]:
    lines = [f"b. projection apply rate, the same workload of {events:,} events each time"
             + _split_between(runs)]
    seen_one = False
    for r in runs:
        rates = r.rates()
        label = f"{r.workers} worker{'s' if r.workers > 1 else ''} in one group"
        if r.workers == 1:
            label, seen_one = (f"{label} again" if seen_one else label), True
        if rates is None:
            why = r.applied.failure if r.applied and r.applied.failure else "interrupted"
            lines.append(f"  {label:<30} did not finish: {why.splitlines()[0]}")
            lines.append(f"    (the workers' logs are kept in {r.logs})")
        else:
            whole, warm = rates
            lines.append(f"  {label:<30} from spawn {whole:7,.0f} events/s;  "
                         f"from the first event applied {warm:7,.0f} events/s")
        for n, (role, cpu) in enumerate(zip(r.roles, r.cpu_seconds, strict=True), 1):
            lines.append(f"    worker {n}: {role}; {cpu:,.1f} s of CPU from spawn to the end")
    ones = [rates for r in runs if r.workers == 1 and (rates := r.rates())]
    twos = [rates for r in runs if r.workers == 2 and (rates := r.rates())]
    if ones and twos:
        base = [sum(rates[k] for rates in ones) / len(ones) for k in (0, 1)]
        lines.append(f"  two / one (against the mean of the one-worker runs): "
                     f"{ratio(twos[0][0], base[0])} from spawn, "
                     f"{ratio(twos[0][1], base[1])} from the first event applied")
    return lines


def _split_between(runs: list[ApplyRun]) -> str:
    """How the events were split between the trials (with ``--trials``), else nothing."""
    parts = next((r.parts for r in runs if r.parts), ())
    if not any(part.trial_id for part in parts):
        return ""
    return ", " + " and ".join(f"{part.end:,} of {part.trial_id} (partition {part.partition})"
                               for part in parts)


# ---------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    options = WorkloadOptions.from_args(args)
    if args.trials:
        # Read by the topics' creation here and by every child (decision 60).
        os.environ["TRIALOPS_TRIALS"] = str(Path(__file__).resolve().parent.parent / "trial"
                                            / "trials")
        os.environ["TRIALOPS_PARTITIONS"] = "4"
    split_up = " split between the two trials" if args.trials else ""
    applying = (f"; {args.events:,} events{split_up} applied by one worker, two in one group, "
                f"then one again; {options.describe()}" if args.part != "commands" else "")
    say(f"plan: {args.clients} clients x {args.commands // args.clients} commands against one "
        f"serve, two, then one again{applying}")
    commands = CommandRun()
    applies = [ApplyRun(1), ApplyRun(2), ApplyRun(1)] if args.part in ("all", "projections") else []
    with three_node_cluster(args.heap) as bootstrap:
        try:
            if args.part in ("all", "commands"):
                measure_commands(bootstrap, args, commands)
            for apply_run in applies:
                measure_apply(bootstrap, apply_run.workers, args, options, apply_run)
        finally:
            lines = [
                f"{NODES}-node local cluster {bootstrap}; topics at {REPLICAS} replicas, event "
                f"topics min.insync.replicas=2; {os.cpu_count()} CPU(s); "
                f"Python {sys.version.split()[0]}",
                f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
            ]
            if args.part in ("all", "commands"):
                lines += command_lines(commands)
            if applies:
                lines += apply_lines(applies, args.events)
            print_block("one against two instances (issue 13)", lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_instances",
        description="Commands/s and projection apply rate, one against two instances, on a "
                    "three-node local cluster.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="a small run: 800 commands a step and 10000 events")
    parser.add_argument("--clients", type=int, default=16,
                        help="concurrent clients (default 16), split between two instances")
    parser.add_argument("--commands", type=int, default=None,
                        help="commands a step, split among the clients (default 3200)")
    parser.add_argument("--events", type=int, default=None,
                        help="events of the log the workers apply (default 100000)")
    parser.add_argument("--warm-up", type=float, default=20, metavar="SECONDS",
                        help="load before the first measured step (default 20)")
    parser.add_argument("--part", choices=("all", "commands", "projections"), default="all")
    parser.add_argument("--trials", action="store_true",
                        help="the two shipped trials (trial/trials, topics of 4 partitions): "
                             "commands of both, each instance writing one; the events split "
                             "between them, each worker of two folding one")
    parser.add_argument("--heap", default="320m", help="each broker's heap (default 320m)")
    parser.add_argument("--stall-timeout", type=float, default=300,
                        help="give a worker up after this many seconds without progress")
    parser.add_argument("--worker-loglevel", default="warn", help="the workers' --loglevel")
    WorkloadOptions.add_arguments(parser)
    args = parser.parse_args()
    if args.commands is None:
        args.commands = 800 if args.quick else 3200
    if args.events is None:
        args.events = 10_000 if args.quick else 100_000
    if args.clients < 2 or args.commands < args.clients or args.events < 1:
        parser.error("--clients must be >= 2, --commands >= --clients and --events >= 1")
    return args


if __name__ == "__main__":
    run(main)
