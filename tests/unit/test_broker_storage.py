"""The local broker's kept storage (broker.cluster.LocalKafka.storage, wipe) and its node
settings, without starting a JVM."""

from __future__ import annotations

import json

import pytest

from broker.cluster import BrokerError, LocalKafka, _node_properties
from broker.node import JVM_OPTIONS_ENV, jvm_command


def formatted(kafka: LocalKafka, node_id: int, cluster_id: str = "Abc123") -> None:
    data = kafka.cluster_dir / f"node-{node_id}" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text(
        f"#\nnode.id={node_id}\ndirectory.id=xyz{node_id}\nversion=1\ncluster.id={cluster_id}\n"
    )
    (data / "trialops.enrollment.events-0").mkdir()


def test_a_new_cluster_has_no_storage(tmp_path):
    kafka = LocalKafka(home=tmp_path, name="new")
    assert kafka.storage() is None
    assert kafka.nodes == 1
    assert kafka.status()["storage"] is None


def test_kept_storage_gives_the_cluster_id_the_node_count_and_the_last_ports(tmp_path):
    kafka = LocalKafka(home=tmp_path, name="kept")
    for node_id in (1, 2, 3):
        formatted(kafka, node_id)
    kafka.layout_file.write_text(json.dumps({"ports": [1, 2, 3, 4, 5, 6]}))

    storage = kafka.storage()

    assert storage is not None
    assert (storage["cluster_id"], storage["nodes"], storage["ports"]) == (
        "Abc123", 3, [1, 2, 3, 4, 5, 6]
    )
    # Without --nodes, a cluster starts with as many nodes as its kept data has.
    assert LocalKafka(home=tmp_path, name="kept").nodes == 3
    assert LocalKafka(home=tmp_path, name="kept").status()["cluster_id"] == "Abc123"


def test_an_unformatted_node_directory_is_not_storage(tmp_path):
    kafka = LocalKafka(home=tmp_path, name="half")
    (kafka.cluster_dir / "node-1" / "data").mkdir(parents=True)
    assert kafka.storage() is None


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ({1: "Abc123", 2: "Other9"}, "different clusters"),
        ({1: "Abc123", 3: "Abc123"}, r"node\(s\) \[2\] is missing"),
    ],
)
def test_inconsistent_storage_is_refused_not_reformatted(tmp_path, nodes, message):
    kafka = LocalKafka(home=tmp_path, name="odd")
    for node_id, cluster_id in nodes.items():
        formatted(kafka, node_id, cluster_id)

    with pytest.raises(BrokerError, match=message) as refused:
        kafka.storage()

    assert "trialops broker wipe --name odd" in str(refused.value)


def test_wipe_deletes_every_node_and_the_layout_and_reports_them(tmp_path):
    kafka = LocalKafka(home=tmp_path, name="gone")
    formatted(kafka, 1)
    formatted(kafka, 2)
    kafka.layout_file.write_text("{}")

    deleted = kafka.wipe()

    assert [path.name for path, _size in deleted] == ["node-1", "node-2", "cluster.json"]
    assert all(size > 0 for _path, size in deleted)
    assert kafka.storage() is None
    assert not list(kafka.cluster_dir.glob("node-*"))
    assert kafka.wipe() == []
    assert LocalKafka(home=tmp_path, name="never-started").wipe() == []


def test_a_single_node_flushes_every_message_and_a_cluster_wants_two_in_sync(tmp_path):
    one = [{"node_id": 1, "port": 1, "controller_port": 2}]
    three = [{"node_id": i, "port": 2 * i, "controller_port": 2 * i + 1} for i in (1, 2, 3)]

    single = _node_properties(1, one, tmp_path, single=True).splitlines()
    cluster = _node_properties(1, three, tmp_path, single=False).splitlines()

    assert "log.flush.interval.messages=1" in single
    assert "min.insync.replicas=2" in cluster
    assert "default.replication.factor=3" in cluster


def test_the_jvm_options_of_the_environment_go_before_the_main_class(tmp_path, monkeypatch):
    monkeypatch.setenv(JVM_OPTIONS_ENV, " -XX:TieredStopAtLevel=1   -Xss1m ")
    command = jvm_command("java", tmp_path / "log4j.properties", tmp_path / "libs")
    assert command[:3] == ["java", "-XX:TieredStopAtLevel=1", "-Xss1m"]
    assert command[-2:] == ["-cp", str(tmp_path / "libs" / "*")]
    monkeypatch.delenv(JVM_OPTIONS_ENV)
    assert not any(
        o.startswith("-XX") for o in jvm_command("java", tmp_path / "l", tmp_path / "libs")
    )
