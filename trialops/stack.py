"""Start and stop the whole system as child processes: broker (if needed), topics, the
enrollment service and the Faust worker. Used by ``trialops up`` and by the end-to-end tests.

``trialops up`` keeps the trial between runs: its broker ('up') keeps its data and the
namespace stays the same, so a second run serves the trial of the first; the demo is seeded
only into a trial that has no events yet. ``--fresh`` deletes the broker's data first."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from clients.http import DEMO_READER, get_bytes, wait_until_up
from infra.keys import init_keys
from infra.settings import Settings
from infra.topic_admin import check_event_topics, configured_replication_factor, ensure_topics


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
        # The demo users, asked for explicitly: a real trial runs `serve` with a users file.
        self.spawn("services", ["serve", "--demo", "--port", str(self.service_port)])
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
            wait_until_up(
                f"{self.service_url}/health", timeout, "the command services", self.check_alive
            )
            self.say(f"command services ready at {self.service_url}")
            wait_until_up(
                f"{self.projections_url}/projections/cohort-occupancy",
                timeout,
                "the Faust worker",
                self.check_alive,
                token=DEMO_READER,
            )
            self.say(f"projections ready at {self.projections_url}/projections/cohort-occupancy")
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

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

    def stop(self, timeout: float = 20) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()

    def occupancy(self) -> bytes:
        return get_bytes(f"{self.projections_url}/projections/cohort-occupancy", token=DEMO_READER)


CHECKPOINTS_EVERY = "10m"
"""How often ``trialops up`` signs a checkpoint of the log (decision 21: a running system
takes them on a schedule)."""


def run_stack(
    *, service_port: int, web_port: int, demo: bool, speed: float = 0.05, fresh: bool = False
) -> None:
    from broker.cluster import LocalKafka

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
        broker = LocalKafka(name="up")
        if fresh:
            for path, size in broker.wipe():
                print(f"--fresh: deleted {path} ({size / 1e6:.1f} MB)")
            # Checkpoints of the wiped log would only fail against the new one.
            old_checkpoints = Path(".trialops") / "checkpoints"
            if old_checkpoints.exists():
                shutil.rmtree(old_checkpoints)
                print(f"--fresh: deleted {old_checkpoints} (checkpoints of the old log)")
        settings = Settings.from_env(bootstrap_servers=broker.start())
        print(
            f"Kafka keeps the trial in {broker.cluster_dir} between runs "
            "('trialops up --fresh' starts a new one)"
        )
    stack = Stack(settings, Path(".trialops"), service_port=service_port, web_port=web_port,
                  checkpoints_every=CHECKPOINTS_EVERY)
    try:
        stack.start()
        print(
            f"\ntrialops is up. Kafka {settings.bootstrap_servers}\n"
            f"  dashboard:   {stack.projections_url}/#token={DEMO_READER}   (open it to watch "
            "the trial)\n"
            "  demo tokens are active: demo-<role> (demo-site_coordinator, ..., demo-auditor, "
            "demo-administrator); not for a real trial\n"
            f"  commands:    {stack.service_url}/enrollment|manufacturing|dosing|safety/...\n"
            f"  projections: {stack.projections_url}/projections/<name>\n"
            f"  replay:      KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} "
            f"TRIALOPS_KEYRING={stack.settings.keyring} trialops replay dose-escalation\n"
            "Ctrl-C stops everything.\n"
        )
        if demo:
            _demo(stack, speed, settings)
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(1)
        stack.check_alive()
    finally:
        stack.stop()
        if broker is not None:
            broker.stop()


def _demo(stack: Stack, speed: float, settings: Settings) -> None:
    """A whole simulated trial (18 patients, seed 7) through the public command API, into a
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

    print(f"demo: simulating the trial at {speed:g} s per command (trialops simulate)...")
    try:
        report = simulate(18, 7, stack.service_url, stack.projections_url, speed=speed)
    except (SimulationError, JourneyStepRefused) as exc:
        print(f"demo not run: {exc}")
        return
    print(report.summary())
    print(f"\nthe trial is on the dashboard: {stack.projections_url}/#token={DEMO_READER}")
