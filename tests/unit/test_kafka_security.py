"""Client security settings from TRIALOPS_KAFKA_CONFIG, the ACLs of a namespace, and the
properties of a secure broker node."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from kafka.admin import ACLOperation, ResourceType

from broker.cluster import _node_properties
from broker.tls import ClusterTls
from events.topics import WRITERS, catalogue, event_topic
from infra.kafka_security import (
    CONFIG_ENV,
    PRINCIPALS,
    KafkaSecurityError,
    faust_credentials,
    kafka_python_settings,
    load,
    write_config,
)
from infra.topic_admin import namespace_acls


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "kafka-client.json"
    write_config(path, {p: f"pw-{p}" for p in PRINCIPALS})
    return path


def test_without_the_variable_clients_connect_plainly(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert kafka_python_settings("worker") == {}
    assert faust_credentials("worker") is None
    assert load() is None


def test_settings_of_a_principal_come_from_the_named_file(monkeypatch, config: Path):
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert kafka_python_settings("enrollment") == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "enrollment",
        "sasl_plain_password": "pw-enrollment",
    }
    credentials = faust_credentials("worker")
    assert (credentials.username, credentials.password) == ("worker", "pw-worker")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_an_unknown_principal_is_an_error_naming_the_file(config: Path):
    with pytest.raises(KafkaSecurityError, match="no credentials for principal 'nobody'"):
        kafka_python_settings("nobody", config)


def test_a_file_others_can_read_is_refused(config: Path):
    config.chmod(0o644)
    with pytest.raises(KafkaSecurityError, match=r"open to group or others.*chmod 600"):
        load(config)


def test_a_missing_file_is_an_error(tmp_path: Path):
    with pytest.raises(KafkaSecurityError, match="cannot read"):
        load(tmp_path / "absent.json")


def test_an_incomplete_file_is_refused(tmp_path: Path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"security_protocol": "PLAINTEXT", "principals": {}}))
    path.chmod(0o600)
    with pytest.raises(KafkaSecurityError, match="security_protocol"):
        load(path)


def _writes(principal: str) -> set[str]:
    return {
        a.resource_pattern.resource_name
        for a in namespace_acls("ns")
        if a.principal == f"User:{principal}"
        and a.operation == ACLOperation.WRITE
        and a.resource_pattern.resource_type == ResourceType.TOPIC
    }


def test_each_writer_may_write_only_its_own_event_topic():
    for context in WRITERS:
        # and its own snapshots (decision 42)
        assert _writes(context) == {event_topic(context, "ns"), f"ns.{context}.snapshots"}


def test_a_writers_snapshots_are_read_by_that_writer_alone():
    for context in WRITERS:
        readers = {
            a.principal for a in namespace_acls("ns")
            if a.resource_pattern.resource_name == f"ns.{context}.snapshots"
            and a.operation == ACLOperation.READ
        }
        assert readers == {f"User:{context}"}


def test_no_one_else_may_write_an_event_topic():
    topics = {spec.name for spec in catalogue("ns")} - {"ns.checkpoints"}
    for principal in ("worker", "auditor"):
        assert not _writes(principal) & topics
    assert _writes("worker") == {"ns-projections", "ns.dlq."}  # prefixes of its own topics


def test_a_secure_node_authenticates_and_authorizes():
    nodes = [{"node_id": 1, "port": 9092, "controller_port": 9093}]
    tls = ClusterTls.under(Path("cluster"))  # the certificates: tests/unit/test_broker_tls.py
    props = _node_properties(
        1, nodes, Path("data"), single=True, admin_password="secret", tls=tls
    )
    assert "listeners=SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in props
    assert "inter.broker.listener.name=SASL_SSL" in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "super.users=User:admin\n" in props
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in props
    plain = _node_properties(1, nodes, Path("data"), single=True)
    assert "PLAINTEXT://127.0.0.1:9092" in plain
    assert "authorizer" not in plain and "SASL" not in plain
