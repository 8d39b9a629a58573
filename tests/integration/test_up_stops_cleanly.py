"""SIGTERM to ``trialops up`` stops everything it started, the broker last: no process and no
port is left behind (issue 14: a SIGTERM used to leave the broker, the services and the worker
running and holding their ports, and the next ``up`` refused to start).

``up`` runs as ``./scripts/up`` runs it, with a local broker of its own (under a name of this
test's) and its state in a folder of this test's; every process it starts inherits that
folder's name in its environment, which is how the test finds them all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from broker.cluster import BrokerError, LocalKafka, find_java

pytestmark = pytest.mark.kafka


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def processes_started_with(marker: bytes) -> list[int]:
    """Pids of the processes whose environment holds ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environment = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker in environment.split(b"\0"):
            found.append(int(proc.name))
    return found


def test_sigterm_to_up_stops_every_process_and_frees_every_port(tmp_path):
    try:
        find_java()
    except BrokerError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"up needs Java for its broker: {exc}")
        pytest.skip(f"up needs Java for its broker: {exc}")
    state = tmp_path / "state"
    name = f"pytest-up-{uuid.uuid4().hex[:8]}"
    service_port, web_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["TRIALOPS_STATE_DIR"] = str(state)
    marker = f"TRIALOPS_STATE_DIR={state}".encode()
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "trialops", "up", "--no-demo", "--broker-name", name,
             "--service-port", str(service_port), "--web-port", str(web_port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
        while b"trialops is up" not in log_path.read_bytes():
            assert up.poll() is None, f"up exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"up never came up:\n{log_path.read_text()}"
            time.sleep(0.5)
        record = json.loads((state / "system.json").read_text())
        broker_ports = [int(s.rsplit(":", 1)[1]) for s in record["bootstrap_servers"].split(",")]
        started = processes_started_with(marker)
        # Given up, its broker, the services, the worker (supervisor and Faust) and the
        # checkpoints, all running and listening
        assert set(record["pids"]) <= set(started)
        assert len(started) >= 6, started
        assert all(listening(p) for p in [service_port, web_port, *broker_ports])

        # When up gets SIGTERM
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=120)

        # Then everything stopped by itself on SIGTERM (nothing had to be killed), the broker
        # last, and no process or port is left
        said = log_path.read_text()
        assert code == 0, said[-3000:]
        assert "killed" not in said
        assert "killed" not in (state / "projections.log").read_text()
        assert processes_started_with(marker) == []
        assert not any(listening(p) for p in [service_port, web_port, *broker_ports])
        assert said.index("stopping: the services, the worker, the broker") < said.index(
            f"broker '{name}' stopped"
        )
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        for pid in processes_started_with(marker):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        broker = LocalKafka(name=name)
        broker.stop()
        broker.wipe()
