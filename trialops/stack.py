"""Start and stop the whole system as child processes: broker (if needed), topics, the
enrollment service and the Faust worker. Used by ``trialops up`` and by the end-to-end tests.

``trialops up`` keeps the trial between runs: its broker ('up') keeps its data and the
namespace stays the same, so a second run serves the trial of the first; the demo is seeded
only into a trial that has no events yet. ``--fresh`` deletes the broker's data first.

``trialops up`` records its broker and keys (``infra.settings.record_system``), so that the
commands run beside it find them; SIGINT and SIGTERM stop what it started, the broker last."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from clients.http import DEMO_READER, call, get_bytes, wait_until_up
from infra.keys import init_keys
from infra.settings import RECORDED_ENV, Settings, answers, record_system, state_dir
from infra.topic_admin import (
    PARTITIONS_ENV,
    check_event_topics,
    configured_replication_factor,
    ensure_topics,
)
from trial.config import SHIPPED, TRIALS_FOLDER_ENV, TrialConfig, load_trials


@dataclass
class Stack:
    settings: Settings
    work_dir: Path
    service_port: int = 8081
    web_port: int = 6066
    say: Callable[[str], None] = print
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    checkpoints_every: str | None = None
    """Take a signed checkpoint of the log on this schedule (``trialops checkpoint --every``),
    into ``<work_dir>/checkpoints``; None takes none."""

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    @property
    def projections_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 120) -> None:
        self.work_dir = self.work_dir.resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.keyring is None:
            # A demo without keys of its own: one key per writer, kept with the stack's state.
            keyring, writers = init_keys(self.work_dir / "keys")
            self.settings = replace(self.settings, keyring=str(keyring), writer_keys=str(writers))
            self.say(f"writers' keys: {writers} (keyring {keyring})")
        created = ensure_topics(
            self.settings.bootstrap_servers,
            self.settings.namespace,
            configured_replication_factor(),
        )
        self.say(f"topics: created {len(created)}, namespace '{self.settings.namespace}'")
        for problem in check_event_topics(self.settings.bootstrap_servers, self.settings.namespace):
            self.say(f"warning: {problem}")
        self._spawn_services()
        self.spawn(
            "projections",
            ["worker", "--demo", "--web-port", str(self.web_port), "--data-dir",
             str(self.work_dir)],
        )
        if self.checkpoints_every is not None:
            folder = self.work_dir / "checkpoints"
            self.spawn("checkpoints", ["checkpoint", "--every", self.checkpoints_every,
                                       "--into", str(folder)])
            self.say(f"checkpoints: every {self.checkpoints_every} into {folder}")
        try:
            self._wait_for_services(timeout)
            self.say(f"command services ready at {self.service_url}")
            # With several trials a view names its trial (decision 60): the first one's.
            trials = sorted(load_trials())
            wait_until_up(
                f"{self.projections_url}/projections/cohort-occupancy"
                + (f"?trial_id={trials[0]}" if len(trials) > 1 else ""),
                timeout,
                "the Faust worker",
                self.check_alive,
                token=DEMO_READER,
            )
            self.say(f"projections ready at {self.projections_url}/projections/cohort-occupancy")
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

    def restart_services(self, timeout: float = 120) -> None:
        """Start the command services again (after ``kill``) and wait as ``start`` does, until
        the writers' group has given them their trials or named their holder: a killed
        instance keeps its partitions in the group until its session ends, and a command sent
        before gets 503 "rebalancing"."""
        self._spawn_services()
        self._wait_for_services(timeout)

    def _spawn_services(self) -> None:
        # The demo users, asked for explicitly: a real trial runs `serve` with a users file.
        self.spawn("services", ["serve", "--demo", "--port", str(self.service_port)])

    def _wait_for_services(self, timeout: float) -> None:
        wait_until_up(
            f"{self.service_url}/health", timeout, "the command services", self.check_alive
        )
        self._wait_for_the_writers(timeout)

    def _wait_for_the_writers(self, timeout: float) -> None:
        """Until the writers' group has given this instance its trials (decision 59), or named
        their holder: before, a command gets 503 "rebalancing". A context that does not take
        commands once held (a halted topic, say) does not hold the start up: /ready says why."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                status, body = call("GET", f"{self.service_url}/ready", timeout=5)
            except OSError as exc:  # a moment's refusal or timeout: asked again
                status, body = 0, repr(exc)
            if status == 200 or _writers_settled(body):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the command services took no trial within {timeout:.0f}s: "
                                   f"{body}")
            time.sleep(0.1)

    def check_alive(self) -> None:
        """Raise, with the end of its log, when a component has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.work_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with code {process.returncode}:\n{log}")

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.work_dir / f"{name}.log", "ab")  # noqa: SIM115 (lives as long as the child)
        process = subprocess.Popen(
            [sys.executable, "-m", "trialops", *args],
            env={**os.environ, **self.settings.env()},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.work_dir,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop(self, timeout: float = 10) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.say(f"{name} still running {timeout:g} s after SIGTERM: killed")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()

    def occupancy(self) -> bytes:
        return get_bytes(f"{self.projections_url}/projections/cohort-occupancy", token=DEMO_READER)


CHECKPOINTS_EVERY = "10m"
"""How often ``trialops up`` signs a checkpoint of the log (decision 21: a running system
takes them on a schedule)."""


def _writers_settled(ready: object) -> bool:
    """Whether a services' ``/ready`` body says each trial is held here (its contexts listed)
    or by another instance (``standby_for``), ready or not."""
    if not isinstance(ready, dict):
        return False
    if isinstance(ready.get("trials"), dict):
        return all(_writers_settled(each) for each in ready["trials"].values())
    return "contexts" in ready or "standby_for" in ready


def run_stack(
    *,
    service_port: int,
    web_port: int,
    demo: bool,
    speed: float = 0.05,
    fresh: bool = False,
    broker_name: str = "up",
    trials: bool = False,
) -> None:
    from broker.cluster import LocalKafka

    if trials:
        # Every process of the stack inherits them: the services, the worker, the checkpoints.
        os.environ[TRIALS_FOLDER_ENV] = str(SHIPPED.parent)
        os.environ.setdefault(PARTITIONS_ENV, str(TRIALS_PARTITIONS))
    # SIGTERM (a service manager, `kill`) stops everything like Ctrl-C does, instead of
    # leaving the broker, the services and the worker running without their parent.
    signal.signal(signal.SIGTERM, _interrupt)
    work_dir = state_dir()
    for port, what in ((service_port, "--service-port"), (web_port, "--web-port")):
        if answers(f"127.0.0.1:{port}", timeout=1.0) is None:
            raise RuntimeError(
                f"port {port} ({what}) is taken: is an earlier 'trialops up' (or its services "
                f"or worker) still running? 'ss -ltnp sport = :{port}' names the process"
            )
    broker = None
    if "KAFKA_BOOTSTRAP_SERVERS" in os.environ:
        if fresh:
            raise RuntimeError(
                "--fresh deletes the data of the broker 'trialops up' starts; with "
                "KAFKA_BOOTSTRAP_SERVERS set, choose a new TRIALOPS_NAMESPACE instead"
            )
        settings = Settings.from_env()
        print(f"using the Kafka at {settings.bootstrap_servers}")
    else:
        broker = LocalKafka(name=broker_name)
        if fresh:
            for path, size in broker.wipe():
                print(f"--fresh: deleted {path} ({size / 1e6:.1f} MB)")
            # Checkpoints of the wiped log would only fail against the new one.
            old_checkpoints = work_dir / "checkpoints"
            if old_checkpoints.exists():
                shutil.rmtree(old_checkpoints)
                print(f"--fresh: deleted {old_checkpoints} (checkpoints of the old log)")
        try:
            settings = Settings.from_env(bootstrap_servers=broker.start())
        except BaseException:
            broker.stop()
            raise
        print(
            f"Kafka keeps the trial in {broker.cluster_dir} between runs "
            "('trialops up --fresh' starts a new one)"
        )
    stack = Stack(settings, work_dir, service_port=service_port, web_port=web_port,
                  checkpoints_every=CHECKPOINTS_EVERY)
    try:
        _record(stack, broker)
        stack.start()
        _record(stack, broker)
        print(
            f"\ntrialops is up. Kafka {settings.bootstrap_servers}\n"
            f"  dashboard:   {stack.projections_url}/#token={DEMO_READER}   (open it to watch "
            "the trial)\n"
            "  demo tokens are active: demo-<role> (demo-site_coordinator, ..., demo-auditor, "
            "demo-administrator); not for a real trial\n"
            f"  commands:    {stack.service_url}/enrollment|manufacturing|dosing|safety/... "
            f"(every route and body: {stack.service_url}/docs)\n"
            f"  projections: {stack.projections_url}/projections/<name>\n"
            "  auditors:    .venv/bin/trialops verify | replay dose-escalation | audit trail ... "
            "(they find this Kafka and its keyring by themselves)\n"
            "Ctrl-C (or SIGTERM) stops everything.\n"
        )
        addresses = trial_addresses(stack.service_url, stack.projections_url, load_trials())
        if len(addresses) > 1:
            print("several trials: each one's commands, views and dashboard")
            for address in addresses:
                print(f"  {address.trial_id}: {address.service_url}/... | "
                      f"{stack.projections_url}/projections/<name>{address.view_query} | "
                      f"{address.dashboard_url}")
        if demo:
            _demo(stack, speed, settings)
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(1)
        stack.check_alive()
    finally:
        # A second Ctrl-C must not cut the stopping short and leave a broker behind.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        print("stopping: the services, the worker" + (", the broker" if broker else ""),
              flush=True)
        stack.stop()
        if broker is not None:
            broker.stop()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _record(stack: Stack, broker: object) -> None:
    """Record the Kafka and the keys of this system for the commands run beside it."""
    from broker.cluster import LocalKafka

    pids: list[int] = []
    name = None
    if isinstance(broker, LocalKafka):
        info = broker.status()
        pids = [n["pid"] for n in info["nodes"] if n.get("pid")]
        name = broker.name
    record_system(
        stack.settings.bootstrap_servers,
        started_by="trialops up",
        broker=name,
        pids=pids,
        keyring=stack.settings.keyring,
        writer_keys=stack.settings.writer_keys,
        namespace=stack.settings.namespace,
        service_url=stack.service_url,
        projections_url=stack.projections_url,
        trials=os.environ.get(RECORDED_ENV["trials"]),
        partitions=os.environ.get(RECORDED_ENV["partitions"]),
    )


DEMO_PATIENTS = 9
"""The demo treats 9 patients: the 3+3 path escalates, stays, de-escalates and expands the lower
dose's cohort (DL1-IP) by 3 slots that stay open, so a user can enroll a patient of their own
after it (decision 45)."""


def _demo(stack: Stack, speed: float, settings: Settings) -> None:
    """A simulated trial (``DEMO_PATIENTS``, seed 7) through the public command API, into a
    trial that has no events yet."""
    from clients.journey import JourneyStepRefused
    from clients.simulate import SimulationError, simulate
    from events.topics import CONTEXTS, event_topic
    from infra.topic_admin import record_counts

    # The trial's own topics: the access log (the demo users) and the checkpoints the stack
    # takes are written before the demo starts.
    trial_topics = {event_topic(c, settings.namespace) for c in CONTEXTS}
    records = sum(
        count
        for topic, count in record_counts(settings.bootstrap_servers, settings.namespace).items()
        if topic in trial_topics
    )
    if records:
        print(
            f"demo not run: the trial in namespace '{settings.namespace}' already holds "
            f"{records} records from an earlier run (kept; 'trialops up --fresh' starts over)"
        )
        print(f"\nthe trial is on the dashboard: {stack.projections_url}/#token={DEMO_READER}")
        return

    trials = load_trials()
    if len(trials) > 1:
        _demo_side_by_side(stack, speed, trials)
        return
    print(f"demo: simulating the trial at {speed:g} s per command (trialops simulate)...")
    try:
        report = simulate(DEMO_PATIENTS, 7, stack.service_url, stack.projections_url, speed=speed)
    except (SimulationError, JourneyStepRefused) as exc:
        print(f"demo not run: {exc}")
        return
    print(report.summary())
    print(f"\nthe trial is on the dashboard: {stack.projections_url}/#token={DEMO_READER}")
    print("cohort DL1-IP keeps 3 free slots: enroll a patient of your own (README.md, 'Your "
          "own patient'), e.g. '.venv/bin/trialops walk MSK-0101'")


TRIALS_PARTITIONS = 4
"""``trialops up --trials``: the partitions of the context topics it creates (unless
``TRIALOPS_PARTITIONS`` says otherwise). The shipped trials NCT06623396 and NCT04577326 fall on
partitions 1 and 3 of 4; on 2 partitions they would share one, which is refused (decision 60)."""


@dataclass(frozen=True)
class TrialAddress:
    """Where one trial of the stack is reached: its commands, its views' query, its board."""

    trial_id: str
    service_url: str
    view_query: str
    dashboard_url: str


def trial_addresses(
    service_url: str, projections_url: str, trial_ids: Iterable[str]
) -> list[TrialAddress]:
    """Each trial's commands at ``/trials/<id>``, its views and board with ``?trial_id=<id>``
    (decision 60), in trial-id order; one trial keeps the bare addresses it had before."""
    ids = sorted(trial_ids)
    if len(ids) == 1:
        return [TrialAddress(ids[0], service_url, "", f"{projections_url}/#token={DEMO_READER}")]
    addresses = []
    for trial_id in ids:
        query = "?" + urllib.parse.urlencode({"trial_id": trial_id})
        addresses.append(TrialAddress(
            trial_id, f"{service_url}/trials/{urllib.parse.quote(trial_id, safe='')}", query,
            f"{projections_url}/{query}#token={DEMO_READER}",
        ))
    return addresses


def _demo_side_by_side(stack: Stack, speed: float, trials: dict[str, TrialConfig]) -> None:
    """The demo's simulated trial in every trial of the stack at once, one thread each, each
    through its trial's commands and views (``trial_addresses``)."""
    from clients.journey import JourneyStepRefused
    from clients.simulate import PlanError, Simulation, plan
    from clients.simulate_report import SimulationError, SimulationReport, WorkerView

    addresses = trial_addresses(stack.service_url, stack.projections_url, trials)
    outcomes: dict[str, SimulationReport | Exception] = {}

    def run(address: TrialAddress) -> None:
        trial = trials[address.trial_id]
        simulation = Simulation(
            address.service_url, stack.projections_url, trial=trial, speed=speed,
            say=lambda line: print(f"[{address.trial_id}] {line}", flush=True),
            view=WorkerView(stack.projections_url, trial, trial_id=address.trial_id),
        )
        try:
            steps = plan(DEMO_PATIENTS, 7, trial)
            outcomes[address.trial_id] = simulation.run(steps, patients=DEMO_PATIENTS, seed=7)
        except (SimulationError, JourneyStepRefused, PlanError) as exc:
            outcomes[address.trial_id] = exc
        except Exception as exc:
            # Said with its trial after the others finish, not as a thread's traceback.
            outcomes[address.trial_id] = RuntimeError(f"{type(exc).__name__}: {exc}")

    print(f"demo: simulating {len(addresses)} trials side by side at {speed:g} s per command "
          f"({', '.join(trials)})...")
    threads = [threading.Thread(target=run, args=(a,), name=f"demo-{a.trial_id}", daemon=True)
               for a in addresses]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # a timed join lets Ctrl-C through
            thread.join(0.5)
    for address in addresses:
        outcome = outcomes.get(address.trial_id)
        print(f"\n{address.trial_id}:")
        if isinstance(outcome, SimulationReport):
            print(outcome.summary())
        else:
            print(f"demo not run: {outcome}")
        print(f"  commands:    {address.service_url}/...")
        print(f"  projections: {stack.projections_url}/projections/<name>{address.view_query}")
        print(f"  dashboard:   {address.dashboard_url}")
