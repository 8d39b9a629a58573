"""The event topics' creation and the check that none of them can lose events.

Event topics are the system of record, so their configuration is part of the record's safety:

- kept forever (``retention.ms=-1``, ``retention.bytes=-1``) and never compacted
  (``cleanup.policy=delete``: compaction keeps only the last record per key, and records are
  keyed by stream);
- replicated on ``min(3, brokers)`` brokers unless ``TRIALOPS_REPLICATION_FACTOR`` says
  otherwise;
- with two or more replicas, ``min.insync.replicas=2``: an ``acks=all`` write is acknowledged
  only once two brokers hold it. With one in-sync replica allowed, a write acknowledged by a
  leader whose follower lagged is lost when that leader's disk goes; refusing the write (the
  client retries) is the lesser harm for a system of record, on two brokers as on three;
- with a single replica, ``flush.messages=1``: no replica to fall back on, so every message
  reaches the disk before it is acknowledged, whatever the broker's own default.

``ensure_topics`` creates the missing topics that way and never alters an existing one;
``check_event_topics`` reports every existing topic that deviates (``trialops verify`` and
``trialops topics create`` print them and exit 1).

On a secured broker (``TRIALOPS_KAFKA_CONFIG`` set, see ``infra.kafka_security``) these
clients act as ``admin``, and ``ensure_topics`` also grants the namespace's ACLs
(``grant``): the only way to write an event topic is to be its context's writer.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ConfigResource,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
)
from kafka.errors import NodeNotReadyError, TopicAlreadyExistsError, UnknownBrokerIdError

from events.topics import (
    ACCESS,
    EVENT_TOPIC_CONFIG,
    WRITERS,
    catalogue,
    checkpoint_topic,
    dead_letter_topic,
    event_topic,
)
from infra.kafka_security import ADMIN, AUDITOR, WORKER, kafka_python_settings, load
from infra.snapshot_topic import snapshot_topic

REPLICATION_ENV = "TRIALOPS_REPLICATION_FACTOR"
_MISSING_RETRIES = 3
CHECKED_KEYS = (
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "flush.messages",
)


@dataclass(frozen=True)
class TopicProblem:
    """An event topic whose configuration could lose events."""

    topic: str
    key: str
    found: str
    needed: str
    risk: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.key} is {self.found}, needs {self.needed} ({self.risk})"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def configured_replication_factor() -> int | None:
    """``TRIALOPS_REPLICATION_FACTOR`` if set, else None (meaning ``min(3, brokers)``)."""
    value = os.environ.get(REPLICATION_ENV, "").strip()
    if not value:
        return None
    return _whole_number(REPLICATION_ENV, value, "the replication factor must be >= 1")


def wanted_replication(brokers: int) -> int:
    """The replication factor an event topic needs on a cluster of ``brokers`` brokers."""
    return max(1, min(3, brokers))


def event_topic_configs(replication_factor: int) -> dict[str, str]:
    """The configuration of a new event topic with ``replication_factor`` replicas."""
    configs = dict(EVENT_TOPIC_CONFIG)
    if replication_factor >= 2:
        configs["min.insync.replicas"] = "2"
    else:
        configs["flush.messages"] = "1"
    return configs


def _admin(bootstrap_servers: str, config: Path | None = None) -> KafkaAdminClient:
    """An admin client, as ``admin`` on a secured broker (``config``: the client
    configuration file, default ``TRIALOPS_KAFKA_CONFIG``)."""
    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="trialops-admin",
        request_timeout_ms=30000,
        **kafka_python_settings(ADMIN, config),
    )


def writer_group(namespace: str) -> str:
    """The consumer group the command services' instances share the writing through
    (services/writer_group.py, decision 59)."""
    return f"{namespace}.writers"


def worker_group(namespace: str, fold_version: str | None = None) -> str:
    """The projection worker's consumer group, also the prefix of its internal topics
    (Faust names changelogs ``<group>-<table>-changelog``): ``<namespace>-projections-<fold
    version>`` (decision 55); without a version, the prefix every version's group and topics
    share, which the ACLs and the reset name."""
    prefix = f"{namespace}-projections"
    return prefix if fold_version is None else f"{prefix}-{fold_version}"


def namespace_acls(namespace: str) -> list[ACL]:
    """Every ACL of ``namespace``; nothing else is allowed (the broker refuses what no ACL
    allows, and only admin is a super user):

    - each context's writer: write (transactionally, with its own transactional id
      ``<namespace>.<context>.writer``) only its own event topic; read every event topic (a
      service follows other contexts' topics);
    - the worker: read the event topics; its consumer group; create, read and write its own
      topics (changelogs ``<namespace>-projections-*``, dead letters ``<namespace>.dlq.*``);
    - the auditor: read and describe the event topics and their configuration; write the
      checkpoint topic ``<namespace>.checkpoints``.

    "The event topics" are every topic of ``events.topics.catalogue``.
    """
    allow = ACLPermissionType.ALLOW
    op = ACLOperation

    def acl(
        principal: str,
        operation: ACLOperation,
        kind: ResourceType,
        name: str,
        prefixed: bool = False,
    ) -> ACL:
        pattern = ACLResourcePatternType.PREFIXED if prefixed else ACLResourcePatternType.LITERAL
        return ACL(f"User:{principal}", "*", operation, allow, ResourcePattern(kind, name, pattern))

    topic, group, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    events = [spec.name for spec in catalogue(namespace)]
    acls = []
    for context in WRITERS:
        own = event_topic(context, namespace)
        acls += [acl(context, op.WRITE, topic, own)]
        acls += [acl(context, o, topic, name) for name in events for o in (op.READ, op.DESCRIBE)]
        writer_id = f"{namespace}.{context}.writer"
        # One transactional id per partition it writes (decision 60): the prefix names them all.
        acls += [acl(context, o, txn, writer_id, True) for o in (op.WRITE, op.DESCRIBE)]
        # Its snapshots (decision 42): its own to create, write and read, no one else's.
        acls += [acl(context, o, topic, snapshot_topic(own), True)
                 for o in (op.CREATE, op.WRITE, op.READ, op.DESCRIBE)]
        acls += [acl(context, op.IDEMPOTENT_WRITE, ResourceType.CLUSTER, "kafka-cluster")]
    # The services' instances meet in the writers' group as the access writer, which every
    # instance runs (decision 59).
    acls += [acl(ACCESS, o, group, writer_group(namespace)) for o in (op.READ, op.DESCRIBE)]
    acls += [acl(WORKER, o, topic, name) for name in events for o in (op.READ, op.DESCRIBE)]
    prefixes = (worker_group(namespace), dead_letter_topic("", namespace))
    own_ops = (op.CREATE, op.READ, op.WRITE, op.DESCRIBE, op.DESCRIBE_CONFIGS)
    acls += [acl(WORKER, o, topic, prefix, True) for prefix in prefixes for o in own_ops]
    acls += [
        acl(WORKER, o, group, worker_group(namespace), True) for o in (op.READ, op.DESCRIBE)
    ]
    audit_ops = (op.READ, op.DESCRIBE, op.DESCRIBE_CONFIGS)
    acls += [acl(AUDITOR, o, topic, name) for name in events for o in audit_ops]
    # The auditor keeps the signed checkpoints of the log (DESIGN 4b) on their own topic.
    acls += [acl(AUDITOR, op.WRITE, topic, checkpoint_topic(namespace))]
    return acls


def grant(bootstrap_servers: str, namespace: str, config: Path | None = None) -> int:
    """Create the ACLs of ``namespace`` as admin (creating an existing ACL changes nothing);
    return how many. Raises on a refused ACL. ``config``: the client configuration file,
    default ``TRIALOPS_KAFKA_CONFIG``."""
    acls = namespace_acls(namespace)
    admin = _admin(bootstrap_servers, config)
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    failed = result.get("failed") or []
    if failed:
        raise RuntimeError(f"the broker refused {len(failed)} ACL(s) of {namespace}: {failed[:3]}")
    return len(acls)


def _broker_count(admin: KafkaAdminClient) -> int:
    return len(admin.describe_cluster().get("brokers", []))


CLUSTER_SETTLE_SECONDS = 30.0
"""How long topic creation waits for a cluster that just started to know all its brokers."""


PARTITIONS_ENV = "TRIALOPS_PARTITIONS"
"""How many partitions a new context topic gets (decision 60): at least as many as the
deployment runs trials, one per trial. Default 1. Fixed once the topics exist: a trial's
partition depends on the count."""


def configured_partitions() -> int:
    return _whole_number(PARTITIONS_ENV, os.environ.get(PARTITIONS_ENV, "").strip() or "1",
                         "a topic has at least one partition")


def _whole_number(name: str, value: str, at_least_one: str) -> int:
    """``value`` of the environment variable ``name`` as a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number") from None
    if number < 1:
        raise ValueError(f"{name}={value!r}: {at_least_one}")
    return number


def ensure_topics(
    bootstrap_servers: str, namespace: str, replication_factor: int | None = None,
    partitions: int | None = None,
) -> list[str]:
    """Create the event topics that are missing; return the names created.

    ``replication_factor`` None means ``min(3, brokers)``; ``partitions`` None means
    ``TRIALOPS_PARTITIONS`` (default 1). Existing topics are left as they are:
    ``check_event_topics`` says whether they are safe."""
    count = configured_partitions() if partitions is None else partitions
    admin = _admin(bootstrap_servers)
    try:
        brokers = _broker_count(admin)
        deadline = time.monotonic() + CLUSTER_SETTLE_SECONDS
        while (replication_factor is not None and brokers < replication_factor
               and time.monotonic() < deadline):
            # A broker of the cluster not in its metadata for a moment (starting, or fenced
            # while it catches up): the replication asked for is worth a few seconds' wait.
            time.sleep(0.5)
            brokers = _broker_count(admin)
        factor = replication_factor if replication_factor is not None else wanted_replication(
            brokers
        )
        if factor > brokers:
            raise ValueError(
                f"replication factor {factor} needs {factor} brokers; "
                f"the cluster at {bootstrap_servers} has {brokers}"
            )
        configs = event_topic_configs(factor)
        existing = set(admin.list_topics())
        created = []
        for spec in catalogue(namespace, count):
            if spec.name in existing:
                continue
            deadline = time.monotonic() + CLUSTER_SETTLE_SECONDS
            while True:
                try:
                    admin.create_topics(
                        {
                            spec.name: {
                                "num_partitions": spec.partitions,
                                "replication_factor": factor,
                                "configs": {**spec.configs, **configs},
                            }
                        },
                        wait_for_metadata=True,
                    )
                    created.append(spec.name)
                    break
                except TopicAlreadyExistsError:
                    break  # another process created it between list and create
                except (UnknownBrokerIdError, NodeNotReadyError):
                    # A cluster just started: the controller the admin client took at its
                    # start is not in its metadata yet. The client does not look again (seen
                    # under load for 30 s on a three-node cluster): a new client does.
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
                    admin.close()
                    admin = _admin(bootstrap_servers)
    finally:
        admin.close()
    if load() is not None:
        grant(bootstrap_servers, namespace)
    return created


def topic_problems(
    topic: str, configs: dict[str, str], replication_factor: int, brokers: int
) -> list[TopicProblem]:
    """What could lose events on ``topic``, given its effective ``configs`` (every key of
    ``CHECKED_KEYS``), its replication factor (the fewest replicas of any partition) and the
    number of brokers in the cluster."""
    problems = []

    def need(key: str, needed: str, risk: str) -> None:
        found = configs.get(key)
        if found != needed:
            problems.append(TopicProblem(topic, key, str(found), needed, risk))

    need("retention.ms", "-1", "Kafka deletes the events older than that")
    need("retention.bytes", "-1", "Kafka deletes the oldest events beyond that size")
    need(
        "cleanup.policy",
        "delete",
        "compaction keeps only the last event of each stream"
        if "compact" in str(configs.get("cleanup.policy"))
        else "events are not kept as written",
    )
    wanted = wanted_replication(brokers)
    if replication_factor < wanted:
        problems.append(
            TopicProblem(
                topic,
                "replication.factor",
                str(replication_factor),
                f">= {wanted} on {brokers} brokers",
                "losing one broker loses or blocks the topic's events",
            )
        )
    if replication_factor >= 2:
        try:
            min_isr = int(configs.get("min.insync.replicas", "1"))
        except ValueError:
            min_isr = 1
        if min_isr < 2:
            problems.append(
                TopicProblem(
                    topic,
                    "min.insync.replicas",
                    str(configs.get("min.insync.replicas")),
                    ">= 2",
                    "an event acknowledged by one broker alone is lost with that broker",
                )
            )
        need(
            "unclean.leader.election.enable",
            "false",
            "an out-of-sync replica may become leader and drop acknowledged events",
        )
    else:
        need(
            "flush.messages",
            "1",
            "a single replica acknowledges events before they reach the disk",
        )
    return problems


def check_event_topics(bootstrap_servers: str, namespace: str) -> list[TopicProblem]:
    """Every problem of every event topic of ``namespace`` that could lose events, a missing
    topic included; an empty list when all of them are safe."""
    admin = _admin(bootstrap_servers)
    try:
        brokers = _broker_count(admin)
        names = [spec.name for spec in catalogue(namespace)]
        existing = set(admin.list_topics())
        for _ in range(_MISSING_RETRIES):
            if existing.issuperset(names):
                break
            # The broker that answers may not know yet of a topic another one just created.
            time.sleep(1.0)
            existing = set(admin.list_topics())
        problems = [
            TopicProblem(
                name, "topic", "missing", "created", "create it with 'trialops topics create'"
            )
            for name in names
            if name not in existing
        ]
        present = [name for name in names if name in existing]
        if not present:
            return problems
        described = admin.describe_configs(
            [ConfigResource("TOPIC", name, list(CHECKED_KEYS)) for name in present],
            config_filter="all",
        )["topic"]
        replicas = {
            topic["name"]: min(
                (len(p["replica_nodes"]) for p in topic["partitions"]), default=0
            )
            for topic in admin.describe_topics(present)
        }
        for name in present:
            configs = {key: entry["value"] for key, entry in described.get(name, {}).items()}
            problems += topic_problems(name, configs, replicas.get(name, 0), brokers)
        return problems
    finally:
        admin.close()


def record_counts(bootstrap_servers: str, namespace: str) -> dict[str, int]:
    """Records on each existing event topic of ``namespace`` (transaction markers included:
    zero means the topic never held anything)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        **kafka_python_settings(ADMIN),
    )
    try:
        counts = {}
        existing = consumer.topics()
        for spec in catalogue(namespace):
            if spec.name not in existing:
                continue
            partitions = [
                TopicPartition(spec.name, p)
                for p in sorted(consumer.partitions_for_topic(spec.name) or ())
            ]
            ends = consumer.end_offsets(partitions)
            starts = consumer.beginning_offsets(partitions)
            counts[spec.name] = sum(ends[tp] - starts[tp] for tp in partitions)
        return counts
    finally:
        consumer.close()


def ensure_worker_topics(
    bootstrap_servers: str, topics: dict[str, tuple[int, int, dict[str, str]]]
) -> list[str]:
    """Create, as the worker, those of ``topics`` (name: partitions, replication factor,
    configs) that are missing, and return once the cluster's metadata lists every one of them;
    return the names created. The worker's changelogs, made before its consumer joins its
    group (decision 69)."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="trialops-worker-admin",
        request_timeout_ms=30000,
        **kafka_python_settings(WORKER),
    )
    created = []
    try:
        existing = set(admin.list_topics())
        wanted = {name: {"num_partitions": partitions, "replication_factor": factor,
                         "configs": configs}
                  for name, (partitions, factor, configs) in sorted(topics.items())
                  if name not in existing}
        if wanted:  # one request for them all
            answer = admin.create_topics(wanted, raise_errors=False)
            for topic in answer["topics"]:
                error = topic["error_code"]
                if error == 0:
                    created.append(topic["name"])
                elif error != TopicAlreadyExistsError.errno:  # another worker made it first
                    raise RuntimeError(f"cannot create {topic['name']}: "
                                       f"{topic.get('error_message') or error}")
        deadline = time.monotonic() + CLUSTER_SETTLE_SECONDS
        while missing := set(topics) - set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not in the cluster's metadata after "
                                   f"{CLUSTER_SETTLE_SECONDS:.0f} s: {', '.join(sorted(missing))}")
            time.sleep(0.2)
    finally:
        admin.close()
    return created
