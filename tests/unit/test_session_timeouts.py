"""The groups' session timeouts are settings (decision 72): within the broker's default bounds
(``group.min.session.timeout.ms`` 6,000 and ``group.max.session.timeout.ms`` 1,800,000 in
Apache Kafka's broker configuration reference), with heartbeats at least three a session."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from infra.settings import WORKER_SESSION_ENV, WRITER_SESSION_ENV, session_seconds


def test_unset_or_empty_gives_the_default(monkeypatch):
    monkeypatch.delenv(WRITER_SESSION_ENV, raising=False)
    assert session_seconds(WRITER_SESSION_ENV, 10.0) == 10.0
    monkeypatch.setenv(WRITER_SESSION_ENV, "")
    assert session_seconds(WRITER_SESSION_ENV, 10.0) == 10.0


@pytest.mark.parametrize("given, seconds", [("6", 6.0), ("7.5", 7.5), ("1800", 1800.0)])
def test_a_value_within_the_brokers_bounds_is_taken(monkeypatch, given, seconds):
    monkeypatch.setenv(WORKER_SESSION_ENV, given)
    assert session_seconds(WORKER_SESSION_ENV, 20.0) == seconds


@pytest.mark.parametrize("given", ["5.9", "0", "-6", "1800.5", "ten", "nan", "inf", "6s"])
def test_anything_else_is_refused_naming_the_variable_and_the_rule(monkeypatch, given):
    monkeypatch.setenv(WORKER_SESSION_ENV, given)
    with pytest.raises(ValueError) as refused:
        session_seconds(WORKER_SESSION_ENV, 20.0)
    message = str(refused.value)
    assert WORKER_SESSION_ENV in message and repr(given) in message
    assert "from 6 to 1800" in message


def _timeouts(env: dict[str, str]) -> dict[str, float]:
    code = (
        "import orjson, services.writer_group as w, projections.owner as o; "
        "print(orjson.dumps({'writer': w.SESSION_TIMEOUT_SECONDS, "
        "'writer_heartbeat': w.HEARTBEAT_SECONDS, 'worker': o.SESSION_TIMEOUT_SECONDS, "
        "'worker_heartbeat': o.HEARTBEAT_SECONDS}).decode())"
    )
    ours = (WRITER_SESSION_ENV, WORKER_SESSION_ENV)
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                          capture_output=True, text=True, timeout=120, check=True)
    return orjson.loads(done.stdout)


def test_the_writers_and_the_workers_groups_use_what_the_environment_says():
    # The defaults: kafka-python's 10 s for the writers (decision 59), 20 s for the workers
    # (decision 14), heartbeats every 2 and 3 s.
    assert _timeouts({}) == {"writer": 10.0, "writer_heartbeat": 2.0, "worker": 20.0,
                             "worker_heartbeat": 3.0}
    # The shortest the broker accepts: three heartbeats a session.
    short = _timeouts({WRITER_SESSION_ENV: "6", WORKER_SESSION_ENV: "6"})
    assert short == {"writer": 6.0, "writer_heartbeat": 2.0, "worker": 6.0,
                     "worker_heartbeat": 2.0}
