"""``trialops broker stop`` + ``start`` keep the log (issue 9, finding 3): the same cluster id,
the same node storage, every event still there; only ``wipe`` or ``start --fresh`` delete it,
and they say what they deleted. Run through the real command line on real broker JVMs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, KafkaAdminClient

from broker.cds import archive_path
from broker.cluster import LocalKafka
from broker.jars import fetch_jars, find_java
from broker.node import classpath
from events.enrollment import CohortOpened, SubjectEnrolled, SubjectRegistered
from events.topics import event_topic
from infra.settings import Settings
from infra.topic_admin import ensure_topics
from tests.integration.raw_events import RawWriter
from tests.java_runtimes import runtime_without_base_archive

pytestmark = pytest.mark.kafka


def trialops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trialops", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def cluster() -> Iterator[LocalKafka]:
    """A uniquely named local broker, stopped and deleted after the test, pass or fail."""
    kafka = LocalKafka(name=f"test-keeps-{uuid.uuid4().hex[:8]}")
    yield kafka
    kafka.stop()
    shutil.rmtree(kafka.cluster_dir, ignore_errors=True)


def start(kafka: LocalKafka, *extra: str) -> tuple[str, str]:
    """``trialops broker start``: (bootstrap servers, what it said on stderr)."""
    result = trialops("broker", "start", "--name", kafka.name, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), result.stderr


def stop(kafka: LocalKafka) -> str:
    result = trialops("broker", "stop", "--name", kafka.name)
    assert result.returncode == 0, result.stderr
    assert kafka.status()["running"] is False
    return result.stderr


def class_archives_mapped(kafka: LocalKafka) -> list[bool]:
    """Per running node: does its JVM map the launcher's class archive (broker/cds.py)?"""
    libs = fetch_jars(kafka.home, kafka.version)
    archive = str(archive_path(kafka.home, find_java(), classpath(libs)))
    pids = [node["pid"] for node in orjson.loads(kafka.state_file.read_bytes())["nodes"]]
    return [archive in Path(f"/proc/{pid}/maps").read_text() for pid in pids]


def exited(pid: int) -> bool:
    """Gone, or a zombie that nobody reaped yet (it has exited all the same)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def meta_properties(kafka: LocalKafka) -> bytes:
    return (kafka.cluster_dir / "node-1" / "data" / "meta.properties").read_bytes()


def values_on(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        values: list[bytes] = []
        for _ in range(30):  # polls, not a time limit: each returns what has arrived
            if consumer.position(partition) >= end:
                break
            values += [r.value for r in consumer.poll(timeout_ms=2000).get(partition, [])]
        return values
    finally:
        consumer.close()


def write_history(settings: Settings) -> int:
    writer = RawWriter(settings)
    try:
        writer.append(
            "cohort-DL1-IP",
            CohortOpened(cohort_id="DL1-IP", dose_level="DL1", dose_cells_per_kg=1e6,
                         route="intraperitoneal", capacity=3),
        )
        for n in (1, 2, 3):
            writer.append(f"subject-MSK-{n:04d}", SubjectRegistered(
                subject_id=f"MSK-{n:04d}", site_id="MSK"))
            writer.append(f"subject-MSK-{n:04d}", SubjectEnrolled(
                subject_id=f"MSK-{n:04d}", cohort_id="DL1-IP", slot=n))
        writer.producer.flush()
    finally:
        writer.close()
    return 7


def verify_json(settings: Settings) -> dict:
    result = trialops("verify", "--json", env=settings.env())
    assert result.returncode == 0, result.stdout + result.stderr
    return orjson.loads(result.stdout)


def flush_settings(bootstrap: str, topic: str) -> tuple[str, str]:
    """(the broker's log.flush.interval.messages, the event topic's flush.messages)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    try:
        broker = admin.describe_configs(
            [ConfigResource("BROKER", "1", ["log.flush.interval.messages"])], config_filter="all"
        )["broker"]["1"]
        topic_configs = admin.describe_configs(
            [ConfigResource("TOPIC", topic, ["flush.messages"])], config_filter="all"
        )["topic"][topic]
    finally:
        admin.close()
    return broker["log.flush.interval.messages"]["value"], topic_configs["flush.messages"]["value"]


def test_stop_and_start_keep_every_event_on_the_same_storage(cluster: LocalKafka) -> None:
    bootstrap, said = start(cluster)
    assert "formatting new storage" in said
    settings = Settings(bootstrap_servers=bootstrap, namespace="keeps")
    ensure_topics(bootstrap, settings.namespace)
    written = write_history(settings)
    topic = event_topic("enrollment", settings.namespace)
    before = values_on(bootstrap, topic)
    assert len(before) == written
    cluster_id = cluster.status()["cluster_id"]
    meta = meta_properties(cluster)

    said = stop(cluster)
    assert "data is kept" in said
    kept = cluster.status()
    assert (kept["cluster_id"], kept["storage"]) == (cluster_id, str(cluster.cluster_dir))

    bootstrap, said = start(cluster)
    assert "reusing its data" in said and "formatting" not in said
    assert cluster.status()["cluster_id"] == cluster_id
    # Started again, the node maps the class archive that its stop, or an earlier node's, left
    # (decision 81).
    assert class_archives_mapped(cluster) == [True]
    # Not re-formatted: the node's storage identity (cluster id, directory id) is the same file.
    assert meta_properties(cluster) == meta
    assert values_on(bootstrap, topic) == before
    report = verify_json(Settings(bootstrap_servers=bootstrap, namespace="keeps"))
    assert (report["ok"], report["events"], report["topic_problems"]) == (True, written, [])
    # A single node still flushes every message, broker-wide and on the event topic itself.
    assert flush_settings(bootstrap, topic) == ("1", "1")


def test_only_an_explicit_wipe_deletes_the_data_and_it_says_so(cluster: LocalKafka) -> None:
    bootstrap, _ = start(cluster)
    ensure_topics(bootstrap, "wiped")
    first_id = cluster.status()["cluster_id"]

    refused = trialops("broker", "wipe", "--name", cluster.name, "--yes")
    assert refused.returncode == 2
    assert "stop it before wiping" in refused.stderr
    assert (cluster.cluster_dir / "node-1" / "data" / "meta.properties").exists()

    stop(cluster)
    not_confirmed = subprocess.run(
        [sys.executable, "-m", "trialops", "broker", "wipe", "--name", cluster.name],
        input="n\n", capture_output=True, text=True, timeout=60,
    )
    assert not_confirmed.returncode == 1
    assert (cluster.cluster_dir / "node-1").exists()

    wiped = trialops("broker", "wipe", "--name", cluster.name, "--yes")
    assert wiped.returncode == 0, wiped.stderr
    assert f"deleted {cluster.cluster_dir / 'node-1'}" in wiped.stderr
    assert not (cluster.cluster_dir / "node-1").exists()

    bootstrap, said = start(cluster)
    assert "formatting new storage" in said
    assert cluster.status()["cluster_id"] != first_id
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert not [t for t in admin.list_topics() if t.startswith("wiped.")]
    finally:
        admin.close()


def test_start_fresh_deletes_the_data_first_and_says_so(cluster: LocalKafka) -> None:
    start(cluster)
    first_id = cluster.status()["cluster_id"]
    stop(cluster)

    _, said = start(cluster, "--fresh")

    assert f"deleted {cluster.cluster_dir / 'node-1'}" in said
    assert "formatting new storage" in said
    assert cluster.status()["cluster_id"] != first_id


def test_kept_data_of_three_nodes_is_not_started_as_one(cluster: LocalKafka) -> None:
    for node_id in (1, 2, 3):
        data = cluster.cluster_dir / f"node-{node_id}" / "data"
        data.mkdir(parents=True)
        (data / "meta.properties").write_text(f"node.id={node_id}\ncluster.id=abc\n")

    refused = trialops("broker", "start", "--name", cluster.name, "--nodes", "1")

    assert refused.returncode == 2
    assert "keeps the data of a 3-node cluster" in refused.stderr
    assert all(Path(cluster.cluster_dir / f"node-{i}" / "data").exists() for i in (1, 2, 3))


def test_a_homes_first_node_records_the_class_archive_that_later_nodes_map(
    tmp_path: Path,
) -> None:
    """Decision 81 from a home of its own (Kafka's jars linked in): its first node records a
    draft, which the next start adopts once the node is gone (here it stopped by SIGTERM,
    without ``stop``: the start finds its state stale), and the next node maps the archive."""
    home = tmp_path / "home"
    home.mkdir()
    shared = fetch_jars()  # the suite's jars: <home>/<version>/libs
    (home / shared.parent.name).symlink_to(shared.parent)
    kafka = LocalKafka(name=f"test-cds-{uuid.uuid4().hex[:8]}", home=home)
    env = {"TRIALOPS_KAFKA_HOME": str(home)}
    archive = archive_path(home, find_java(), classpath(fetch_jars(home)))
    try:
        assert trialops("broker", "start", "--name", kafka.name, env=env).returncode == 0
        (pid,) = [n["pid"] for n in orjson.loads(kafka.state_file.read_bytes())["nodes"]]
        recording = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert any(arg.startswith(b"-XX:ArchiveClassesAtExit=") for arg in recording)
        assert not archive.exists()

        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while not exited(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        started = trialops("broker", "start", "--name", kafka.name, env=env)
        assert started.returncode == 0, started.stderr

        assert archive.exists()
        # the archive, and the answer that this runtime can record one
        assert sorted(p.name for p in archive.parent.iterdir()) == [
            archive.name, f"{archive.stem}.recordable"]
        assert class_archives_mapped(kafka) == [True]
    finally:
        trialops("broker", "stop", "--name", kafka.name, env=env)


def test_a_runtime_without_a_base_class_archive_runs_nodes_that_record_none(
    tmp_path: Path,
) -> None:
    """Some Java builds ship no base class archive, and their JVM, asked to record one, does
    not start: the broker did not start on them at all. Its nodes now run without recording,
    and the launcher remembers that this runtime cannot."""
    home = tmp_path / "home"
    home.mkdir()
    shared = fetch_jars()
    (home / shared.parent.name).symlink_to(shared.parent)
    java = runtime_without_base_archive(find_java(), tmp_path / "jdk")
    kafka = LocalKafka(name=f"test-nocds-{uuid.uuid4().hex[:8]}", home=home)
    env = {"TRIALOPS_KAFKA_HOME": str(home), "JAVA_HOME": str(Path(java).parent.parent)}
    archive = archive_path(home, java, classpath(fetch_jars(home)))
    try:
        started = trialops("broker", "start", "--name", kafka.name, env=env)
        assert started.returncode == 0, started.stderr
        (pid,) = [n["pid"] for n in orjson.loads(kafka.state_file.read_bytes())["nodes"]]
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert command[0] == java.encode()
        assert not any(b"ArchiveClassesAtExit" in arg for arg in command)
        assert (archive.parent / f"{archive.stem}.recordable").read_text().startswith("no")
    finally:
        trialops("broker", "stop", "--name", kafka.name, env=env)
    assert sorted(p.name for p in archive.parent.iterdir()) == [f"{archive.stem}.recordable"]
