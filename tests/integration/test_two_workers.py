"""Two Faust workers in one group (decision 58): the group gives the event partitions to one of
them; the other stands by, answers every view by asking the one that holds them, and takes
over when that one is killed. Every answer, from either worker, is the replay's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import orjson
import pytest

from clients.http import DEMO_READER, get_bytes
from events.enrollment import CohortOpened, SubjectEnrolled, SubjectWaitlisted
from tests.conftest import free_port
from tests.integration.helpers import eventually, whole_view
from tests.integration.raw_events import RawWriter
from tests.integration.test_projection_worker import replay

pytestmark = pytest.mark.kafka

COMPARED = ("cohort-occupancy", "patient-timeline")
"""Views without a clock: the replay's document is the worker's, byte for byte."""


def _ready(url: str) -> dict | None:
    try:
        return orjson.loads(get_bytes(f"{url}/ready", token=DEMO_READER))
    except OSError:  # not listening yet, or 503 while it has nothing to serve
        return None


def _answers(url: str, name: str) -> bytes | None:
    try:
        return whole_view(f"{url}/projections/{name}")
    except OSError:
        return None


def _enrol(writer: RawWriter, first: int, last: int) -> None:
    for n in range(first, last + 1):
        subject = f"MSK-{n:04d}"
        writer.append(
            f"subject-{subject}",
            SubjectEnrolled(subject_id=subject, cohort_id="DL2-IP", slot=n) if n <= 6
            else SubjectWaitlisted(subject_id=subject, cohort_id="DL2-IP", position=n - 6),
        )
    writer.producer.flush()


def test_a_standby_worker_answers_as_the_holder_and_takes_over_when_it_is_killed(
    stack, settings
):
    # Given a worker folding a cohort's enrolments, and a second worker started in its group
    writer = RawWriter(settings)
    writer.append("cohort-DL2-IP", CohortOpened(
        cohort_id="DL2-IP", dose_level="DL2", dose_cells_per_kg=3e6, route="intraperitoneal",
        capacity=6,
    ))
    _enrol(writer, 1, 4)
    second_port = free_port()
    second_dir = stack.work_dir / "second-worker"
    second_dir.mkdir()
    second = subprocess.Popen(
        [sys.executable, "-m", "trialops", "worker", "--demo", "--web-port", str(second_port),
         "--data-dir", str(second_dir)],
        env={**os.environ, **stack.settings.env()},
        stdout=open(stack.work_dir / "second-worker.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    urls = {"projections": stack.projections_url, "second": f"http://127.0.0.1:{second_port}"}
    try:
        # Then once the group settled, one holds the partitions and the other stands by for it
        def settled():
            states = {name: _ready(url) for name, url in urls.items()}
            if any(s is None or not s["ready"] for s in states.values()):
                return None
            standbys = [name for name, s in states.items() if "standby_for" in s]
            return states if len(standbys) == 1 else None

        states = eventually(settled, timeout=90, interval=1)
        [standby] = [name for name, s in states.items() if "standby_for" in s]
        [holder] = [name for name in urls if name != standby]
        assert states[standby]["standby_for"] == urls[holder]

        # and both answer every view with the replay's document, byte for byte
        for name in COMPARED:
            expected = replay(settings, name)
            eventually(lambda n=name, e=expected: _answers(urls[holder], n) == e, timeout=30)
            assert _answers(urls[standby], name) == expected

        # and only the holder notes in its data dir that it holds them
        dirs = {"projections": stack.work_dir, "second": second_dir}
        assert (dirs[holder] / "holding").exists()
        assert not (dirs[standby] / "holding").exists()

        # When the standby's Faust process dies by itself (its supervisor stays)
        supervisor = stack.processes["projections"] if standby == "projections" else second
        found = subprocess.run(
            ["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True, check=True
        )
        [child] = found.stdout.split()
        os.kill(int(child), signal.SIGKILL)

        # Then its supervisor deletes nothing the holder uses, and it stands by again
        log = (stack.work_dir / f"{'second-worker' if standby == 'second' else 'projections'}"
               ".log")
        eventually(lambda: "hold the projections; it joins them" in log.read_text(
            errors="replace"), timeout=90, interval=1)
        eventually(lambda: (s := _ready(urls[standby])) is not None
                   and s.get("standby_for") == urls[holder], timeout=90, interval=1)
        for name in COMPARED:
            assert _answers(urls[holder], name) == replay(settings, name)

        # When the holder is killed without warning and more events arrive
        if holder == "projections":
            stack.kill("projections")
        else:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait(timeout=30)
        _enrol(writer, 5, 9)

        # Then the standby says it is not ready while its holder is gone (its session has not
        # timed out yet: 20 s), takes the partitions over, and answers what a replay of the
        # whole log answers
        survivor = urls[standby]
        eventually(lambda: _ready(survivor) is None, timeout=15, interval=0.5)
        eventually(lambda: (s := _ready(survivor)) is not None and s["ready"]
                   and "standby_for" not in s, timeout=90, interval=1)
        for name in COMPARED:
            expected = replay(settings, name)
            eventually(lambda n=name, e=expected: _answers(survivor, n) == e, timeout=60)
        row = orjson.loads(replay(settings, "cohort-occupancy"))["cohorts"][0]
        assert (len(row["enrolled"]), len(row["waiting_list"])) == (6, 3)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(timeout=30)
