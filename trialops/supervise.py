"""Keep a child process running: restart it when it dies, pass on SIGTERM and SIGINT.

Faust's worker exits when the broker goes away while it is starting (its consumer's bootstrap
fails); a projection worker must not stay down because the broker restarted at the wrong
moment. ``trialops worker`` therefore runs the Faust worker as a child of this loop.

The child is forked from the supervisor (:func:`forked`), not started as a new interpreter: it
inherits the modules the supervisor imported to parse its command line, 0.7 to 1 s of processor
time that each start of the worker no longer spends again (decision 80).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Protocol

CONFIG_ERROR = 2
"""The child's exit code for a bad configuration: restarting would not help."""
STOP_GRACE = 8.0
"""Seconds a child has to stop after SIGTERM or SIGINT before it is killed: the worker's
projections are kept in changelogs and recovered from them, so a worker held up in Faust's
shutdown (commits, rebalances, a broker gone) is not worth waiting for."""


class Child(Protocol):
    """What the loop needs of a running child: ``subprocess.Popen`` has it, and so has
    :class:`ForkedChild`."""

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


def command(argv: list[str]) -> Callable[[], Child]:
    """Start ``argv`` as a new process each time."""
    return lambda: subprocess.Popen(argv)


_PASSED_ON = (signal.SIGTERM, signal.SIGINT)


class ForkedChild:
    """``main()`` run in a process forked from this one, seen as a ``Popen`` is. The child
    exits as an interpreter would: 0 when ``main`` returns, the code of a ``SystemExit``, 1
    with the traceback on stderr after an exception; ``-N`` when signal N ended it."""

    def __init__(self, main: Callable[[], object]):
        self._process = multiprocessing.get_context("fork").Process(
            target=_run_forked, args=(main,), name="trialops-worker"
        )
        # Held back until the child has put the default handlers back: a signal arriving
        # in between would otherwise run the supervisor's handler in the child.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _PASSED_ON)
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()  # or the child writes the supervisor's buffered output again
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def poll(self) -> int | None:
        return None if self._process.is_alive() else self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired("forked worker", timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None and self._process.pid is not None:
            os.kill(self._process.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _run_forked(main: Callable[[], object]) -> None:
    # The handlers a new interpreter starts with, in place of the supervisor's.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _PASSED_ON)
    main()


def forked(main: Callable[[], object]) -> Callable[[], Child]:
    """Run ``main()`` in a child forked from this process each time. Call it only from a
    process that runs no other thread: a forked child holds only the forking thread, and a
    lock another thread held stays held in it for good."""
    return lambda: ForkedChild(main)


class _Stopped(BaseException):
    """Raised by the signal handler between two children, to cut a restart's preparation
    short (a Kafka call against a broker that is gone can block for its whole timeout)."""


def supervise(
    start: Callable[[], Child],
    *,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    backoff: tuple[float, float] = (1.0, 30.0),
    on_crash: Callable[[], None] = lambda: None,
    grace: float = STOP_GRACE,
) -> int:
    """Run a child (``start()``) until it exits 0 or with ``CONFIG_ERROR``, or until we are asked to
    stop; return its last exit code. A child that dies otherwise is started again, after a
    delay that doubles while it keeps dying within a minute (``backoff``: first, largest), and
    only after ``on_crash`` has succeeded (it is retried until it does). Asked to stop, it
    passes the signal on and kills a child still running ``grace`` seconds later; between two
    children it stops at once, whatever the restart's preparation is doing."""
    stopping: list[float] = []
    child: Child | None = None
    restarting: list[bool] = []

    def forward(signum, _frame) -> None:
        stopping.append(time.monotonic())
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        elif restarting:
            raise _Stopped

    def wait_for(process: Child) -> int:
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
            child = start()
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
