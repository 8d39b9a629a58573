"""Runtime settings from the environment: where Kafka is, which namespace, which trial.

Where Kafka is, in order (``find_kafka``): ``KAFKA_BOOTSTRAP_SERVERS``; else the system that
``trialops up`` or ``trialops broker start`` recorded last (``system.json`` in the project's
state folder), if its broker still runs; else ``KafkaNotFound``, one line naming what was tried.
The keyring (and the writers' keys) follow the same order: ``TRIALOPS_KEYRING``, else the one
the record names for that same broker, so that ``trialops verify`` works after ``./scripts/up``
with nothing exported."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from events.topics import DEFAULT_NAMESPACE
from infra.processes import pid_alive as _pid_alive

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
STATE_DIR_ENV = "TRIALOPS_STATE_DIR"
SYSTEM_FILE = "system.json"
KAFKA_UNREACHABLE = 3
"""The CLI's exit code when no Kafka answers (1 means problems found, 2 bad arguments)."""


WRITER_SESSION_ENV = "TRIALOPS_WRITER_SESSION_SECONDS"
WORKER_SESSION_ENV = "TRIALOPS_WORKER_SESSION_SECONDS"
"""How long a member of the writers' group (services/writer_group.py) or of the workers' group
(projections/owner.py) that stopped heartbeating keeps its partitions, when the default does
not suit (decision 72): shorter, a crashed member's work moves sooner; longer, a member that
stalls (a long pause, a busy machine) keeps it."""
SESSION_SECONDS_RANGE = (6.0, 1800.0)
"""What a Kafka broker accepts by default (``group.min.session.timeout.ms`` 6 s,
``group.max.session.timeout.ms`` 30 min)."""


def session_seconds(env: str, default: float) -> float:
    """The session timeout ``env`` sets, else ``default``; ``ValueError`` naming the variable
    and the rule when it is not a number of seconds the broker accepts."""
    given = os.environ.get(env)
    if not given:
        return default
    lowest, highest = SESSION_SECONDS_RANGE
    try:
        seconds = float(given)
    except ValueError:
        seconds = float("nan")
    if not lowest <= seconds <= highest:
        raise ValueError(f"{env}={given!r}: a session timeout is a number of seconds from "
                         f"{lowest:g} to {highest:g} (the broker's default bounds)")
    return seconds


class KafkaNotFound(Exception):
    """No Kafka to talk to: the message, one line, names what was tried."""


def state_dir() -> Path:
    """``$TRIALOPS_STATE_DIR``, else ``.trialops`` in the project's root: where ``trialops up``
    keeps its keys, logs, checkpoints and the record of its system."""
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / ".trialops"


def system_file() -> Path:
    return state_dir() / SYSTEM_FILE


def record_system(
    bootstrap_servers: str,
    *,
    started_by: str,
    broker: str | None = None,
    pids: list[int] | None = None,
    keyring: str | None = None,
    writer_keys: str | None = None,
    namespace: str | None = None,
    service_url: str | None = None,
    projections_url: str | None = None,
    trials: str | None = None,
    partitions: str | None = None,
) -> Path:
    """Record where the system's broker is (and its keys and, for ``up``, its servers), for
    the commands run after it."""
    path = system_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "bootstrap_servers": bootstrap_servers,
        "broker": broker,
        "pids": pids or [],
        "started_by": started_by,
        "owner_pid": os.getpid(),
        "keyring": keyring,
        "writer_keys": writer_keys,
        "namespace": namespace,
        "service_url": service_url,
        "projections_url": projections_url,
        RECORDED_ENV["trials"]: trials,
        RECORDED_ENV["partitions"]: partitions,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


RECORDED_ENV = {"trials": "TRIALOPS_TRIALS", "partitions": "TRIALOPS_PARTITIONS"}
"""What a recorded system ran with that the commands beside it read from the environment (the
trials folder, ``trial.config.load_trials``; the partitions, ``infra.topic_admin``), keyed by
the environment variable's name in the record."""


def adopt(record: dict[str, Any] | None) -> None:
    """The recorded system's trials (``up --trials``) for a command run beside it: it reads
    the trials that system runs, not the one trial of the shipped file. The environment is
    where every reader of the trials looks, so the record fills it where unset. Only while
    the process that recorded them runs: the trials are that ``up``'s, not its Kafka's (a
    later ``up`` of one trial on the same Kafka must not inherit them)."""
    owner = record.get("owner_pid") if record is not None else None
    if record is None or not owner or not _pid_alive(int(owner)):
        return
    for env in RECORDED_ENV.values():
        if record.get(env) and not os.environ.get(env):
            os.environ[env] = str(record[env])


def adopt_recorded_trials() -> None:
    """``adopt`` the running recorded system's trials, or, with ``KAFKA_BOOTSTRAP_SERVERS``
    set, the recorded system's when it is that Kafka: what every ``trialops`` command does
    first, before it reads its trials."""
    given = os.environ.get(BOOTSTRAP_ENV)
    record = read_system() if given else running_system()
    if record is not None and (not given or record["bootstrap_servers"] == given):
        adopt(record)


def read_system() -> dict[str, Any] | None:
    """The recorded system, running or not; None when there is no readable record."""
    try:
        record = json.loads(system_file().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("bootstrap_servers"), str):
        return None
    return record


def answers(bootstrap_servers: str, timeout: float = 2.0) -> str | None:
    """None when one of the servers accepts a TCP connection within ``timeout``; else why not
    (the last refusal)."""
    why = "no server given"
    for server in filter(None, (s.strip() for s in bootstrap_servers.split(","))):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout):
                return None
        except (OSError, ValueError) as exc:
            why = f"{server}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
    return why


def recorded_url(key: str) -> str | None:
    """The ``service_url`` or ``projections_url`` of the ``trialops up`` recorded, while the
    process that recorded it runs (a file read and a signal 0: cheap enough for a default)."""
    record = read_system()
    if record is None or not record.get(key) or not record.get("owner_pid"):
        return None
    return str(record[key]) if _pid_alive(int(record["owner_pid"])) else None


def running_system() -> dict[str, Any] | None:
    """The recorded system if its broker runs: every recorded process alive and a server
    answering."""
    record = read_system()
    if record is None:
        return None
    if not all(_pid_alive(int(p)) for p in record.get("pids") or []):
        return None
    if answers(record["bootstrap_servers"], timeout=1.0) is not None:
        return None
    return record


def find_kafka() -> tuple[str, dict[str, Any] | None]:
    """Bootstrap servers, and the record they come from (None: from the environment). Raises
    ``KafkaNotFound`` naming what was tried."""
    env = os.environ.get(BOOTSTRAP_ENV)
    if env:
        return env, None
    record = running_system()
    if record is not None:
        return record["bootstrap_servers"], record
    tried = f"{BOOTSTRAP_ENV} is not set and "
    recorded = read_system()
    if recorded is None:
        tried += f"no system is recorded in {system_file()}"
    else:
        name = f"broker '{recorded['broker']}'" if recorded.get("broker") else "broker"
        tried += (
            f"the {name} recorded in {system_file()} (by '{recorded.get('started_by')}', at "
            f"{recorded['bootstrap_servers']}) is not running"
        )
    raise KafkaNotFound(
        f"no Kafka to talk to: {tried}; start one with ./scripts/up or 'trialops broker "
        f"start', or set {BOOTSTRAP_ENV}"
    )


def require_answer(bootstrap_servers: str, source: str, timeout: float = 3.0) -> None:
    """Raise ``KafkaNotFound`` at once when no server answers, rather than a client's long
    bootstrap timeout."""
    why = answers(bootstrap_servers, timeout)
    if why is not None:
        raise KafkaNotFound(f"Kafka does not answer at {bootstrap_servers} ({source}): {why}")


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str
    namespace: str = DEFAULT_NAMESPACE
    trial_id: str = "NCT06623396"
    replication_factor: int = 1
    keyring: str | None = field(default_factory=lambda: os.environ.get("TRIALOPS_KEYRING"))
    """The writers' public keys (events/signing.py): every reader needs it."""
    writer_keys: str | None = field(
        default_factory=lambda: os.environ.get("TRIALOPS_WRITER_KEYS")
    )
    """The folder of the writers' private keys: the services need it."""

    @classmethod
    def from_env(cls, **overrides: str | int | None) -> Settings:
        """From the environment, Kafka and the keys found as ``find_kafka`` says; ``overrides``
        win. Raises ``KafkaNotFound`` when no Kafka is given or recorded."""
        values: dict[str, Any] = {
            "namespace": os.environ.get("TRIALOPS_NAMESPACE", DEFAULT_NAMESPACE),
            "trial_id": os.environ.get("TRIALOPS_TRIAL_ID", "NCT06623396"),
            "replication_factor": int(os.environ.get("TRIALOPS_REPLICATION_FACTOR", "1")),
        }
        if overrides.get("bootstrap_servers") is None:
            values["bootstrap_servers"], record = find_kafka()
            if record is None:  # given: the recorded system's keys only if it is that one
                recorded = read_system()
                record = (
                    recorded
                    if recorded and recorded["bootstrap_servers"] == values["bootstrap_servers"]
                    else None
                )
            for key, env in (("keyring", "TRIALOPS_KEYRING"),
                             ("writer_keys", "TRIALOPS_WRITER_KEYS"),
                             ("namespace", "TRIALOPS_NAMESPACE")):
                if record is not None and record.get(key) and not os.environ.get(env):
                    values[key] = record[key]
            adopt(record)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def reachable(cls, **overrides: str | int | None) -> Settings:
        """``from_env``, then a quick check that Kafka answers (``KafkaNotFound`` in seconds):
        for the commands that read or write the log once and exit."""
        settings = cls.from_env(**overrides)
        source = BOOTSTRAP_ENV if os.environ.get(BOOTSTRAP_ENV) else f"recorded in {system_file()}"
        if overrides.get("bootstrap_servers") is not None:
            source = "given"
        require_answer(settings.bootstrap_servers, source)
        return settings

    def env(self) -> dict[str, str]:
        """The same settings as environment variables, for child processes."""
        return {
            BOOTSTRAP_ENV: self.bootstrap_servers,
            "TRIALOPS_NAMESPACE": self.namespace,
            "TRIALOPS_TRIAL_ID": self.trial_id,
            "TRIALOPS_REPLICATION_FACTOR": str(self.replication_factor),
            **({"TRIALOPS_KEYRING": self.keyring} if self.keyring else {}),
            **({"TRIALOPS_WRITER_KEYS": self.writer_keys} if self.writer_keys else {}),
        }
