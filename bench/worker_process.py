"""The Faust worker as a child process for the benchmarks: ``python -m trialops worker`` in a
session of its own, its peak RSS, its log's first error and a keep-alive HTTP connection to its
web server (bench/bench_projections.py)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import free_port
from clients.http import DEMO_READER
from infra.settings import Settings


class WorkerFailed(RuntimeError):
    pass


class Worker:
    """``python -m trialops worker`` as a child process in its own session, and a keep-alive
    HTTP connection to its web server."""

    def __init__(self, settings: Settings, data_dir: Path, loglevel: str):
        self.settings = settings
        self.data_dir = data_dir
        self.port = free_port()
        self.loglevel = loglevel
        self.log_path = data_dir / "worker.log"
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.peak_rss_kb = 0
        """The largest peak RSS (VmHWM) of any process of the worker's session: the Faust worker
        itself, under ``trialops worker``'s supervisor."""
        self._connection: http.client.HTTPConnection | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self._log = log
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trialops",
                "worker",
                "--demo",  # the bench reads as the demo auditor
                "--web-port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--loglevel",
                self.loglevel,
            ],
            env={**os.environ, **self.settings.env()},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 8) -> str:
        """The worker's first error (usually the cause) and the end of its log."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        # Faust repeats "producer buffer full" by the thousand: keep the rest readable.
        kept = [line for line in text if "producer buffer full" not in line]
        skipped = len(text) - len(kept)
        first_error = next((line for line in kept if "[ERROR]" in line), None)
        out = [f"first error: {first_error[:600]}"] if first_error else []
        if skipped:
            out.append(f"({skipped} 'producer buffer full' warnings left out)")
        return "\n".join([*out, "last lines:", *kept[-lines:]])

    def sample_rss(self) -> None:
        """Note the peak RSS of the worker's processes (Linux /proc; nothing elsewhere)."""
        if self.process is None:
            return
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # The fields after the command name (which may hold spaces) start at ") ".
                fields = stat.read_text().rsplit(") ", 1)[1].split()
                if int(fields[2]) != self.process.pid:  # the process group: its session
                    continue
                for line in stat.with_name("status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
            except (OSError, IndexError, ValueError):
                continue

    def cpu_seconds(self) -> float:
        """CPU time (user and system, every thread) used so far by the processes of the
        worker's session (Linux /proc; 0 elsewhere). On a machine shared with other work it
        moves far less than events/s does from one run to the next."""
        if self.process is None:
            return 0.0
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(") ", 1)[1].split()
                if int(fields[2]) != self.process.pid:  # the process group: its session
                    continue
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
        return ticks / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise WorkerFailed(
                f"the Faust worker exited with code {self.process.returncode}; "
                f"end of its log:\n{self.log_tail()}"
            )

    def get(self, path: str, timeout: float = 120) -> tuple[int, bytes]:
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            self._connection.request(
                "GET", path, headers={"Authorization": f"Bearer {DEMO_READER}"}
            )
            response = self._connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self._connection.close()
            self._connection = None
            raise

    def stop(self, timeout: float = 20) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.sample_rss()
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            _killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        self._log.close()


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
