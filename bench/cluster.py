"""The three-node local cluster bench_instances measures on (the project's launcher,
broker/cluster.py), and a fresh namespace on it with topics as a cluster needs them."""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Iterator

from kafka.admin import KafkaAdminClient

from bench.common import TRIAL_ID, say
from bench.keys import enrollment_signer
from infra.settings import Settings
from infra.topic_admin import check_event_topics, ensure_topics

NODES = 3
REPLICAS = 3
"""Every topic of the run at 3 replicas; event topics get ``min.insync.replicas=2`` with it."""


@contextlib.contextmanager
def three_node_cluster(heap: str) -> Iterator[str]:
    """A three-node KRaft cluster of the project's launcher on new storage, deleted on exit."""
    from broker.cluster import LocalKafka

    kafka = LocalKafka(name=f"bench-instances-{uuid.uuid4().hex[:8]}", nodes=NODES, heap=heap)
    say(f"starting a {NODES}-node local cluster '{kafka.name}' (heap {heap} a node) ...")
    try:
        bootstrap = kafka.start(timeout=180)
        deadline = time.monotonic() + 90
        while (seen := _brokers_seen(bootstrap)) < NODES:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen} of {NODES} brokers in the cluster after 90 s")
            time.sleep(1)
        say(f"  {NODES} brokers at {bootstrap}")
        yield bootstrap
    finally:
        kafka.stop()
        shutil.rmtree(kafka.cluster_dir, ignore_errors=True)


def _brokers_seen(bootstrap: str) -> int:
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="trialops-bench")
    except Exception:  # not every node answers yet
        return 0
    try:
        return len(admin.describe_cluster()["brokers"])
    finally:
        admin.close()


def settle(bootstrap: str, timeout: float = 180) -> None:
    """Wait until every replica of every topic is in sync. The first writer and the first
    group create Kafka's transaction log and offsets topic (50 partitions each, 3 replicas):
    until their replicas have caught up the brokers are busy with it, and a step measured then
    measures the cluster's start."""
    deadline = time.monotonic() + timeout
    while (behind := _replicas_behind(bootstrap)) and time.monotonic() < deadline:
        time.sleep(1)
    if behind:
        say(f"  still {behind} partition(s) with a replica out of sync after {timeout:.0f} s")


def _replicas_behind(bootstrap: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="trialops-bench")
    try:
        described = admin.describe_topics(admin.list_topics())
    finally:
        admin.close()
    return sum(1 for topic in described for p in topic["partitions"]
               if set(p["replica_nodes"]) != set(p["isr_nodes"]))


def cluster_settings(bootstrap: str) -> Settings:
    """A fresh namespace whose event topics are created at ``REPLICAS`` replicas and checked
    (``min.insync.replicas=2``, no retention); the children make their topics at as many."""
    enrollment_signer()  # the keys, in the environment the children inherit
    settings = Settings(
        bootstrap_servers=bootstrap,
        namespace=f"bench-{uuid.uuid4().hex[:8]}",
        trial_id=TRIAL_ID,
        replication_factor=REPLICAS,
    )
    ensure_topics(bootstrap, settings.namespace, REPLICAS)
    if problems := check_event_topics(bootstrap, settings.namespace):
        raise RuntimeError(f"the event topics are not as a cluster needs: {problems}")
    return settings
