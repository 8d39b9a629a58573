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


def supervise(
    command: list[str],
    *,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    backoff: tuple[float, float] = (1.0, 30.0),
    on_crash: Callable[[], None] = lambda: None,
) -> int:
    """Run ``command`` until it exits 0 or with ``CONFIG_ERROR``, or until we are asked to
    stop; return its last exit code. A child that dies otherwise is started again, after a
    delay that doubles while it keeps dying within a minute (``backoff``: first, largest), and
    only after ``on_crash`` has succeeded (it is retried until it does)."""
    stopping: list[int] = []
    child: subprocess.Popen | None = None

    def forward(signum, _frame) -> None:
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    delay = backoff[0]
    try:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(command)
            code = child.wait()
            if stopping or code in (0, CONFIG_ERROR):
                return code
            delay = backoff[0] if time.monotonic() - started > 60 else min(delay * 2, backoff[1])
            say(f"worker exited with code {code}; starting it again in {delay:.0f} s")
            time.sleep(delay)
            # The child starts again only once the restart is prepared: a worker started on a
            # state that ``on_crash`` was meant to discard (its projections' changelogs ahead
            # of or behind its committed offsets) would serve a projection that misses events.
            while not stopping:
                try:
                    on_crash()
                    break
                except Exception as exc:
                    say(f"could not prepare the restart ({exc!r}); trying again in {delay:.0f} s")
                    time.sleep(delay)
                    delay = min(delay * 2, backoff[1])
            if stopping:
                return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
