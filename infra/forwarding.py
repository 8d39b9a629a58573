"""Asking the member of a group that holds some partitions, on behalf of a caller.

Kafka's group protocol gives each partition to one member of a group; the others stand by.
Both the Faust workers (decision 58) and the command services (decision 59) answer a request
only where the partitions it needs are held, and otherwise pass it to the member that holds
them and its answer back, status, type and bytes as given. Who holds what comes from the group
(each member sends the URL it is reached at with its subscription); this module only carries
the request and says whether the holder is up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

FORWARDED_BY = "X-Trialops-Forwarded-By"
"""Set on a request one member asks another: the member asked answers it itself or not at all
(the group may have moved the partitions between the two lookups), never passes it on again."""

KEPT = ("Retry-After", "WWW-Authenticate", "Allow")
"""The holder's answer headers a passed-on answer keeps (besides its status and type)."""

CONNECT_SECONDS = 2.0
"""A holder that does not accept the connection by then is taken as gone."""
HOLDER_CHECK_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]


async def ask(
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    by: str,
    body: bytes | None = None,
    total_seconds: float,
) -> Answer:
    """The holder's answer to ``method url``, with ``headers`` and ``body`` passed on and
    ``FORWARDED_BY: by`` added. Raises ``aiohttp.ClientError`` or ``TimeoutError`` when the
    holder does not answer (connecting gives up after ``CONNECT_SECONDS``)."""
    timeout = aiohttp.ClientTimeout(total=total_seconds, sock_connect=CONNECT_SECONDS)
    sent = {**headers, FORWARDED_BY: by}
    async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
        method, url, headers=sent, data=body, allow_redirects=False
    ) as answer:
        return Answer(
            status=answer.status,
            content_type=answer.content_type,
            body=await answer.read(),
            headers={k: answer.headers[k] for k in KEPT if k in answer.headers},
        )


async def holder_problem(holder: str, *, by: str, what: str, query: str = "") -> str | None:
    """None when the holder's ``/ready`` (with ``query``) says it is ready, else why a standby
    cannot answer for it now: the holder does not answer, or is not ready itself, in its
    words. ``what`` names the holder in the message ("the worker holding the partitions")."""
    timeout = aiohttp.ClientTimeout(total=HOLDER_CHECK_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            f"{holder}/ready" + (f"?{query}" if query else ""), headers={FORWARDED_BY: by}
        ) as answer:
            if answer.status == 200:
                return None
            try:
                said = (await answer.json(content_type=None)).get("detail")
            except ValueError:
                said = None
            return f"{what} ({holder}) is not ready: {said or f'HTTP {answer.status}'}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{what} ({holder}) does not answer: {type(exc).__name__}"
