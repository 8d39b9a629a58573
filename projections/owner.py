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

PASSED_ON = ("Authorization", "traceparent", "X-Correlation-ID", "Accept")
"""The reader's headers a forwarded request carries: the token is checked again by the worker
that answers, and the trace goes on."""

FORWARD_TIMEOUT_SECONDS = 65.0
"""Longer than the longest ``wait_for`` a view accepts (60 s)."""


def held_here(app: Any, topics: Iterable[str]) -> bool:
    """True when this worker is assigned every partition of ``topics`` it knows of."""
    assigned = {tp.topic for tp in app.consumer.assignment()}
    return all(topic in assigned for topic in topics)


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
    timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
        url, headers=headers, allow_redirects=False
    ) as answer:
        body = await answer.read()
        kept = {k: answer.headers[k] for k in ("Retry-After",) if k in answer.headers}
        return web.bytes(body, content_type=answer.content_type, status=answer.status,
                         headers=kept or None)


HOLDER_CHECK_SECONDS = 2.0


async def holder_problem(holder: str) -> str | None:
    """None when the holder answers its ``/ready`` at all (ready or not: it is its own to
    say), else why it does not: a standby whose holder is gone cannot answer the views."""
    timeout = aiohttp.ClientTimeout(total=HOLDER_CHECK_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            f"{holder}/ready", headers={FORWARDED_BY: "worker"}
        ):
            return None
    except (aiohttp.ClientError, TimeoutError) as exc:
        return (f"the worker holding the partitions ({holder}) does not answer: "
                f"{type(exc).__name__}")
