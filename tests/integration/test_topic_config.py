"""Event topics that cannot lose events (issue 9, finding 8): created with min(3, brokers)
replicas and, replicated, ``min.insync.replicas=2`` without any environment variable; an
existing event topic that could lose events (finite retention, compaction, one replica on a
cluster) makes ``trialops verify`` and ``trialops topics create`` exit 1 naming the topic and
the setting. On the session's broker and on one three-node cluster shared by this module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import orjson
import pytest
from kafka.admin import ConfigResource, KafkaAdminClient

from broker.cluster import LocalKafka
from events.enrollment import SubjectRegistered
from events.topics import catalogue, event_topic
from infra.settings import Settings
from infra.topic_admin import check_event_topics, ensure_topics
from tests.integration.helpers import eventually
from tests.integration.raw_events import RawWriter

pytestmark = pytest.mark.kafka

WEEK_MS = "604800000"


def trialops(*args: str, settings: Settings, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **settings.env()}
    environment.pop("TRIALOPS_REPLICATION_FACTOR")  # the default, unless a test sets it
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "trialops", *args],
        env=environment, capture_output=True, text=True, timeout=180,
    )


def admin_for(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)


def create_raw(bootstrap: str, topic: str, replication: int = 1, **configs: str) -> None:
    """A topic made by someone else's admin client, before trialops gets to it."""
    admin = admin_for(bootstrap)
    try:
        admin.create_topics(
            {topic: {"num_partitions": 1, "replication_factor": replication, "configs": configs}},
            wait_for_metadata=True,
        )
    finally:
        admin.close()


def described(bootstrap: str, topic: str) -> tuple[list[int], dict[str, str]]:
    """(replica counts of each partition, the topic's effective settings)."""
    admin = admin_for(bootstrap)
    try:
        (info,) = admin.describe_topics([topic])
        configs = admin.describe_configs(
            [ConfigResource("TOPIC", topic, ["min.insync.replicas", "retention.ms",
                                              "cleanup.policy", "flush.messages"])],
            config_filter="all",
        )["topic"][topic]
    finally:
        admin.close()
    return (
        [len(p["replica_nodes"]) for p in info["partitions"]],
        {key: entry["value"] for key, entry in configs.items()},
    )


# -- on the session's single broker --------------------------------------------------------


def test_a_week_of_retention_on_an_event_topic_makes_verify_exit_1(settings):
    topic = event_topic("enrollment", settings.namespace)
    create_raw(settings.bootstrap_servers, topic, **{"retention.ms": WEEK_MS})
    created = ensure_topics(settings.bootstrap_servers, settings.namespace)
    assert topic not in created and len(created) == len(catalogue()) - 1

    result = trialops("verify", settings=settings)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{topic}: retention.ms is {WEEK_MS}, needs -1" in result.stdout
    assert "no problems found" not in result.stdout
    as_json = trialops("verify", "--json", settings=settings)
    assert as_json.returncode == 1
    report = orjson.loads(as_json.stdout)
    assert report["ok"] is False
    assert [(p["topic"], p["key"], p["found"], p["needed"]) for p in report["topic_problems"]] == [
        (topic, "retention.ms", WEEK_MS, "-1")
    ]


def test_a_compacted_or_size_limited_event_topic_is_named_with_its_setting(settings):
    safety = event_topic("safety", settings.namespace)
    dosing = event_topic("dosing", settings.namespace)
    create_raw(settings.bootstrap_servers, safety, **{"cleanup.policy": "compact,delete",
                                                      "retention.ms": "-1"})
    create_raw(settings.bootstrap_servers, dosing, **{"retention.ms": "-1",
                                                      "retention.bytes": "1073741824"})
    ensure_topics(settings.bootstrap_servers, settings.namespace)

    found = {(p.topic, p.key, p.found) for p in check_event_topics(
        settings.bootstrap_servers, settings.namespace)}

    # flush.messages of these two is the broker's default: "1" on the project's own broker,
    # a problem on one that does not flush every message (then named as well).
    assert {f for f in found if f[1] != "flush.messages"} == {
        (safety, "cleanup.policy", "compact,delete"),
        (dosing, "retention.bytes", "1073741824"),
    }
    assert {f[0] for f in found if f[1] == "flush.messages"} <= {safety, dosing}
    result = trialops("topics", "create", settings=settings)
    assert result.returncode == 1
    assert f"{safety}: cleanup.policy is compact,delete, needs delete" in result.stderr
    assert f"{dosing}: retention.bytes is 1073741824, needs -1" in result.stderr


def test_topics_made_by_trialops_verify_clean_and_flush_every_message_on_one_broker(settings):
    result = trialops("topics", "create", settings=settings)
    assert result.returncode == 0, result.stdout + result.stderr

    replicas, configs = described(settings.bootstrap_servers,
                                  event_topic("enrollment", settings.namespace))
    assert replicas == [1]
    assert (configs["retention.ms"], configs["cleanup.policy"]) == ("-1", "delete")
    assert configs["flush.messages"] == "1"
    report = trialops("verify", "--json", settings=settings)
    assert report.returncode == 0, report.stdout + report.stderr
    assert orjson.loads(report.stdout)["topic_problems"] == []


def test_a_missing_event_topic_is_a_problem(settings):
    ensure_topics(settings.bootstrap_servers, settings.namespace)
    admin = admin_for(settings.bootstrap_servers)
    missing = event_topic("safety", settings.namespace)
    try:
        admin.delete_topics([missing])
    finally:
        admin.close()

    problems = eventually(
        lambda: check_event_topics(settings.bootstrap_servers, settings.namespace), timeout=30
    )

    assert [(p.topic, p.key, p.found) for p in problems] == [(missing, "topic", "missing")]


# -- on a three-node cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[LocalKafka]:
    kafka = LocalKafka(name=f"test-topics-{uuid.uuid4().hex[:8]}", nodes=3, heap="320m")
    try:
        kafka.start(timeout=90)
        yield kafka
    finally:
        kafka.stop()
        shutil.rmtree(kafka.cluster_dir, ignore_errors=True)


def test_on_three_nodes_topics_get_three_replicas_and_min_isr_2_without_any_setting(
    three_nodes: LocalKafka,
):
    settings = Settings(
        bootstrap_servers=three_nodes.require_bootstrap_servers(), namespace="three"
    )

    result = trialops("topics", "create", settings=settings)

    assert result.returncode == 0, result.stdout + result.stderr
    for spec in catalogue(settings.namespace):
        replicas, configs = described(settings.bootstrap_servers, spec.name)
        assert replicas == [3], spec.name
        assert configs["min.insync.replicas"] == "2", spec.name
        assert configs["retention.ms"] == "-1", spec.name
    assert check_event_topics(settings.bootstrap_servers, settings.namespace) == []

    # Stopped and started again, the cluster serves the same events on the same replicas.
    topic = event_topic("enrollment", settings.namespace)
    writer = RawWriter(settings)
    try:
        for n in range(1, 6):
            writer.append(f"subject-MSK-{n:04d}",
                          SubjectRegistered(subject_id=f"MSK-{n:04d}", site_id="MSK"))
    finally:
        writer.close()
    cluster_id = three_nodes.status()["cluster_id"]
    three_nodes.stop()
    three_nodes.start(timeout=90)
    assert three_nodes.status()["cluster_id"] == cluster_id
    after = Settings(bootstrap_servers=three_nodes.require_bootstrap_servers(), namespace="three")
    assert eventually(lambda: check_event_topics(after.bootstrap_servers, "three") == [],
                      timeout=30)
    report = trialops("verify", "--json", settings=after)
    assert report.returncode == 0, report.stdout + report.stderr
    assert orjson.loads(report.stdout)["topics"][topic] == 5


def test_on_three_nodes_a_single_replica_event_topic_could_lose_events(three_nodes: LocalKafka):
    settings = Settings(
        bootstrap_servers=three_nodes.require_bootstrap_servers(), namespace="single"
    )

    result = trialops("topics", "create", settings=settings, TRIALOPS_REPLICATION_FACTOR="1")

    assert result.returncode == 1
    enrollment = event_topic("enrollment", settings.namespace)
    assert f"{enrollment}: replication.factor is 1, needs >= 3 on 3 brokers" in result.stderr
    replicas, _ = described(settings.bootstrap_servers, enrollment)
    assert replicas == [1]
