"""``trialops broker start --secure`` on a real broker: TLS, SASL/SCRAM authentication and ACLs.

Every refusal asserted here is the broker's: an authentication failure recorded in its log, or
an authorization error code in its answer (kafka.errors.*AuthorizationFailedError), with raw
kafka-python clients whose only trialops part is ``infra.kafka_security``; except the one a
client makes itself when the broker's certificate does not chain to the CA it trusts. Every
client here speaks TLS to the broker (SASL_SSL) unless the test says otherwise. One single-node
secure broker serves the whole module; it is stopped and deleted afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)

from broker.cluster import LocalKafka
from broker.tls import ensure as ensure_tls
from events.topics import catalogue, dead_letter_topic, event_topic
from infra.kafka_security import (
    CONFIG_ENV,
    PRINCIPALS,
    faust_credentials,
    kafka_python_settings,
    load,
)
from infra.topic_admin import check_event_topics, ensure_topics, worker_group
from tests.integration.helpers import eventually, whole_view

pytestmark = pytest.mark.kafka

NS = "sec"
ENROLLMENT = event_topic("enrollment", NS)
MANUFACTURING = event_topic("manufacturing", NS)
GROUP = worker_group(NS, "0123456789ab")
"""A worker group of one fold version (decision 55): the ACLs name the prefix every version's
group and topics share."""


@dataclass
class Secure:
    kafka: LocalKafka
    bootstrap: str
    config: Path
    start_output: str

    def settings(self, principal: str) -> dict:
        return kafka_python_settings(principal, self.config)

    def broker_log(self) -> str:
        return Path(self.kafka.status()["nodes"][0]["log"]).read_text(errors="replace")


def trialops(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    return subprocess.run(
        [sys.executable, "-m", "trialops", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def secure() -> Iterator[Secure]:
    kafka = LocalKafka(name=f"test-secure-{uuid.uuid4().hex[:8]}")
    try:
        started = trialops("broker", "start", "--name", kafka.name, "--secure", "--namespace", NS)
        assert started.returncode == 0, started.stderr
        with pytest.MonkeyPatch.context() as env:
            # ensure_topics acts as admin, and grants the namespace's ACLs again (a no-op).
            env.setenv(CONFIG_ENV, str(kafka.client_config))
            created = ensure_topics(started.stdout.strip(), NS)
            assert sorted(created) == sorted(spec.name for spec in catalogue(NS))
            assert check_event_topics(started.stdout.strip(), NS) == []
        yield Secure(kafka, started.stdout.strip(), kafka.client_config, started.stderr)
    finally:
        kafka.stop()
        shutil.rmtree(kafka.cluster_dir, ignore_errors=True)


def end_offset(secure: Secure, topic: str) -> int:
    consumer = KafkaConsumer(
        bootstrap_servers=secure.bootstrap, enable_auto_commit=False, **secure.settings("auditor")
    )
    try:
        partition = TopicPartition(topic, 0)
        return consumer.end_offsets([partition])[partition]
    finally:
        consumer.close()


def writer(secure: Secure, principal: str, transactional_id: str) -> KafkaProducer:
    """A producer as the services build theirs: transactional, idempotent, acks=all."""
    return KafkaProducer(
        bootstrap_servers=secure.bootstrap,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        max_block_ms=10_000,
        **secure.settings(principal),
    )


def test_start_says_where_the_client_configuration_is_and_keeps_it_private(secure: Secure):
    assert f"export {CONFIG_ENV}={secure.config}" in secure.start_output
    status = trialops("broker", "status", "--name", secure.kafka.name)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["secure"] is True
    assert info["client_config"] == secure.config.as_posix()
    assert stat.S_IMODE(secure.config.stat().st_mode) == 0o600
    properties = Path(info["nodes"][0]["log"]).with_name("server.properties")
    assert stat.S_IMODE(properties.stat().st_mode) == 0o600  # it holds the admin password
    security = load(secure.config)
    assert security is not None and set(security.credentials) == set(PRINCIPALS)
    assert len({password for _, password in security.credentials.values()}) == len(PRINCIPALS)
    assert security.security_protocol == "SASL_SSL"
    assert security.ssl_cafile == info["ca_cert"]
    tls = Path(info["ca_cert"]).parent
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    for key in ("ca-key.pem", "server.pem"):
        assert stat.S_IMODE((tls / key).stat().st_mode) == 0o600


def test_every_listener_speaks_tls_with_the_clusters_certificate(secure: Secure):
    """Checked with Python's own TLS client, outside kafka-python: the client port and the
    controller port both complete a handshake against the cluster's CA for 127.0.0.1."""
    import socket

    info = json.loads(trialops("broker", "status", "--name", secure.kafka.name).stdout)
    context = ssl.create_default_context(cafile=info["ca_cert"])
    for port in (info["nodes"][0]["port"], info["nodes"][0]["controller_port"]):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_a_client_without_credentials_cannot_produce(secure: Secure):
    """It trusts the cluster's CA and speaks TLS, but does not authenticate."""
    before = end_offset(secure, ENROLLMENT)
    cafile = secure.settings("enrollment")["ssl_cafile"]
    with pytest.raises(KafkaError):
        producer = KafkaProducer(
            bootstrap_servers=secure.bootstrap,
            max_block_ms=3_000,
            bootstrap_timeout_ms=3_000,
            security_protocol="SSL",
            ssl_cafile=cafile,
        )
        try:
            producer.send(ENROLLMENT, b"forged").get(timeout=10)
        finally:
            producer.close(timeout=5)
    assert end_offset(secure, ENROLLMENT) == before
    assert "Unexpected Kafka request of type METADATA during SASL handshake" in secure.broker_log()


def test_a_wrong_password_is_refused_by_the_broker(secure: Secure):
    settings = {**secure.settings("enrollment"), "sasl_plain_password": "guessed"}
    with pytest.raises(KafkaError):
        KafkaProducer(
            bootstrap_servers=secure.bootstrap,
            max_block_ms=3_000,
            bootstrap_timeout_ms=3_000,
            **settings,
        )
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in secure.broker_log()


def test_a_client_that_does_not_trust_the_clusters_ca_cannot_connect(
    secure: Secure, tmp_path: Path
):
    """A writer's right password, sent only after the broker proved its identity: a client
    trusting another CA (one of the same cluster name made elsewhere) or only the system's
    CAs refuses the broker's certificate, so the password never leaves it."""
    before = end_offset(secure, ENROLLMENT)
    foreign = ensure_tls(tmp_path / "elsewhere", secure.kafka.name).ca_cert.as_posix()
    rightful = secure.settings("enrollment")
    for trusted in ({"ssl_cafile": foreign}, {"ssl_cafile": None}):
        with pytest.raises(KafkaError):
            producer = KafkaProducer(
                bootstrap_servers=secure.bootstrap,
                max_block_ms=3_000,
                bootstrap_timeout_ms=3_000,
                **{**rightful, **trusted},
            )
            producer.close(timeout=5)
    assert end_offset(secure, ENROLLMENT) == before


def test_a_plaintext_client_cannot_talk_to_the_sasl_ssl_port(secure: Secure):
    """The right credentials over SASL_PLAINTEXT, as before TLS: the broker's TLS listener
    finds no TLS handshake and closes the connection."""
    before = end_offset(secure, ENROLLMENT)
    settings = {**secure.settings("enrollment"), "security_protocol": "SASL_PLAINTEXT"}
    settings.pop("ssl_cafile")
    settings.pop("ssl_check_hostname")
    with pytest.raises(KafkaError):
        producer = KafkaProducer(
            bootstrap_servers=secure.bootstrap,
            max_block_ms=3_000,
            bootstrap_timeout_ms=3_000,
            **settings,
        )
        producer.close(timeout=5)
    assert end_offset(secure, ENROLLMENT) == before
    assert "(SSL handshake failed)" in secure.broker_log()


@pytest.mark.parametrize("principal", ["worker", "auditor"])
def test_readers_cannot_write_an_event_topic(secure: Secure, principal: str):
    before = end_offset(secure, ENROLLMENT)
    producer = KafkaProducer(
        bootstrap_servers=secure.bootstrap, max_block_ms=10_000, **secure.settings(principal)
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(ENROLLMENT, b"forged").get(timeout=10)
    finally:
        producer.close(timeout=5)
    assert end_offset(secure, ENROLLMENT) == before


def test_a_writer_writes_its_own_topic_transactionally(secure: Secure):
    before = end_offset(secure, ENROLLMENT)
    producer = writer(secure, "enrollment", f"{NS}.enrollment.writer")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        written = producer.send(ENROLLMENT, key=b"S-1", value=b"event").get(timeout=10)
        producer.commit_transaction()
    finally:
        producer.close(timeout=5)
    assert written.topic == ENROLLMENT
    # The event and the commit marker; the commit returns before the broker has written the
    # marker, so the end may be one short for a moment.
    eventually(lambda: end_offset(secure, ENROLLMENT) == before + 2, timeout=10, interval=0.1)


def test_a_writer_is_refused_on_another_contexts_topic(secure: Secure):
    before = end_offset(secure, MANUFACTURING)
    producer = writer(secure, "enrollment", f"{NS}.enrollment.writer")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(MANUFACTURING, key=b"L-1", value=b"forged").get(timeout=10)
        producer.abort_transaction()
    finally:
        producer.close(timeout=5)
    assert end_offset(secure, MANUFACTURING) == before


def test_a_writer_cannot_take_another_writers_transactional_id(secure: Secure):
    producer = writer(secure, "enrollment", f"{NS}.manufacturing.writer")
    try:
        with pytest.raises(TransactionalIdAuthorizationFailedError):
            producer.init_transactions()
    finally:
        producer.close(timeout=5)


def test_the_worker_reads_in_its_group_and_writes_its_own_topics(secure: Secure):
    producer = writer(secure, "enrollment", f"{NS}.enrollment.writer")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(ENROLLMENT, key=b"S-2", value=b"for-the-worker").get(timeout=10)
        producer.commit_transaction()
    finally:
        producer.close(timeout=5)

    consumer = KafkaConsumer(
        ENROLLMENT,
        bootstrap_servers=secure.bootstrap,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **secure.settings("worker"),
    )
    try:
        values: list[bytes] = []
        for _ in range(30):  # polls, not a time limit: each returns what has arrived
            for records in consumer.poll(timeout_ms=1000).values():
                values += [r.value for r in records]
            if b"for-the-worker" in values:
                break
        assert b"for-the-worker" in values
        consumer.commit()
        assert consumer.committed(TopicPartition(ENROLLMENT, 0)) == end_offset(secure, ENROLLMENT)
    finally:
        consumer.close()

    changelog = f"{GROUP}-applied-seq-changelog"
    dead_letters = dead_letter_topic(worker_group(NS), NS)
    admin = KafkaAdminClient(bootstrap_servers=secure.bootstrap, **secure.settings("worker"))
    try:
        admin.create_topics([NewTopic(t, 1, 1) for t in (changelog, dead_letters)])
        with pytest.raises(TopicAuthorizationFailedError):
            admin.create_topics([NewTopic(f"{NS}.enrollment.events-shadow", 1, 1)])
    finally:
        admin.close()
    worker = KafkaProducer(
        bootstrap_servers=secure.bootstrap, acks="all", **secure.settings("worker")
    )
    try:
        for topic in (changelog, dead_letters):
            assert worker.send(topic, key=b"k", value=b"v").get(timeout=10).topic == topic
    finally:
        worker.close(timeout=5)


def test_faust_credentials_reach_aiokafka(secure: Secure):
    """The worker's Faust credentials, turned into aiokafka settings by Faust itself, read an
    event topic; without them aiokafka is refused."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as AIOPartition
    from aiokafka.errors import KafkaError as AIOKafkaError
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    async def end(**auth: object) -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=secure.bootstrap, request_timeout_ms=5_000, **auth
        )
        try:
            await consumer.start()
            partition = AIOPartition(ENROLLMENT, 0)
            return (await consumer.end_offsets([partition]))[partition]
        finally:
            await consumer.stop()

    auth = credentials_to_aiokafka_auth(faust_credentials("worker", secure.config))
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["ssl_context"].check_hostname is True
    assert asyncio.run(end(**auth)) == end_offset(secure, ENROLLMENT)
    with pytest.raises(AIOKafkaError):
        asyncio.run(end())
    untrusting = {**auth, "ssl_context": ssl.create_default_context()}  # system CAs only
    with pytest.raises(AIOKafkaError):
        asyncio.run(end(**untrusting))



def test_the_whole_stack_runs_on_the_secure_broker_each_part_as_its_principal(
    secure: Secure, tmp_path, monkeypatch
):
    """Services (one writer principal per context), the worker (Faust, as "worker") and the
    replay (as "auditor") each take their credentials from TRIALOPS_KAFKA_CONFIG."""
    from audit.replay import replay
    from clients.http import call, get_bytes
    from infra.settings import Settings
    from projections.base import to_json
    from tests.conftest import free_port
    from trialops.stack import Stack

    monkeypatch.setenv(CONFIG_ENV, str(secure.config))
    settings = Settings(bootstrap_servers=secure.bootstrap, namespace="secstack")
    stack = Stack(settings, tmp_path, service_port=free_port(), web_port=free_port(),
                  say=lambda _m: None)
    stack.start(timeout=120)
    try:
        status, answer = call(
            "POST", f"{stack.service_url}/enrollment/subjects",
            {"subject_id": "MSK-0401", "site_id": "MSK"}, token="demo-site_coordinator",
        )
        assert status == 201, answer
        position = answer["events"][0]["position"]
        url = f"{stack.projections_url}/projections/patient-timeline"
        live = get_bytes(
            f"{url}?wait_for={position['topic']}:0:{position['offset']}&timeout=60",
            token="demo-auditor",
        )
        assert b"MSK-0401" in live
        assert to_json(replay(settings, "patient-timeline")) == whole_view(
            url, token="demo-auditor"
        )
    finally:
        stack.stop()
