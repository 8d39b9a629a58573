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

import aiohttp

FORWARDED_BY = "X-Trialops-Forwarded-By"
"""Set on a request one worker asks another: the worker asked answers it itself or not at all
(the group may have moved the partitions between the two lookups), never forwards it again."""

PASSED_ON = ("Authorization", "traceparent", "X-Request-ID", "Accept")
KEPT = ("Retry-After", "WWW-Authenticate")
"""The holder's answer headers a forwarded answer keeps (besides its status and type)."""
"""The reader's headers a forwarded request carries: the token is checked again by the worker
that answers, and the trace goes on."""

SESSION_TIMEOUT_SECONDS = 20.0
"""How long a worker that stopped heartbeating keeps its partitions (decision 14)."""

HOLDING_FILE = "holding"
"""In a worker's data dir while it holds the event partitions: a worker that dies by itself
was then the one whose changelogs the others take over (trialops/projection_reset.py)."""

CONNECT_SECONDS = 2.0
"""A holder that does not accept the connection by then is taken as gone."""
ANSWER_SECONDS = 15.0
"""How long a forwarded view may take; one that waits for a position (``wait_for``) gets the
longest wait a view accepts (60 s) and a little more."""
WAIT_FOR_SECONDS = 65.0


def held_here(app: Any, topics: Iterable[str]) -> bool:
    """True when this worker is assigned every partition of every one of ``topics``."""
    return holds_all(
        {(tp.topic, tp.partition) for tp in app.consumer.assignment()},
        {topic: app.consumer.topic_partitions(topic) for topic in topics},
    )


def holds_all(assigned: set[tuple[str, int]], partitions: Mapping[str, int | None]) -> bool:
    """True when ``assigned`` (topic, partition) pairs hold all partitions of each topic of
    ``partitions`` (topic -> how many it has; None when not known yet: not held). A worker
    holding part of a topic has part of each view: it must not answer one from its tables."""
    return all(
        count is not None and count > 0
        and all((topic, number) in assigned for number in range(count))
        for topic, count in partitions.items()
    )


def holder_of(app: Any, topics: Iterable[str]) -> str | None:
    """The URL of the one member the group gave ``topics`` to (``holder_in`` the assignor's
    map of which member holds which source partitions)."""
    return holder_in(app.assignor.external_topics_metadata(), topics)


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
    headers[FORWARDED_BY] = "worker"
    url = f"{holder}{path}" + (f"?{query}" if query else "")
    waits = "wait_for" in request.query
    timeout = aiohttp.ClientTimeout(
        total=WAIT_FOR_SECONDS if waits else ANSWER_SECONDS, sock_connect=CONNECT_SECONDS
    )
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
        url, headers=headers, allow_redirects=False
    ) as answer:
        body = await answer.read()
        kept = {k: answer.headers[k] for k in KEPT if k in answer.headers}
        return web.bytes(body, content_type=answer.content_type, status=answer.status,
                         headers=kept or None)


HOLDER_CHECK_SECONDS = 2.0


async def holder_problem(holder: str) -> str | None:
    """None when the holder says it is ready, else why a standby cannot answer the views now:
    the holder does not answer, or is not ready itself (halted, restoring), in its words."""
    timeout = aiohttp.ClientTimeout(total=HOLDER_CHECK_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            f"{holder}/ready", headers={FORWARDED_BY: "worker"}
        ) as answer:
            if answer.status == 200:
                return None
            try:
                said = (await answer.json(content_type=None)).get("detail")
            except ValueError:
                said = None
            return (f"the worker holding the partitions ({holder}) is not ready: "
                    f"{said or f'HTTP {answer.status}'}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return (f"the worker holding the partitions ({holder}) does not answer: "
                f"{type(exc).__name__}")
