"""Keep a child process running: restart it when it dies, pass on SIGTERM and SIGINT.

Faust's worker exits when the broker goes away while it is starting (its consumer's bootstrap
fails); a projection worker must not stay down because the broker restarted at the wrong
moment. ``trialops worker`` therefore runs the Faust worker as a child of this loop.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

CONFIG_ERROR = 2
"""The child's exit code for a bad configuration: restarting would not help."""
STOP_GRACE = 8.0
"""Seconds a child has to stop after SIGTERM or SIGINT before it is killed: the worker's
projections are kept in changelogs and recovered from them, so a worker held up in Faust's
shutdown (commits, rebalances, a broker gone) is not worth waiting for."""


class _Stopped(BaseException):
    """Raised by the signal handler between two children, to cut a restart's preparation
    short (a Kafka call against a broker that is gone can block for its whole timeout)."""


def supervise(
    command: list[str],
    *,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    backoff: tuple[float, float] = (1.0, 30.0),
    on_crash: Callable[[], None] = lambda: None,
    grace: float = STOP_GRACE,
) -> int:
    """Run ``command`` until it exits 0 or with ``CONFIG_ERROR``, or until we are asked to
    stop; return its last exit code. A child that dies otherwise is started again, after a
    delay that doubles while it keeps dying within a minute (``backoff``: first, largest), and
    only after ``on_crash`` has succeeded (it is retried until it does). Asked to stop, it
    passes the signal on and kills a child still running ``grace`` seconds later; between two
    children it stops at once, whatever the restart's preparation is doing."""
    stopping: list[float] = []
    child: subprocess.Popen | None = None
    restarting: list[bool] = []

    def forward(signum, _frame) -> None:
        stopping.append(time.monotonic())
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        elif restarting:
            raise _Stopped

    def wait_for(process: subprocess.Popen) -> int:
        while True:
            try:
                return process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if stopping and time.monotonic() - stopping[0] > grace:
                    say(f"worker still running {grace:g} s after it was asked to stop: killed")
                    process.kill()

    def pause(seconds: float) -> None:
        """Sleep, but wake at once when asked to stop (a sleep resumes after a signal)."""
        until = time.monotonic() + seconds
        while not stopping and time.monotonic() < until:
            time.sleep(min(0.2, max(until - time.monotonic(), 0)))

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    delay = backoff[0]
    code = 0
    try:
        while True:
            started = time.monotonic()
            restarting.clear()
            child = subprocess.Popen(command)
            if stopping:  # asked to stop while it was being started
                child.send_signal(signal.SIGTERM)
            code = wait_for(child)
            if stopping or code in (0, CONFIG_ERROR):
                return code
            restarting.append(True)
            delay = backoff[0] if time.monotonic() - started > 60 else min(delay * 2, backoff[1])
            say(f"worker exited with code {code}; starting it again in {delay:.0f} s")
            pause(delay)
            # The child starts again only once the restart is prepared: a worker started on a
            # state that ``on_crash`` was meant to discard (its projections' changelogs ahead
            # of or behind its committed offsets) would serve a projection that misses events.
            while not stopping:
                try:
                    on_crash()
                    break
                except Exception as exc:
                    say(f"could not prepare the restart ({exc!r}); trying again in {delay:.0f} s")
                    pause(delay)
                    delay = min(delay * 2, backoff[1])
            if stopping:
                return code
    except _Stopped:
        return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
