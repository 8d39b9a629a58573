"""Where the CLI finds Kafka and the keyring (issue 14; infra/settings.py): first
``KAFKA_BOOTSTRAP_SERVERS``; else the system ``trialops up`` or ``trialops broker start``
recorded, if its broker runs; else one line naming what was tried, and the CLI's own exit code
(3), not verify's "problems found" (1). No broker needed: a listening socket stands for one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from infra.settings import KAFKA_UNREACHABLE, KafkaNotFound, Settings, record_system


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIALOPS_STATE_DIR", str(tmp_path))
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "TRIALOPS_KEYRING", "TRIALOPS_WRITER_KEYS",
                 "TRIALOPS_NAMESPACE", "TRIALOPS_TRIALS", "TRIALOPS_PARTITIONS"):
        # Set first, so that the end of the test unsets what ``Settings.from_env`` sets.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return tmp_path


@pytest.fixture
def listening() -> Iterator[str]:
    """A port that accepts connections, as a running broker's does."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"127.0.0.1:{server.getsockname()[1]}"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_environment_names_kafka_first(state, listening, monkeypatch):
    record_system(listening, started_by="trialops up", broker="up", pids=[os.getpid()])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")

    assert Settings.from_env().bootstrap_servers == "kafka.example:9092"


def test_the_running_system_up_recorded_gives_kafka_its_keyring_and_namespace(state, listening):
    record_system(listening, started_by="trialops up", broker="up", pids=[os.getpid()],
                  keyring="/keys/keyring.json", writer_keys="/keys/writers", namespace="demo")

    settings = Settings.from_env()

    assert settings.bootstrap_servers == listening
    assert settings.keyring == "/keys/keyring.json"
    assert settings.writer_keys == "/keys/writers"
    assert settings.namespace == "demo"


def test_a_keyring_in_the_environment_wins_over_the_recorded_one(state, listening, monkeypatch):
    record_system(listening, started_by="trialops up", pids=[os.getpid()],
                  keyring="/keys/keyring.json")
    monkeypatch.setenv("TRIALOPS_KEYRING", "/mine/keyring.json")

    assert Settings.from_env().keyring == "/mine/keyring.json"


def test_the_recorded_keyring_goes_only_with_the_recorded_broker(state, listening, monkeypatch):
    record_system(listening, started_by="trialops up", pids=[os.getpid()],
                  keyring="/keys/keyring.json")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    assert Settings.from_env().keyring is None

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", listening)
    assert Settings.from_env().keyring == "/keys/keyring.json"


def test_a_recorded_broker_that_stopped_is_not_used_and_is_named(state, listening):
    record_system(listening, started_by="trialops up", broker="up", pids=[dead_pid()])

    with pytest.raises(KafkaNotFound) as refused:
        Settings.from_env()

    message = str(refused.value)
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in message
    assert f"broker 'up' recorded in {state / 'system.json'}" in message
    assert "is not running" in message and "\n" not in message


def test_without_environment_or_record_kafka_is_not_found(state):
    with pytest.raises(KafkaNotFound, match="no system is recorded in"):
        Settings.from_env()


def test_a_kafka_that_does_not_answer_is_refused_at_once(state, monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", address)

    with pytest.raises(KafkaNotFound, match=f"Kafka does not answer at {address}"):
        Settings.reachable()


def cli(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trialops", *arguments], capture_output=True, text=True,
        timeout=60, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **env}, check=False,
    )


@pytest.mark.parametrize("command", [
    ["verify"], ["replay", "dose-escalation"], ["audit", "trail", "--subject", "MSK-0101"],
    ["export", "--format", "jsonl"], ["checkpoint", "--output", "cp.json"], ["topics", "create"],
])
def test_an_auditor_command_without_kafka_says_so_in_one_line_with_its_own_code(
    state, command
):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    done = subprocess.run(
        [sys.executable, "-m", "trialops", *command], capture_output=True, text=True,
        timeout=60, env={**env, "TRIALOPS_STATE_DIR": str(state)}, check=False, cwd=state,
    )

    assert done.returncode == KAFKA_UNREACHABLE != 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: no Kafka to talk to: KAFKA_BOOTSTRAP_SERVERS")


def test_the_version_comes_from_the_package_metadata():
    done = cli("--version", env={})

    assert done.returncode == 0
    assert done.stdout == f"trialops {version('trialops')}\n"


def test_help_documents_the_exit_codes():
    done = cli("--help", env={})

    assert "2 bad arguments" in done.stdout and "3 no Kafka" in done.stdout


def test_shell_completion_is_offered():
    # Typer names the shell it was started from (shellingham looks at the parent processes),
    # as when a user types it: started from bash, whatever runs the tests.
    done = subprocess.run(
        ["bash", "-c", '"$0" -m trialops --show-completion; exit $?', sys.executable],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )

    assert done.returncode == 0, done.stderr
    assert "COMP_WORDS" in done.stdout and "complete " in done.stdout


class StartedCluster:
    """What ``trialops broker start`` records from: a running cluster's name and status."""

    def __init__(self, name: str, bootstrap: str):
        self.name, self.bootstrap = name, bootstrap

    def status(self) -> dict:
        return {"bootstrap_servers": self.bootstrap, "nodes": [{"pid": os.getpid()}]}


def test_starting_ups_broker_again_keeps_the_keyring_up_recorded(state, listening):
    from trialops.cli_broker import record

    record_system("127.0.0.1:1", started_by="trialops up", broker="up", pids=[dead_pid()],
                  keyring="/keys/keyring.json")

    record(StartedCluster("up", listening), "trialops broker start")

    assert Settings.from_env().keyring == "/keys/keyring.json"


def test_another_broker_started_does_not_take_ups_keyring(state, listening):
    from trialops.cli_broker import record

    record_system("127.0.0.1:1", started_by="trialops up", broker="up", pids=[dead_pid()],
                  keyring="/keys/keyring.json")

    record(StartedCluster("scratch", listening), "trialops broker start")

    settings = Settings.from_env()
    assert settings.bootstrap_servers == listening
    assert settings.keyring is None


def test_show_and_walk_default_to_the_servers_of_the_running_up(state):
    from infra.settings import recorded_url

    record_system("127.0.0.1:1", started_by="trialops up", service_url="http://127.0.0.1:7081",
                  projections_url="http://127.0.0.1:7066")
    assert recorded_url("projections_url") == "http://127.0.0.1:7066"
    assert recorded_url("service_url") == "http://127.0.0.1:7081"

    done = subprocess.run(
        [sys.executable, "-c", "from trialops.cli_show import DEFAULT_URL; print(DEFAULT_URL)"],
        capture_output=True, text=True, timeout=60, check=True,
        env={k: v for k, v in os.environ.items() if k != "TRIALOPS_PROJECTIONS_URL"},
    )
    # the subprocess runs while this process (the recorder) lives
    assert done.stdout.strip() == "http://127.0.0.1:7066"


def test_an_up_that_has_stopped_leaves_the_default_servers(state, monkeypatch):
    from infra.settings import recorded_url

    monkeypatch.setattr(os, "getpid", dead_pid)
    record_system("127.0.0.1:1", started_by="trialops up", service_url="http://127.0.0.1:7081",
                  projections_url="http://127.0.0.1:7066")

    assert recorded_url("projections_url") is None
    assert recorded_url("service_url") is None


def test_broker_status_without_a_name_lists_every_local_cluster(tmp_path):
    clusters = tmp_path / "clusters"
    for name in ("up", "scratch"):
        (clusters / name).mkdir(parents=True)

    done = cli("broker", "status", env={"TRIALOPS_KAFKA_HOME": str(tmp_path)})

    assert done.returncode == 1  # none of them runs
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [
        ["scratch", "stopped"], ["up", "stopped"]
    ]
    assert f"no local cluster is running (2 kept in {clusters})" in done.stderr


def test_the_commands_beside_up_trials_read_the_trials_it_runs(state, listening, monkeypatch):
    # `up --trials` runs the shipped folder's trials on topics of 4 partitions: a `trialops
    # replay --trial` or `show` run beside it reads them too, without exporting anything
    from trial.config import SHIPPED, load_trials

    folder = str(SHIPPED.parent)
    record_system(listening, started_by="trialops up", pids=[os.getpid()],
                  keyring="/keys/keyring.json", trials=folder, partitions="4")
    assert len(load_trials()) == 1  # nothing read yet: the shipped trial alone

    Settings.from_env()

    assert os.environ["TRIALOPS_TRIALS"] == folder
    assert os.environ["TRIALOPS_PARTITIONS"] == "4"
    assert sorted(load_trials()) == ["NCT04577326", "NCT06623396"]


def test_trials_in_the_environment_win_and_a_one_trial_record_sets_none(
    state, listening, monkeypatch, tmp_path
):
    record_system(listening, started_by="trialops up", pids=[os.getpid()],
                  trials="/recorded/trials", partitions="4")
    monkeypatch.setenv("TRIALOPS_TRIALS", str(tmp_path))
    Settings.from_env()
    assert os.environ["TRIALOPS_TRIALS"] == str(tmp_path)

    monkeypatch.delenv("TRIALOPS_TRIALS")
    monkeypatch.delenv("TRIALOPS_PARTITIONS")
    record_system(listening, started_by="trialops up", pids=[os.getpid()])
    Settings.from_env()
    assert "TRIALOPS_TRIALS" not in os.environ and "TRIALOPS_PARTITIONS" not in os.environ



def test_every_command_adopts_the_recorded_trials_before_it_reads_them(
    state, listening, monkeypatch
):
    # What the CLI does first (trialops/cli.py): the running system's trials, or the recorded
    # one's when KAFKA_BOOTSTRAP_SERVERS names its Kafka, and only then
    from infra.settings import adopt_recorded_trials

    record_system(listening, started_by="trialops up", pids=[os.getpid()],
                  trials="/recorded/trials", partitions="4")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    adopt_recorded_trials()
    assert "TRIALOPS_TRIALS" not in os.environ

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", listening)
    adopt_recorded_trials()
    assert os.environ["TRIALOPS_TRIALS"] == "/recorded/trials"

    monkeypatch.delenv("TRIALOPS_TRIALS")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    record_system(listening, started_by="trialops up", pids=[dead_pid()],
                  trials="/recorded/trials", partitions="4")
    adopt_recorded_trials()  # its broker is gone: nothing adopted
    assert "TRIALOPS_TRIALS" not in os.environ


def test_the_trials_of_an_up_that_has_stopped_are_not_adopted(state, listening, monkeypatch):
    # The Kafka outlives the 'up --trials' that recorded it (KAFKA_BOOTSTRAP_SERVERS): a later
    # command, or a later 'up' of one trial, does not inherit that up's trials
    import json

    from infra.settings import adopt_recorded_trials, system_file

    path = record_system(listening, started_by="trialops up", pids=[],
                         trials="/recorded/trials", partitions="4")
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "owner_pid": dead_pid()}))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", listening)

    adopt_recorded_trials()
    Settings.from_env()

    assert "TRIALOPS_TRIALS" not in os.environ and "TRIALOPS_PARTITIONS" not in os.environ
    assert system_file() == path
