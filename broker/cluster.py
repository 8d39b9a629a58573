"""Local Apache Kafka brokers for development and integration tests, without Docker.

The broker jars come from Maven Central (fetched once with ``mvn`` into a cache directory)
and run on the local JVM in KRaft mode: every node is a combined broker + controller,
listening on free ports of 127.0.0.1.

Layout under the home directory (``default_home()``)::

    <version>/pom.xml            what mvn resolves
    <version>/libs/*.jar         the broker class path
    <version>/.complete          marker: the libs directory is complete
    clusters/<name>/state.json   pids and ports of a running cluster
    clusters/<name>/cluster.json the cluster id, node count and last ports of its storage
    clusters/<name>/node-<id>/   server.properties, data/, broker.log
    clusters/<name>/kafka-client.json  a secure cluster's client configuration (mode 0600)
    clusters/<name>/tls/         a secure cluster's CA and server certificate (``broker.tls``)

A cluster started by one process can be inspected and stopped by another one through
``state.json``. The data is kept: stopping a cluster and starting it again under the same
name reuses its storage and its cluster id (and its ports when they are still free). Only a
cluster whose storage is new is formatted, with a new cluster id; ``wipe()`` (``trialops
broker wipe``, ``trialops broker start --fresh``) deletes the storage, and says what it deleted.

A cluster started with ``secure=True`` (``trialops broker start --secure``) stays secure for the
life of its storage; ``broker.node`` says how (SASL/SCRAM over TLS, ACLs, the client file), and
``broker.tls`` how its certificates are made and kept (they live and die with its storage).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from importlib import resources
from pathlib import Path
from typing import Any

from broker.cds import adopt, archive_path, node_options, recordable
from broker.jars import (
    KAFKA_VERSION,
    BrokerError,
    Progress,
    _file_tail,
    _locked,
    _stderr,
    default_home,
    fetch_jars,
    find_java,
)
from broker.node import (
    HOST,
    _formatted_cluster_id,
    _free_ports,
    _is_our_broker,
    _node_properties,
    _pid_alive,
    _port_open,
    _ports_free,
    _quiet_kafka_logs,
    _signal_group,
    _size,
    _write_private,
    classpath,
    format_storage,
    jvm_command,
    jvm_options,
    new_cluster_id,
    node_command,
    node_jvm,
)
from broker.security import cluster_security, scram_format_arguments
from broker.tls import ClusterTls
from infra.kafka_security import ADMIN, kafka_python_settings

__all__ = ["KAFKA_VERSION", "BrokerError", "LocalKafka", "default_home", "fetch_jars", "find_java"]

CLIENT_CONFIG = "kafka-client.json"


class LocalKafka:
    """A local Kafka cluster of ``nodes`` combined broker+controller JVMs (KRaft mode).

    >>> with LocalKafka(name="demo") as kafka:          # doctest: +SKIP
    ...     produce_to(kafka.bootstrap_servers)
    """

    def __init__(
        self,
        home: Path | None = None,
        name: str = "default",
        nodes: int | None = None,
        version: str = KAFKA_VERSION,
        heap: str = "384m",
        *,
        secure: bool | None = None,
        progress: Progress = _stderr,
    ) -> None:
        if nodes is not None and nodes < 1:
            raise ValueError("nodes must be >= 1")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid cluster name {name!r}")
        self.home = Path(home) if home is not None else default_home()
        self.name = name
        self.requested_nodes = nodes
        """Node count asked for; None: as many as the kept storage has (1 for new storage)."""
        self.version = version
        self.heap = heap
        self.progress = progress
        self.cluster_dir = self.home / "clusters" / name
        self.state_file = self.cluster_dir / "state.json"
        self.layout_file = self.cluster_dir / "cluster.json"
        self.lock_file = self.cluster_dir / ".lock"  # serialises start/stop of this cluster
        self.client_config = self.cluster_dir / CLIENT_CONFIG
        """A secure cluster's client configuration (``TRIALOPS_KAFKA_CONFIG``)."""
        self.requested_secure = secure
        """Security asked for; None: as the kept storage was formatted (plain for new storage)."""
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        stored = self._stored_nodes_or_none()
        self.nodes = nodes if nodes is not None else (stored or 1)

    # -- storage ---------------------------------------------------------------------

    def _stored_nodes_or_none(self) -> int | None:
        try:
            storage = self.storage()
        except BrokerError:
            return None
        return storage["nodes"] if storage else None

    def storage(self) -> dict[str, Any] | None:
        """The kept storage: ``{"cluster_id", "nodes", "ports", "dir"}``, or None when there is
        none (a new cluster). Raises BrokerError when it is inconsistent (nodes of different
        clusters, or a node's storage missing beside the others')."""
        node_dirs = {}
        for path in self.cluster_dir.glob("node-*"):
            suffix = path.name.removeprefix("node-")
            if suffix.isdigit():
                node_dirs[int(suffix)] = path
        formatted = {
            node_id: cluster_id
            for node_id, path in node_dirs.items()
            if (cluster_id := _formatted_cluster_id(path / "data")) is not None
        }
        if not formatted:
            return None
        wipe_hint = f"'trialops broker wipe --name {self.name}' deletes it to start over"
        if len(set(formatted.values())) > 1:
            raise BrokerError(
                f"broker '{self.name}': its nodes hold storage of different clusters "
                f"({formatted}); {wipe_hint}"
            )
        count = max(formatted)
        missing = [i for i in range(1, count + 1) if i not in formatted]
        if missing:
            raise BrokerError(
                f"broker '{self.name}': the storage of node(s) {missing} is missing beside that "
                f"of node(s) {sorted(formatted)} in {self.cluster_dir}; {wipe_hint}"
            )
        try:
            layout = json.loads(self.layout_file.read_text())
        except (OSError, ValueError):
            layout = {}
        ports = layout.get("ports")
        return {
            "cluster_id": next(iter(formatted.values())),
            "nodes": count,
            "ports": ports if isinstance(ports, list) and len(ports) == 2 * count else None,
            "dir": str(self.cluster_dir),
            "secure": layout.get("secure") is True,
        }

    def wipe(self) -> list[tuple[Path, int]]:
        """Delete the cluster's storage (every node's data and log); return what was deleted,
        with its size in bytes. Refuses while the cluster runs."""
        if not self.cluster_dir.exists():
            return []
        with _locked(self.lock_file):
            state = self._read_state()
            if state is not None and any(self._node_alive(n) for n in state["nodes"]):
                raise BrokerError(
                    f"broker '{self.name}' is running at {state['bootstrap_servers']}; "
                    "stop it before wiping its data"
                )
            doomed = sorted(self.cluster_dir.glob("node-*"))
            tls_dir = ClusterTls.under(self.cluster_dir).directory
            if tls_dir.exists():
                doomed.append(tls_dir)
            doomed += [
                f for f in (self.layout_file, self.state_file, self.client_config) if f.exists()
            ]
            deleted = []
            for path in doomed:
                size = _size(path)
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                deleted.append((path, size))
        return deleted

    # -- state -----------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def _node_alive(self, node: dict[str, Any]) -> bool:
        if not node.get("pid"):
            return False
        proc = self._procs.get(node["node_id"])
        if proc is not None and proc.pid == node["pid"]:
            return proc.poll() is None
        return _pid_alive(node["pid"]) and _is_our_broker(node["pid"], node["properties"])

    @property
    def bootstrap_servers(self) -> str | None:
        """``host:port,...`` of the cluster if it was started (by any process), else None."""
        state = self._read_state()
        return state["bootstrap_servers"] if state else None

    def require_bootstrap_servers(self) -> str:
        """``bootstrap_servers`` of a cluster that was started; ``BrokerError`` if it was not."""
        servers = self.bootstrap_servers
        if servers is None:
            raise BrokerError(f"broker '{self.name}' is not running")
        return servers

    def status(self) -> dict[str, Any]:
        state = self._read_state()
        if state is None:
            try:
                kept = self.storage()
            except BrokerError:
                kept = None
            return {
                "name": self.name,
                "running": False,
                "bootstrap_servers": None,
                "nodes": [],
                "storage": kept["dir"] if kept else None,
                "cluster_id": kept["cluster_id"] if kept else None,
                "secure": bool(kept and kept["secure"]),
                "client_config": self._client_config_if(bool(kept and kept["secure"])),
                "ca_cert": self._ca_cert_if(bool(kept and kept["secure"])),
            }
        nodes = [
            {
                "node_id": n["node_id"],
                "pid": n["pid"],
                "port": n["port"],
                "controller_port": n["controller_port"],
                "alive": self._node_alive(n),
                "log": n["log"],
            }
            for n in state["nodes"]
        ]
        return {
            "name": self.name,
            "running": any(n["alive"] for n in nodes),
            "storage": self.cluster_dir.as_posix(),
            "bootstrap_servers": state["bootstrap_servers"],
            "version": state.get("version"),
            "cluster_id": state.get("cluster_id"),
            "secure": state.get("secure", False),
            "client_config": self._client_config_if(state.get("secure", False)),
            "ca_cert": self._ca_cert_if(state.get("secure", False)),
            "nodes": nodes,
        }

    def _client_config_if(self, secure: bool) -> str | None:
        return self.client_config.as_posix() if secure else None

    def _ca_cert_if(self, secure: bool) -> str | None:
        return ClusterTls.under(self.cluster_dir).ca_cert.as_posix() if secure else None

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> str:
        """Start the cluster on its kept storage (formatting it only when it is new); return
        its bootstrap servers once it serves."""
        started = time.monotonic()
        libs = fetch_jars(self.home, self.version, self.progress)
        java = find_java()
        deadline = time.monotonic() + timeout  # the (first-run) download does not count
        with _locked(self.lock_file):
            previous = self._read_state()
            if previous is not None:
                if any(self._node_alive(n) for n in previous["nodes"]):
                    raise BrokerError(
                        f"broker '{self.name}' is already running at "
                        f"{previous['bootstrap_servers']} (pids "
                        f"{', '.join(str(n['pid']) for n in previous['nodes'])}); stop it "
                        f"with 'trialops broker stop --name {self.name}'"
                    )
                self._adopt_drafts(previous)  # its nodes are gone: keep what they recorded
                self.state_file.unlink(missing_ok=True)  # stale: left by a crash
            stored = self.storage()
            if stored is None:
                # Nothing formatted: only what a start that died before formatting left.
                for old in self.cluster_dir.glob("node-*"):
                    shutil.rmtree(old)
                self.nodes = self.requested_nodes or 1
            elif self.requested_nodes not in (None, stored["nodes"]):
                raise BrokerError(
                    f"broker '{self.name}' keeps the data of a {stored['nodes']}-node cluster; "
                    f"start it with {stored['nodes']} nodes, or delete its data with "
                    f"'trialops broker wipe --name {self.name}'"
                )
            else:
                self.nodes = stored["nodes"]
            admin_password, tls = self._security(stored)
            log4j = self.cluster_dir / "log4j.properties"
            log4j.write_bytes(
                resources.files("broker").joinpath("kafka/log4j.properties").read_bytes()
            )
            if stored is not None and stored["ports"] and _ports_free(stored["ports"]):
                ports = stored["ports"]
            else:
                ports = _free_ports(2 * self.nodes)
            nodes: list[dict[str, Any]] = []
            for i in range(self.nodes):
                node_dir = self.cluster_dir / f"node-{i + 1}"
                nodes.append(
                    {
                        "node_id": i + 1,
                        "port": ports[2 * i],
                        "controller_port": ports[2 * i + 1],
                        "dir": str(node_dir),
                        "properties": str(node_dir / "server.properties"),
                        "log": str(node_dir / "broker.log"),
                        "pid": None,
                    }
                )
            for node in nodes:
                node_dir = Path(node["dir"])
                node_dir.mkdir(exist_ok=True)
                _write_private(
                    Path(node["properties"]),
                    _node_properties(
                        node["node_id"],
                        nodes,
                        node_dir / "data",
                        single=self.nodes == 1,
                        admin_password=admin_password,
                        tls=tls,
                    ),
                )
            jvm_common = jvm_command(java, log4j, libs)
            archive = archive_path(self.home, java, classpath(libs))
            sharing = {"archive": str(archive), "java": java, "classpath": classpath(libs)}
            if stored is None:
                cluster_id = new_cluster_id()
                self.progress(f"broker '{self.name}': formatting new storage ({cluster_id})")
                secure = admin_password is not None
                format_storage(
                    jvm_common,
                    # The formatter maps the nodes' class archive when there is one (it shares
                    # many of their classes) but records none (its classes are not theirs).
                    node_options(archive, jvm_options())[0] if archive.exists() else [],
                    nodes,
                    cluster_id,
                    scram_format_arguments(self.client_config) if secure else [],
                )
            else:
                cluster_id = stored["cluster_id"]
                self.progress(
                    f"broker '{self.name}': reusing its data ({cluster_id}, {self.cluster_dir})"
                )
            layout = {
                "cluster_id": cluster_id,
                "nodes": self.nodes,
                "ports": ports,
                "secure": admin_password is not None,
            }
            tmp = self.layout_file.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(layout, indent=2) + "\n")
            os.replace(tmp, self.layout_file)
            bootstrap = ",".join(f"{HOST}:{n['port']}" for n in nodes)
            state = {
                "name": self.name,
                "version": self.version,
                "cluster_id": cluster_id,
                "bootstrap_servers": bootstrap,
                "started_at": time.time(),
                "secure": admin_password is not None,
                "nodes": nodes,
                "class_sharing": sharing,
            }
            try:
                for node in nodes:
                    node["pid"] = self._launch(jvm_common, node, archive)
                    self._write_state(state)  # lets `stop` find the JVMs even if we die here
                self._wait_ready(nodes, deadline)
            except BaseException:
                self._terminate(nodes, 10.0)
                for node in nodes:  # what a start that failed loaded is not worth keeping
                    if node.get("cds_draft"):
                        Path(node["cds_draft"]).unlink(missing_ok=True)
                self.state_file.unlink(missing_ok=True)
                raise
        self.progress(
            f"broker '{self.name}' ready at {bootstrap} ({time.monotonic() - started:.1f}s)"
        )
        return bootstrap

    def _security(
        self, stored: dict[str, Any] | None
    ) -> tuple[str, ClusterTls] | tuple[None, None]:
        """The admin password and the TLS material of a secure cluster (``(None, None)``: a
        plain one); see ``broker.security.cluster_security``."""
        return cluster_security(
            self.cluster_dir, self.name, self.client_config, stored, self.requested_secure
        )

    def _launch(self, jvm_common: list[str], node: dict[str, Any], archive: Path) -> int:
        """Start a node's JVM; it maps the class archive, or records one at its stop
        (``node["cds_draft"]``, for ``stop`` to adopt: broker/cds.py)."""
        sharing, draft = node_options(archive, jvm_options())
        if draft is not None and not recordable(archive, node_jvm(jvm_common, [], self.heap,
                                                                  node)):
            sharing, draft = [], None
        node["cds_draft"] = None if draft is None else str(draft)
        with open(node["log"], "ab") as log:
            proc = subprocess.Popen(
                node_command(jvm_common, sharing, self.heap, node),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=node["dir"],
                start_new_session=True,
            )
        self._procs[node["node_id"]] = proc
        return proc.pid

    def _wait_ready(self, nodes: list[dict[str, Any]], deadline: float) -> None:
        """Until ``deadline``: every node serves metadata and all brokers are unfenced."""
        from kafka.admin import KafkaAdminClient  # heavy import, only needed here

        bootstrap = ",".join(f"{HOST}:{n['port']}" for n in nodes)
        probe_config = {
            "bootstrap_servers": bootstrap,
            "client_id": "trialops-broker-probe",
            "request_timeout_ms": 5000,
            "bootstrap_timeout_ms": 5000,  # kafka-python 3
            "api_version_auto_timeout_ms": 5000,  # kafka-python 2
        }
        # kafka-python rejects unknown settings, and they differ between its versions.
        probe_config = {
            k: v for k, v in probe_config.items() if k in KafkaAdminClient.DEFAULT_CONFIG
        }
        if self.client_config.exists() and (self._read_state() or {}).get("secure"):
            probe_config.update(kafka_python_settings(ADMIN, self.client_config))
        last_problem = "no broker port open yet"
        while True:
            for node in nodes:
                if not self._node_alive(node):
                    raise BrokerError(
                        f"broker '{self.name}' node {node['node_id']} exited during start-up; "
                        f"tail of {node['log']}:\n{_file_tail(Path(node['log']))}"
                    )
            if all(_port_open(n["port"]) for n in nodes):
                admin = None
                try:
                    with _quiet_kafka_logs():
                        admin = KafkaAdminClient(**probe_config)
                        cluster = admin.describe_cluster()
                        admin.list_topics()
                    active = [
                        b for b in cluster.get("brokers", []) if not b.get("is_fenced", False)
                    ]
                    if len(active) >= len(nodes):
                        return
                    last_problem = f"{len(active)} of {len(nodes)} brokers registered"
                except Exception as exc:
                    last_problem = f"metadata request failed: {exc!r}"
                finally:
                    if admin is not None:
                        with contextlib.suppress(Exception):
                            admin.close()
            if time.monotonic() >= deadline:
                logs = "\n".join(
                    f"--- tail of {n['log']}:\n{_file_tail(Path(n['log']), 20)}" for n in nodes
                )
                raise BrokerError(
                    f"broker '{self.name}' not ready before the timeout ({last_problem})\n{logs}"
                )
            time.sleep(0.25)

    def _terminate(self, nodes: list[dict[str, Any]], timeout: float) -> None:
        """SIGTERM each node's process group, wait up to ``timeout``, then SIGKILL."""
        targets = [n for n in nodes if n.get("pid") and self._node_alive(n)]
        for node in targets:
            _signal_group(node["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self._node_alive(n) for n in targets):
            time.sleep(0.1)
        for node in targets:
            if self._node_alive(node):
                _signal_group(node["pid"], signal.SIGKILL)
        for node in targets:
            self._reap(node, 10.0)

    def _reap(self, node: dict[str, Any], timeout: float) -> None:
        proc = self._procs.pop(node["node_id"], None)
        if proc is not None and proc.pid == node["pid"]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        while _pid_alive(node["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node (also one started by another process); no-op if not running. The
        data stays: the next ``start`` under this name serves it again."""
        if not self.state_file.exists():
            return
        with _locked(self.lock_file):
            state = self._read_state()
            if state is None:
                return
            if any(self._node_alive(n) for n in state["nodes"]):
                self._terminate(state["nodes"], timeout)
                self.progress(
                    f"broker '{self.name}' stopped; its data is kept in {self.cluster_dir}"
                )
            self._adopt_drafts(state)
            self.state_file.unlink(missing_ok=True)

    def _adopt_drafts(self, state: dict[str, Any]) -> None:
        """Adopt, or delete, the class archives that ``state``'s nodes, which have exited,
        recorded (broker/cds.py)."""
        sharing = state.get("class_sharing")
        for node in state["nodes"]:
            if sharing and node.get("cds_draft"):
                adopt(Path(node["cds_draft"]), Path(sharing["archive"]), sharing["java"],
                      sharing["classpath"])

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as in a crash; the others keep running."""
        state = self._read_state()
        node = next((n for n in (state or {}).get("nodes", []) if n["node_id"] == node_id), None)
        if node is None:
            raise BrokerError(f"broker '{self.name}' has no running node {node_id}")
        if self._node_alive(node):
            _signal_group(node["pid"], signal.SIGKILL)
            self._reap(node, 10.0)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalKafka(name={self.name!r}, nodes={self.nodes}, version={self.version!r})"


