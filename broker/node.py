"""The parts of a local Kafka node that are not the cluster's life cycle: its cluster id, its
ports, its storage on disk, its process, and its ``server.properties`` (plain or secure).
``broker.cluster.LocalKafka`` puts them together.

A secure node: every listener is SASL_SSL (TLS with the cluster's own CA and server
certificate, ``broker.tls``); clients authenticate with SASL/SCRAM-SHA-512 inside TLS, the
brokers authorize every request with Kafka's StandardAuthorizer, and only ``User:admin`` is a
super user. The SCRAM credentials of every principal of ``infra.kafka_security.PRINCIPALS`` are
created when the storage is formatted, with random passwords kept in ``kafka-client.json``, the
file ``TRIALOPS_KAFKA_CONFIG`` points at, which also names the CA the clients verify the
brokers' certificate and host name with. The brokers talk to one another over the same SASL_SSL
listener; the controller listener is SASL_SSL too and authenticates the brokers with SASL/PLAIN
as admin (SCRAM credentials live in the metadata log, which the controllers must be able to
read first), so no password crosses even the loopback in the clear. ACLs are per namespace:
``infra.topic_admin.grant``."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from broker.jars import BrokerError, _tail
from broker.tls import ClusterTls, broker_properties
from infra.kafka_security import ADMIN
from infra.processes import pid_alive as _pid_alive

HOST = "127.0.0.1"
SCRAM = "SCRAM-SHA-512"
SECURE_LISTENER = "SASL_SSL"


JVM_OPTIONS_ENV = "TRIALOPS_BROKER_JVM_OPTIONS"
"""Options added to every JVM the launcher starts (each node, the storage formatter), split at
whitespace: the tests start brokers with ``-XX:TieredStopAtLevel=1``, which spends less CPU
compiling at start-up (decision 72)."""


def jvm_options() -> list[str]:
    """``JVM_OPTIONS_ENV``'s options."""
    return os.environ.get(JVM_OPTIONS_ENV, "").split()


def classpath(libs: Path) -> str:
    """Kafka's jars, as every JVM of the launcher names them."""
    return str(libs / "*")


def jvm_command(java: str, log4j: Path, libs: Path) -> list[str]:
    """What every JVM of the launcher starts with: the JVM, ``JVM_OPTIONS_ENV``'s options, the
    logging configuration and Kafka's jars."""
    return [java, *jvm_options(), "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}", "-cp", classpath(libs)]


def node_jvm(
    jvm_common: list[str], sharing: list[str], heap: str, node: dict[str, Any]
) -> list[str]:
    """A node's JVM up to its main class: ``jvm_common`` (``jvm_command``) with the class
    archive's options ``sharing`` (broker/cds.py) and the heap."""
    return [
        jvm_common[0],
        *sharing,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        f"-Dkafka.logs.dir={node['dir']}",
        *jvm_common[1:],
    ]


def node_command(
    jvm_common: list[str], sharing: list[str], heap: str, node: dict[str, Any]
) -> list[str]:
    """The command line of a node's JVM: ``node_jvm`` running Kafka with the node's
    properties."""
    return [*node_jvm(jvm_common, sharing, heap, node), "kafka.Kafka", node["properties"]]


def format_storage(
    jvm_common: list[str],
    sharing: list[str],
    nodes: list[dict[str, Any]],
    cluster_id: str,
    extra: list[str],
) -> None:
    """Format every node's storage as cluster ``cluster_id`` (in parallel: each run is a JVM
    start-up), with ``extra`` arguments to the storage tool (a secure cluster's SCRAM
    credentials) and ``sharing``, the class archive's options."""
    running = []
    for node in nodes:
        cmd = [
            jvm_common[0],
            *sharing,
            *jvm_common[1:],
            "-Xmx256m",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            node["properties"],
            *extra,
        ]
        running.append(
            subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=node["dir"],
            )
        )
    failures = []
    for node, proc in zip(nodes, running, strict=True):
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for p in running:
                p.kill()
                p.wait()
            raise BrokerError("formatting Kafka storage took more than 120s") from None
        if proc.returncode != 0:
            failures.append(
                f"node {node['node_id']}: exit {proc.returncode}\n"
                + _tail(out.decode(errors="replace"))
            )
    if failures:
        raise BrokerError("formatting Kafka storage failed:\n" + "\n".join(failures))


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64 without padding (22 characters),
    never one that begins with ``-``: the storage tool's command line would read it as an
    option and refuse to format (one start in 64 failed that way)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ports_free(ports: list[int]) -> bool:
    """True if every one of ``ports`` can be bound on 127.0.0.1 right now, as the broker binds
    them: with SO_REUSEADDR, so the connections a killed broker left in TIME_WAIT do not move a
    restarted broker to other ports (its clients know the old ones)."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
            except OSError:
                return False
    return True


def _formatted_cluster_id(data_dir: Path) -> str | None:
    """The cluster id in ``data_dir/meta.properties``: None if that storage is unformatted."""
    try:
        text = (data_dir / "meta.properties").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id" and value.strip():
            return value.strip()
    return None


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def _is_our_broker(pid: int, properties: str) -> bool:
    """Guard against pid reuse: the process must be the JVM started with ``properties``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _pid_alive(pid)  # no procfs: best effort
    return properties.encode() in cmdline


def _jaas(module: str, username: str, password: str, **users: str) -> str:
    extra = "".join(f' user_{name}="{secret}"' for name, secret in users.items())
    return f'{module} required username="{username}" password="{password}"{extra};'


def _security_properties(admin_password: str, tls: ClusterTls) -> dict[str, Any]:
    """Listeners, TLS, SASL and authorizer settings of a secure node: every listener SASL_SSL
    with the cluster's certificates, SCRAM for clients and brokers, PLAIN (admin only) between
    brokers and controllers, no ACL means no access."""
    return {
        "inter.broker.listener.name": SECURE_LISTENER,
        "listener.security.protocol.map": (
            f"{SECURE_LISTENER}:{SECURE_LISTENER},CONTROLLER:{SECURE_LISTENER}"
        ),
        **broker_properties(tls),
        "sasl.enabled.mechanisms": SCRAM,
        "sasl.mechanism.inter.broker.protocol": SCRAM,
        f"listener.name.{SECURE_LISTENER.lower()}.{SCRAM.lower()}.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.scram.ScramLoginModule", ADMIN, admin_password
        ),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule",
            ADMIN,
            admin_password,
            **{ADMIN: admin_password},
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def _node_properties(
    node_id: int,
    nodes: list[dict[str, Any]],
    data_dir: Path,
    single: bool,
    admin_password: str | None = None,
    tls: ClusterTls | None = None,
) -> str:
    """A node's server.properties; ``admin_password`` and ``tls`` make it a secure node."""
    if (admin_password is None) != (tls is None):
        raise ValueError("a secure node needs both the admin password and the TLS material")
    me = next(n for n in nodes if n["node_id"] == node_id)
    voters = ",".join(f"{n['node_id']}@{HOST}:{n['controller_port']}" for n in nodes)
    listener = "PLAINTEXT" if admin_password is None else SECURE_LISTENER
    props: dict[str, Any] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "listeners": f"{listener}://{HOST}:{me['port']},CONTROLLER://{HOST}:{me['controller_port']}",
        "advertised.listeners": f"{listener}://{HOST}:{me['port']}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": 1,
        "group.initial.rebalance.delay.ms": 0,
    }
    if admin_password is not None and tls is not None:
        props.update(_security_properties(admin_password, tls))
    if single:
        props.update(
            {
                "offsets.topic.replication.factor": 1,
                "transaction.state.log.replication.factor": 1,
                "transaction.state.log.min.isr": 1,
                # A lone node has no replica to fall back on: fsync every message so an
                # acknowledged event survives a power loss, not just a process crash.
                "log.flush.interval.messages": 1,
            }
        )
    else:
        rf = min(3, len(nodes))
        min_isr = max(1, rf - 1)
        props.update(
            {
                "default.replication.factor": rf,
                "min.insync.replicas": min_isr,
                "offsets.topic.replication.factor": rf,
                "transaction.state.log.replication.factor": rf,
                "transaction.state.log.min.isr": min_isr,
                # No per-message fsync: an acks=all write already sits in the page cache
                # of min.insync.replicas processes, and fsync on every message would make
                # a multi-node cluster on one small host very slow.
            }
        )
    lines = [f"# Generated by broker.cluster for node {node_id}; rewritten on every start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (it may hold passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # start_new_session=True made each JVM the leader of its own process group.
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@contextlib.contextmanager
def _quiet_kafka_logs() -> Iterator[None]:
    """kafka-python logs connection errors while a broker boots; they are expected here."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
