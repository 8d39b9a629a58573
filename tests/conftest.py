"""Shared fixtures. A test that needs Kafka gets a real broker, found in this order:
``KAFKA_BOOTSTRAP_SERVERS``; testcontainers' Kafka module when a Docker engine answers; else
the project's own KRaft launcher. Under CI a missing broker fails the test, never skips it."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import Settings


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def pytest_configure(config) -> None:
    """Every event is signed by its writer (events/signing.py): the session makes one key per
    writer and the keyring, unless the environment names a set, for the services it starts,
    the readers it runs and the raw writers of the tests."""
    # The CLI records the broker it starts (`trialops broker start`, `up`) in its state folder
    # (infra/settings.py): the tests' brokers must not replace a developer's ./scripts/up's.
    os.environ.setdefault("TRIALOPS_STATE_DIR", tempfile.mkdtemp(prefix="trialops-state-"))
    # A killed or stalled member's partitions move after its session timeout: the tests that
    # kill one wait for it, so they run with short ones (decision 72). Set before anything
    # imports the modules that read them; the processes the tests start inherit them.
    from infra.settings import WORKER_SESSION_ENV, WRITER_SESSION_ENV

    os.environ.setdefault(WRITER_SESSION_ENV, "6")
    os.environ.setdefault(WORKER_SESSION_ENV, "8")
    # The tests start many brokers' JVMs on two cores: compiled by the client compiler
    # only, each starts in about two thirds of the CPU time (decision 72).
    from broker.node import JVM_OPTIONS_ENV

    os.environ.setdefault(JVM_OPTIONS_ENV, "-XX:TieredStopAtLevel=1")
    if not os.environ.get("TRIALOPS_KEYRING"):
        from infra.keys import init_keys

        keyring, writers = init_keys(Path(tempfile.mkdtemp(prefix="trialops-keys-")))
        os.environ["TRIALOPS_KEYRING"] = str(keyring)
        os.environ["TRIALOPS_WRITER_KEYS"] = str(writers)


_BROKER: dict[str, str] = {}
"""Where the session's broker came from, for the summary at the end of the run."""


def pytest_terminal_summary(terminalreporter) -> None:
    """Say how many tests ran against a real broker, and which one."""
    ran = {
        outcome: sum(
            1 for r in terminalreporter.stats.get(outcome, [])
            if r.when == "call" and "kafka" in r.keywords
        )
        for outcome in ("passed", "failed")
    }
    if not any(ran.values()):
        return
    where = (
        f"the session's broker is {_BROKER['source']} at {_BROKER['bootstrap']}"
        if _BROKER
        else "each started a broker of its own"
    )
    terminalreporter.write_line(
        f"kafka: {ran['passed']} passed and {ran['failed']} failed on a real broker; {where}"
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        _BROKER.update(source="KAFKA_BOOTSTRAP_SERVERS",
                       bootstrap=os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if _docker_answers():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers before the community split
            from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            _BROKER.update(source="a testcontainers Kafka (KRaft)",
                           bootstrap=container.get_bootstrap_server())
            yield container.get_bootstrap_server()
        return
    from broker.cluster import BrokerError, LocalKafka

    broker = LocalKafka(name=f"pytest-{uuid.uuid4().hex[:8]}")
    try:
        bootstrap = broker.start()
    except BrokerError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Kafka broker for the integration tests: {exc}")
        pytest.skip(f"no Kafka broker (set KAFKA_BOOTSTRAP_SERVERS or install Java 17): {exc}")
    _BROKER.update(source=f"the project's own KRaft broker (Apache Kafka {broker.version})",
                   bootstrap=bootstrap)
    try:
        yield bootstrap
    finally:
        broker.stop()
        broker.wipe()  # the session's broker is throwaway: its data goes with it


@pytest.fixture
def settings(kafka_bootstrap: str) -> Iterator[Settings]:
    """Settings with a namespace of its own, so tests never see each other's events. Its
    topics are deleted after the test: kafka-python asks for every topic's metadata when it
    looks one up, so each namespace left on the session's broker made every later client
    slower (about 25 topics a test, 0.2 s a lookup at 3,000 topics)."""
    chosen = Settings(
        bootstrap_servers=kafka_bootstrap,
        namespace=f"t{uuid.uuid4().hex[:10]}",
        trial_id="NCT06623396",
    )
    yield chosen
    _delete_topics_of(chosen)


def _delete_topics_of(settings: Settings) -> None:
    from kafka.admin import KafkaAdminClient

    ns = settings.namespace
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                 client_id="trialops-tests-cleanup")
    except Exception:  # a test that stopped the session's broker: nothing to keep small
        return
    try:
        theirs = [t for t in admin.list_topics() if t.startswith((f"{ns}.", f"{ns}-"))]
        if theirs:
            admin.delete_topics(theirs)
    except Exception:  # the next test must not fail for the cleanup of this one
        pass
    finally:
        admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stack(settings: Settings, tmp_path: Path, monkeypatch):
    """The enrollment service and the Faust worker as real processes on the real broker, with
    the demo users; the test's readers of the projections (``get_bytes``, ``trialops show``)
    send the demo auditor's token through ``TRIALOPS_TOKEN``."""
    from clients.http import DEMO_READER, TOKEN_ENV
    from trialops.stack import Stack

    monkeypatch.setenv(TOKEN_ENV, DEMO_READER)

    running = Stack(
        settings, tmp_path, service_port=free_port(), web_port=free_port(), say=lambda _m: None
    )
    try:
        running.start(timeout=120)
    except TimeoutError:
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log"))
        )
        pytest.fail(f"the stack did not come up:\n{logs}")
    yield running
    running.stop()
