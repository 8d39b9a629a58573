"""Which instance of the command services writes which partitions: Kafka's group protocol.

Every ``trialops serve`` joins one consumer group per namespace (``writer_group``), subscribed
to the topics of the contexts it writes; it reads nothing through it (its partitions stay
paused), the group only says who writes what (decision 59). Partition number ``i`` of every
context topic goes to the same member (co-partitioned, as Kafka Streams does for joins): the
writers of one partition read each other's facts and the access log from the same instance,
and a command's context and its caller's authentication are held together.

Each member sends the URL it is reached at and the partitions it holds now with its
subscription; the group's leader keeps a partition with the member that holds it (a join or a
leave does not move what need not move) and gives every member the map of which URL holds
which partition. A member that stops heartbeating loses its partitions after the session
timeout; the member given them fences it (``init_transactions`` on the partition's
transactional id) before reading its topics, so an old holder that is only slow can never
append after the new one read (decision 18).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.abstract import (
    AbstractPartitionAssignor,
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
)
from kafka.errors import KafkaError

from events.topics import partition_of
from infra.kafka_security import kafka_python_settings
from infra.settings import WRITER_SESSION_ENV, session_seconds
from infra.topic_admin import writer_group

log = logging.getLogger(__name__)

SESSION_TIMEOUT_SECONDS = session_seconds(WRITER_SESSION_ENV, 10.0)
"""How long an instance that stopped heartbeating keeps its partitions: its commands wait that
long before another instance takes them (kafka-python's default, 10 s, unless
``TRIALOPS_WRITER_SESSION_SECONDS`` says otherwise: decision 72)."""
HEARTBEAT_SECONDS = min(2.0, SESSION_TIMEOUT_SECONDS / 3)
POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    url: str
    topics: frozenset[str]
    holds: frozenset[int] = frozenset()
    """The partition numbers it holds now (kept with it when nothing forces a move)."""
    since: int = -1
    """The generation of the group that gave it ``holds``: of two members claiming one
    partition (one was evicted while it stalled and came back), the later grant wins."""


@dataclass(frozen=True, slots=True)
class Holding:
    """What the group said last: the partition numbers given to this member, and who holds
    each partition number (URL). ``settled`` is False while the group is rebalancing."""

    held: frozenset[int] = frozenset()
    owners: Mapping[int, str] = field(default_factory=dict)
    settled: bool = False
    partitions: int = 0
    """How many partitions the context topics have (a trial's partition depends on it); 0
    while the group does not know, -1 when the topics' counts differ (``counts``)."""
    counts: Mapping[str, int] = field(default_factory=dict)

    def holder_of_all(self, partitions: Iterable[int]) -> str | None:
        """The URL of the one member holding every one of ``partitions``, else None."""
        urls = {self.owners.get(number) for number in partitions}
        return next(iter(urls)) if len(urls) == 1 and None not in urls else None


def assign(
    partitions: Mapping[str, int], members: Sequence[Member], busy: Iterable[int] = ()
) -> tuple[dict[str, dict[str, list[int]]], dict[int, str]]:
    """Give partition number ``i`` of every topic (``partitions``: topic -> how many) to one
    member. The ``busy`` partitions (those holding a trial) are shared out first, then the
    others, each class evenly: a member keeps what it holds now up to its fair share of the
    class (of two claimants, the one granted it by the later generation, then the first by
    member id), and the rest goes to the member holding the fewest of the class, then the
    fewest in all, then by member id. So a joining member takes a fair share of the trials and
    nothing moves that need not. A member gets the topics it subscribed to. Returns member id
    -> topic -> partition numbers, and partition number -> URL of its member."""
    ordered = sorted(members, key=lambda m: m.member_id)
    numbers = sorted({n for count in partitions.values() for n in range(count)})
    given: dict[str, list[int]] = {m.member_id: [] for m in ordered}
    owners: dict[int, str] = {}
    if not ordered:
        return {}, owners
    loaded = set(busy)
    for group in ([n for n in numbers if n in loaded], [n for n in numbers if n not in loaded]):
        share = -(-len(group) // len(ordered))  # the fair share, rounded up
        mine: dict[str, int] = {m.member_id: 0 for m in ordered}
        rest = []
        for number in group:
            claimants = [m for m in ordered if number in m.holds and mine[m.member_id] < share]
            if not claimants:
                rest.append(number)
                continue
            chosen = min(claimants, key=lambda m: (-m.since, m.member_id))
            given[chosen.member_id].append(number)
            mine[chosen.member_id] += 1
            owners[number] = chosen.url
        for number in rest:
            chosen = min(ordered, key=lambda m: (mine[m.member_id], len(given[m.member_id]),
                                                 m.member_id))
            given[chosen.member_id].append(number)
            mine[chosen.member_id] += 1
            owners[number] = chosen.url
    by_member = {
        m.member_id: {
            topic: sorted(n for n in given[m.member_id] if n < partitions[topic])
            for topic in sorted(m.topics & partitions.keys())
        }
        for m in ordered
    }
    return by_member, owners


def counts_agree(counts: Mapping[str, int], unknown: Iterable[str] = ()) -> int:
    """The partition count every one of the context topics has; 0 when one's is not known
    yet (or none is), -1 when they differ."""
    if set(unknown) or not counts:
        return 0
    found = set(counts.values())
    return found.pop() if len(found) == 1 else -1


class CoPartitioned(AbstractPartitionAssignor):
    """kafka-python's side of ``assign``: this member's URL and holdings go out with its
    subscription, the owners' map comes back with its assignment."""

    name = "trialops-copartitioned"
    version = 0

    def __init__(self, url: str, claims: Callable[[], tuple[frozenset[int], int]],
                 trials: Sequence[str] = ()):
        self.url = url
        self.claims = claims
        self.trials = sorted(trials)
        self.owners: dict[int, str] = {}
        self.generation = -1
        self.partitions = 0
        self.counts: dict[str, int] = {}

    def metadata(self, topics):
        holds, since = self.claims()
        data = {"url": self.url, "holds": sorted(holds), "since": since,
                "trials": list(self.trials)}
        return ConsumerProtocolSubscription(self.version, sorted(topics), orjson.dumps(data))

    def assign(self, cluster, members):
        parsed: list[Member] = []
        counts: dict[str, int] = {}
        unknown: set[str] = set()
        trials: set[str] = set()
        for member in members:
            try:
                data = orjson.loads(member.metadata.user_data or b"{}")
            except orjson.JSONDecodeError:
                data = {}
            topics = frozenset(member.metadata.topics)
            trials.update(str(t) for t in data.get("trials", ()))
            for topic in topics:
                found = cluster.partitions_for_topic(topic)
                if found:
                    counts[topic] = len(found)
                else:
                    unknown.add(topic)
            parsed.append(Member(member.member_id, str(data.get("url", "")), topics,
                                 frozenset(int(n) for n in data.get("holds", ())),
                                 int(data.get("since", -1))))
        # A trial's partition depends on the count: nothing is given while a topic's count is
        # unknown (its metadata not in yet: the leader rejoins when it comes) or the context
        # topics differ (a trial would have no partition in some of them).
        partitions = counts_agree(counts, unknown)
        busy = {partition_of(t, partitions) for t in trials} if partitions > 0 else set()
        by_member, owners = assign(counts if partitions > 0 else {}, parsed, busy)
        said = orjson.dumps({"owners": {str(n): url for n, url in owners.items()},
                             "partitions": partitions, "counts": counts})
        return {
            member_id: ConsumerProtocolAssignment(self.version, sorted(topics.items()), said)
            for member_id, topics in by_member.items()
        }

    def on_assignment(self, assignment, generation):
        try:
            data = orjson.loads(assignment.user_data or b"{}")
        except orjson.JSONDecodeError:
            data = {}
        self.owners = {int(n): str(url) for n, url in data.get("owners", {}).items()}
        self.partitions = int(data.get("partitions", 0))
        self.counts = {str(t): int(n) for t, n in data.get("counts", {}).items()}
        self.generation = int(generation)


class WriterGroup:
    """This instance's membership of the writers' group, in a thread of its own: ``changed``
    is called (from that thread) with the new ``Holding`` at every rebalance."""

    def __init__(
        self,
        bootstrap_servers: str,
        namespace: str,
        topics: Sequence[str],
        url: str,
        changed: Callable[[Holding], object],
        *,
        principal: str,
        trials: Sequence[str] = (),
    ):
        self.bootstrap_servers = bootstrap_servers
        self.group_id = writer_group(namespace)
        self.topics = list(topics)
        self.changed = changed
        self.principal = principal
        self.holding = Holding()
        self.claims: tuple[frozenset[int], int] = (frozenset(), -1)
        """What this member tells the group it holds, and since which generation; nothing
        once it has been evicted (another member may have been given it since)."""
        self.assignor = CoPartitioned(url, lambda: self.claims, trials)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writer-group", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Leave the group (its partitions move to another member at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _say(self, holding: Holding) -> None:
        self.holding = holding
        try:
            self.changed(holding)
        except Exception:  # the membership must go on whatever the listener does
            log.exception("writers' group: handling a rebalance failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._member()
            except KafkaError as exc:
                log.warning("writers' group: %r; joining again", exc)
                self._stop.wait(2.0)
            except Exception:
                log.exception("writers' group: the membership failed; joining again")
                self._stop.wait(2.0)

    def _member(self) -> None:
        consumer = KafkaConsumer(
            **kafka_python_settings(self.principal),
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{self.group_id}-member",
            enable_auto_commit=False,
            partition_assignment_strategy=[self.assignor],
            session_timeout_ms=int(SESSION_TIMEOUT_SECONDS * 1000),
            heartbeat_interval_ms=int(HEARTBEAT_SECONDS * 1000),
        )
        group = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                # What it holds stays held until the group says otherwise: a member that
                # gets its partitions back keeps its writers open.
                group._say(Holding(group.holding.held, group.holding.owners, settled=False,
                                   partitions=group.holding.partitions))

            def on_partitions_lost(self, lost):
                # Evicted (it stalled past the session timeout): another member may hold them
                # now, so it claims nothing at its next join; its writers stay open until the
                # group has said, and one that was fenced meanwhile has retired (decision 18).
                group.claims = (frozenset(), -1)
                group._say(Holding(group.holding.held, group.holding.owners, settled=False,
                                   partitions=group.holding.partitions))

            def on_partitions_assigned(self, assigned):
                consumer.pause(*assigned)
                held = frozenset(tp.partition for tp in assigned)
                if held != group.claims[0]:
                    group.claims = (held, group.assignor.generation)
                group._say(Holding(held, dict(group.assignor.owners), settled=True,
                                   partitions=group.assignor.partitions,
                                   counts=dict(group.assignor.counts)))

        try:
            consumer.subscribe(self.topics, listener=Listener())
            while not self._stop.is_set():
                consumer.poll(timeout_ms=int(POLL_SECONDS * 1000))
        finally:
            consumer.close()
