"""Which worker of the group holds the projections, and asking it on behalf of a reader.

Several workers may run in one consumer group (decision 58): Kafka's group protocol, through
Faust's assignor, gives each event partition (and its tables' changelog partitions, which are
co-partitioned with it) to one member, and the others keep standby copies of the changelogs.
A worker's tables hold only what its own partitions folded, so a worker that does not hold
a projection's sources must not answer from its tables: it asks the member that does and
passes the answer on, byte for byte, so a reader gets the same answer from any instance.

Each member tells the group the URL it is reached at (Faust's ``canonical_url``, sent with
its subscription); the assignor hands every member the map of which URL holds which source
partitions. Only a worker that holds every source partition of a view answers it from its
tables: with one partition per event topic (decision 2) one member holds them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from events.topics import partition_of
from infra import forwarding
from infra.forwarding import ask
from infra.settings import WORKER_SESSION_ENV, session_seconds

PASSED_ON = ("Authorization", "traceparent", "X-Request-ID", "Accept")
"""The reader's headers a forwarded request carries: the token is checked again by the worker
that answers, and the trace goes on."""

SESSION_TIMEOUT_SECONDS = session_seconds(WORKER_SESSION_ENV, 20.0)
"""How long a worker that stopped heartbeating keeps its partitions (decision 14): 20 s unless
``TRIALOPS_WORKER_SESSION_SECONDS`` says otherwise (decision 72)."""
HEARTBEAT_SECONDS = min(3.0, SESSION_TIMEOUT_SECONDS / 3)
"""A worker's heartbeats: at least three in a session, so a few missed ones are tolerated."""

HOLDING_FILE = "holding"
"""In a worker's data dir while it holds the event partitions: a worker that dies by itself
was then the one whose changelogs the others take over (trialops/projection_reset.py)."""

ANSWER_SECONDS = 15.0
"""How long a forwarded view may take; one that waits for a position (``wait_for``) gets the
longest wait a view accepts (60 s) and a little more."""
WAIT_FOR_SECONDS = 65.0


def held_here(
    app: Any, topics: Iterable[str], trial_id: str | None = None, partitions: int = 1
) -> bool:
    """True when this worker is assigned every partition of every one of ``topics``; with
    ``trial_id``, that trial's partition of each, the topics having ``partitions`` partitions
    (decision 61; the worker knows the count from its start, while the consumer's metadata
    knows it on the group's leader only)."""
    assigned = {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
    if trial_id is None:
        return holds_all(
            assigned, {topic: app.consumer.topic_partitions(topic) for topic in topics}
        )
    return holds_trial(assigned, dict.fromkeys(topics, partitions), trial_id)


def trial_partitions(partitions: Mapping[str, int | None], trial_id: str) -> dict[str, int] | None:
    """Per topic of ``partitions`` (topic -> how many it has), the one holding ``trial_id``'s
    events (``events.topics.partition_of``); None while a count is not known yet."""
    if any(not count for count in partitions.values()):
        return None
    return {topic: partition_of(trial_id, count)
            for topic, count in partitions.items() if count}


def holds_trial(
    assigned: set[tuple[str, int]], partitions: Mapping[str, int | None], trial_id: str
) -> bool:
    """True when ``assigned`` holds ``trial_id``'s partition of each topic of ``partitions``:
    that trial's views are made of those partitions' events alone (decision 61). With one
    partition per topic, it is ``holds_all``."""
    wanted = trial_partitions(partitions, trial_id)
    return wanted is not None and all(pair in assigned for pair in wanted.items())


def holds_all(assigned: set[tuple[str, int]], partitions: Mapping[str, int | None]) -> bool:
    """True when ``assigned`` (topic, partition) pairs hold all partitions of each topic of
    ``partitions`` (topic -> how many it has; None when not known yet: not held). A worker
    holding part of a topic has part of each view: it must not answer one from its tables."""
    return all(
        count is not None and count > 0
        and all((topic, number) in assigned for number in range(count))
        for topic, count in partitions.items()
    )


def holder_of(
    app: Any, topics: Iterable[str], trial_id: str | None = None, partitions: int = 1
) -> str | None:
    """The URL of the one member the group gave ``topics`` to (``holder_in`` the assignor's
    map of which member holds which source partitions); with ``trial_id``, the member given
    that trial's partition of each, the topics having ``partitions`` (decision 61)."""
    distribution = app.assignor.external_topics_metadata()
    if trial_id is None:
        return holder_in(distribution, topics)
    wanted = trial_partitions(dict.fromkeys(topics, partitions), trial_id)
    return None if wanted is None else trial_holder_in(distribution, wanted)


def trial_holder_in(
    distribution: Mapping[Any, Mapping[str, Sequence[int]]], wanted: Mapping[str, int]
) -> str | None:
    """The URL of the one member of ``distribution`` (URL -> topic -> partitions) that holds
    partition ``wanted[topic]`` of every topic of ``wanted``, or None when none (or, in the
    middle of a rebalance, several) do. Faust's assignor gives topics of one partition count
    that the same members subscribe to as one co-partitioned group, partition ``i`` of all of
    them to one member: the event topics and the tables' changelogs, so one member holds a
    trial's partition of every source and of every table."""
    holders = [
        str(url).rstrip("/") for url, held in distribution.items()
        if all(number in held.get(topic, ()) for topic, number in wanted.items())
    ]
    return holders[0] if len(holders) == 1 else None


def holder_in(
    distribution: Mapping[Any, Mapping[str, Sequence[int]]], topics: Iterable[str]
) -> str | None:
    """The URL of the one member of ``distribution`` (URL -> topic -> partitions) that holds
    partitions of ``topics``, or None when none does, several do (no single worker can answer
    from its tables), or it lacks one of them."""
    wanted = set(topics)
    holders = []
    for url, partitions in distribution.items():
        held = {topic for topic, numbers in partitions.items() if numbers}
        if held & wanted:
            holders.append((str(url).rstrip("/"), held))
    if len(holders) != 1 or not wanted <= holders[0][1]:
        return None
    return holders[0][0]


def own_url(app: Any) -> str:
    return str(app.conf.canonical_url).rstrip("/")


async def ask_holder(web: Any, request: Any, holder: str, path: str, query: str) -> Any:
    """The holder's answer to this GET, status, type and body as it gave them."""
    headers = {name: request.headers[name] for name in PASSED_ON if name in request.headers}
    answer = await ask(
        "GET", f"{holder}{path}" + (f"?{query}" if query else ""), headers, by="worker",
        total_seconds=WAIT_FOR_SECONDS if "wait_for" in request.query else ANSWER_SECONDS,
    )
    return web.bytes(answer.body, content_type=answer.content_type, status=answer.status,
                     headers=answer.headers or None)


async def holder_problem(holder: str) -> str | None:
    """None when the holder says it is ready, else why a standby cannot answer the views now."""
    return await forwarding.holder_problem(
        holder, by="worker", what="the worker holding the partitions"
    )
