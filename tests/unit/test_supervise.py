"""The worker's supervisor (trialops/supervise.py): a child that dies by itself is started
again only once the restart has been prepared (its projections discarded, decision 24); a
preparation that fails is retried, never skipped."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from trialops.supervise import command, forked, supervise


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

    code = supervise(command(child), say=lambda _m: None, backoff=(0.01, 0.02), on_crash=prepare)

    assert code == 0
    assert story == ["prepare after 1 start(s)"] * 3
    assert runs.read_text() == "xx"


def _stop_this_process_once(started: Path) -> None:
    """SIGTERM to this process (the supervisor under test) once ``started`` exists."""

    def stop_when_started() -> None:
        while not started.exists():
            threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_started, daemon=True).start()


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    """Issue 14: an orphaned worker held out against SIGTERM for over 35 s; the supervisor
    passes the signal on and kills a child still running after its grace."""
    started = tmp_path / "started"
    child = [sys.executable, "-c",
             "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             f"pathlib.Path({str(started)!r}).touch(); time.sleep(600)"]

    _stop_this_process_once(started)
    said: list[str] = []

    code = supervise(command(child), say=said.append, grace=0.5)

    assert code == -signal.SIGKILL
    assert said == ["worker still running 0.5 s after it was asked to stop: killed"]


def test_a_stop_during_the_restarts_preparation_cuts_it_short(tmp_path):
    """A restart's preparation against a broker that is gone may block for a client's whole
    timeout; asked to stop meanwhile, the supervisor returns the worker's last exit code
    without finishing it or starting the worker again."""
    import signal
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

    code = supervise(command(child), say=lambda _m: None, backoff=(0.01, 0.02), on_crash=prepare)

    assert code == 1
    assert story == ["preparing"]
    assert runs.read_text() == "x"


def _forked_exit(main) -> int:

    return forked(main)().wait(timeout=30)


def test_a_forked_child_exits_as_a_new_interpreter_would(capfd):
    """Decision 80: the worker is forked from its supervisor; its exit code must say what a
    `trialops worker --once` process's would, since the supervisor acts on it."""

    def raises() -> None:
        raise RuntimeError("the worker failed")

    assert _forked_exit(lambda: None) == 0
    assert _forked_exit(lambda: sys.exit(2)) == 2
    assert _forked_exit(raises) == 1
    assert "RuntimeError: the worker failed" in capfd.readouterr().err
    assert _forked_exit(lambda: os.kill(os.getpid(), signal.SIGKILL)) == -signal.SIGKILL


def test_a_forked_child_starts_from_what_the_supervisor_imported(tmp_path):
    """What the fork is for: the child finds the modules its supervisor loaded (here one
    made up for the test), instead of importing them again in a new interpreter."""
    import types

    marker = types.ModuleType("trialops_test_loaded_by_the_supervisor")
    sys.modules[marker.__name__] = marker
    seen = tmp_path / "seen"
    try:
        code = _forked_exit(lambda: seen.write_text(str(marker.__name__ in sys.modules)))
    finally:
        del sys.modules[marker.__name__]
    assert code == 0
    assert seen.read_text() == "True"


def test_a_stopped_supervisor_passes_sigterm_to_its_forked_child(tmp_path):
    """The forked child runs with the default handlers, not the supervisor's: the SIGTERM the
    supervisor passes on ends it (a child that kept the supervisor's handler would let it
    pass and be killed after the grace)."""
    import time

    started = tmp_path / "started"

    def child() -> None:
        started.touch()
        time.sleep(600)

    _stop_this_process_once(started)
    said: list[str] = []

    code = supervise(forked(child), say=said.append, grace=20)

    assert code == -signal.SIGTERM
    assert said == []


def test_a_forked_child_that_dies_is_forked_again_after_the_preparation(tmp_path):
    runs = tmp_path / "runs"

    def child() -> None:
        n = len(runs.read_text()) if runs.exists() else 0
        runs.write_text("x" * (n + 1))
        sys.exit(1 if n == 0 else 0)

    prepared: list[int] = []

    code = supervise(forked(child), say=lambda _m: None, backoff=(0.01, 0.02),
                     on_crash=lambda: prepared.append(len(runs.read_text())))

    assert code == 0
    assert prepared == [1]
    assert runs.read_text() == "xx"
