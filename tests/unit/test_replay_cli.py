"""``trialops replay``: one projection by name, or ``--all`` from one read of the log (issue
12; decision 36). The real CLI in a subprocess; these refusals happen before any broker is
asked, so no broker is needed."""

from __future__ import annotations

import os
import subprocess
import sys

RUN_APP = "from trialops.cli import app; app()"


def replay(*arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    return subprocess.run(
        [sys.executable, "-c", RUN_APP, "replay", *arguments],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )


def test_replay_needs_a_projection_or_all():
    done = replay()
    assert done.returncode == 2
    assert "name one projection, or give --all" in done.stderr


def test_replay_takes_a_projection_or_all_not_both():
    done = replay("cohort-occupancy", "--all")
    assert done.returncode == 2
    assert "name one projection, or give --all" in done.stderr


def test_an_output_folder_goes_with_all_only():
    done = replay("cohort-occupancy", "--out", "somewhere")
    assert done.returncode == 2
    assert "--out goes with --all" in done.stderr


def test_an_unknown_projection_is_refused_naming_the_known_ones():
    done = replay("no-such-view")
    assert done.returncode == 2
    assert "unknown projection 'no-such-view'" in done.stderr
    assert "cohort-occupancy" in done.stderr
