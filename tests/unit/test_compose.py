"""docker-compose.yml cannot run on machines without Docker; at least prove it is valid YAML
of the expected shape and that every command it runs is a real ``trialops`` command."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from trialops.cli import app

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_runs_kafka_in_kraft_mode_and_every_component(compose):
    services = compose["services"]
    assert {"kafka", "topics", "services", "projections", "demo"} <= set(services)
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(map(str, kafka))
    assert str(kafka["KAFKA_LOG_FLUSH_INTERVAL_MESSAGES"]) == "1"


def test_compose_components_point_at_the_compose_broker(compose):
    for name in ("topics", "services", "projections", "demo"):
        env = compose["services"][name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name


@pytest.mark.parametrize(
    "name",
    ["topics", "services", "services-standby", "projections", "projections-standby", "demo"],
)
def test_compose_commands_are_real_trialops_commands(compose, name):
    command = compose["services"][name]["command"]
    # The words before the first option are the sub-command path.
    path = list(itertools.takewhile(lambda word: not word.startswith("-"), command))
    options = [word for word in command if word.startswith("--")]
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output, f"{name}: {option} is not an option of {path}"


def test_compose_publishes_ports_on_the_loopback_interface_only(compose):
    published = {
        name: service.get("ports", []) for name, service in compose["services"].items()
    }
    assert published["services"] and published["projections"]
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


@pytest.mark.parametrize("name", ["services", "projections"])
def test_compose_asks_for_the_demo_users_explicitly(compose, name):
    assert "--demo" in compose["services"][name]["command"]


def test_compose_makes_the_writers_keys_before_anything_writes(compose):
    services = compose["services"]
    assert services["keys"]["command"][:2] == ["keys", "init"]
    assert services["topics"]["depends_on"]["keys"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("services", "projections"):
        environment = services[name]["environment"]
        assert environment["TRIALOPS_KEYRING"].startswith(services["keys"]["command"][2])
        assert any(v.endswith(":/home/trialops/keys") for v in services[name]["volumes"])


CLUSTER = COMPOSE.with_name("docker-compose.cluster.yml")


def test_the_cluster_file_runs_three_brokers_each_a_controller_of_one_quorum():
    cluster = yaml.safe_load(CLUSTER.read_text())["services"]
    nodes = {name: cluster[name]["environment"] for name in ("kafka", "kafka-2", "kafka-3")}
    assert sorted(int(env["KAFKA_NODE_ID"]) for env in nodes.values()) == [1, 2, 3]
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in nodes.values()}
    assert voters == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert len({env["CLUSTER_ID"] for env in nodes.values()}) == 1
    for name, env in nodes.items():
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        # Kafka's own logs as safe as the events: three replicas, two in sync
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 3
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 2
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2


def test_on_the_cluster_every_component_knows_all_three_brokers_and_replicates_thrice(compose):
    cluster = yaml.safe_load(CLUSTER.read_text())["services"]
    ours = [name for name, service in compose["services"].items() if name != "kafka"]
    for name in ours:
        env = cluster[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092,kafka-2:9092,kafka-3:9092", name
        assert env["TRIALOPS_REPLICATION_FACTOR"] == "3", name
    assert set(cluster["topics"]["depends_on"]) == {"kafka", "kafka-2", "kafka-3"}


def test_the_standby_worker_advertises_its_own_address():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("projections", "projections-standby"):
        command = services[name]["command"]
        advertised = command[command.index("--advertised-url") + 1]
        assert advertised == f"http://{name}:6066"


def test_the_two_instances_of_the_services_advertise_their_own_addresses():
    # Each passes requests to the other at the address it sends the group (decision 59)
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("services", "services-standby"):
        command = services[name]["command"]
        advertised = command[command.index("--advertised-url") + 1]
        assert advertised == f"http://{name}:8081"
    assert services["services-standby"]["profiles"] == ["standby"]


def test_several_trials_are_asked_for_from_the_environment_and_default_to_one(compose):
    env = compose["services"]["services"]["environment"]
    assert env["TRIALOPS_TRIALS"] == "${TRIALOPS_TRIALS:-}"
    assert env["TRIALOPS_PARTITIONS"] == "${TRIALOPS_PARTITIONS:-1}"
