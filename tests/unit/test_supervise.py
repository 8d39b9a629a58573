"""The worker's supervisor (trialops/supervise.py): a child that dies by itself is started
again only once the restart has been prepared (its projections discarded, decision 24); a
preparation that fails is retried, never skipped."""

from __future__ import annotations

import sys

from trialops.supervise import supervise


def test_a_restart_waits_until_its_preparation_succeeds(tmp_path):
    runs = tmp_path / "runs"
    # The child records each start; it dies (exit 1) the first time and ends (exit 0) after.
    child = [sys.executable, "-c",
             f"import pathlib, sys; p = pathlib.Path({str(runs)!r}); "
             "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
             "sys.exit(1 if n == 0 else 0)"]
    story: list[str] = []

    def prepare() -> None:
        story.append(f"prepare after {len(runs.read_text())} start(s)")
        if len(story) < 3:
            raise TimeoutError("consumer group not deleted: NOT_COORDINATOR")

    code = supervise(child, say=lambda _m: None, backoff=(0.01, 0.02), on_crash=prepare)

    assert code == 0
    assert story == ["prepare after 1 start(s)"] * 3
    assert runs.read_text() == "xx"


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    """Issue 14: an orphaned worker held out against SIGTERM for over 35 s; the supervisor
    passes the signal on and kills a child still running after its grace."""
    import os
    import signal
    import threading

    started = tmp_path / "started"
    child = [sys.executable, "-c",
             "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             f"pathlib.Path({str(started)!r}).touch(); time.sleep(600)"]

    def stop_when_started() -> None:
        while not started.exists():
            threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_started, daemon=True).start()
    said: list[str] = []

    code = supervise(child, say=said.append, grace=0.5)

    assert code == -signal.SIGKILL
    assert said == ["worker still running 0.5 s after it was asked to stop: killed"]


def test_a_stop_during_the_restarts_preparation_cuts_it_short(tmp_path):
    """A restart's preparation against a broker that is gone may block for a client's whole
    timeout; asked to stop meanwhile, the supervisor returns the worker's last exit code
    without finishing it or starting the worker again."""
    import os
    import signal
    import threading
    import time

    runs = tmp_path / "runs"
    child = [sys.executable, "-c",
             f"import pathlib; p = pathlib.Path({str(runs)!r}); "
             "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); raise SystemExit(1)"]
    story: list[str] = []

    def prepare() -> None:
        story.append("preparing")
        threading.Thread(target=lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
        time.sleep(30)  # a Kafka call that hangs; the signal ends it
        story.append("prepared")

    code = supervise(child, say=lambda _m: None, backoff=(0.01, 0.02), on_crash=prepare)

    assert code == 1
    assert story == ["preparing"]
    assert runs.read_text() == "x"
