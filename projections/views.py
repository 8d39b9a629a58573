"""The worker's HTTP views: each projection served as JSON to a reader with a read role.

The worker (``projections/worker.py``, the Faust wiring) registers them with ``_serve`` and
uses ``_unauthorized`` for its own pages. A projection with a per-key list is served a page at
a time (``limit``, ``cursor``; projections/paging.py, decision 41); a key filter reads that one
key.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web as aioweb

from events.envelope import Actor
from infra.forwarding import FORWARDED_BY
from projections.applying import TrialTable, state_of, states
from projections.base import Projection, to_json
from projections.catalog import TrialNotNamed, UnknownTrial, chosen_trial
from projections.openapi import document as views_document
from projections.owner import ask_holder, held_here, holder_of, own_url
from projections.paging import (
    BadPage,
    KeyOrder,
    StoredOrder,
    decode_cursor,
    keys_under,
    page_document,
    parse_limit,
)
from services.auth import READ_ROLES, LiveUsers, UserDirectory, bearer_token
from services.http import observed
from services.problems import PROBLEM_JSON, problem_document
from trial.config import load_trial


def _problem(web, request, status: int, error: str, message: str, headers=None):
    """An error answer as an RFC 9457 problem, as the command services answer (decision 44)."""
    return web.json(
        problem_document(status, error, message, request.path),
        status=status, content_type=PROBLEM_JSON, headers=headers,
    )


@aioweb.middleware
async def _problems(request, handler):
    """aiohttp's own errors (an unknown path, a method a view does not take) as problems."""
    try:
        return await handler(request)
    except aioweb.HTTPException as exc:
        if exc.status < 400:
            raise
        error = re.sub(r"[^a-z0-9]+", "-", (exc.reason or "error").lower()).strip("-")
        document = problem_document(
            exc.status, error, f"{exc.reason}: {request.method} {request.path}", request.path
        )
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return aioweb.Response(
            status=exc.status, body=orjson.dumps(document), content_type=PROBLEM_JSON,
            headers=allow,
        )


_DESCRIBED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""The projections each worker app serves, for its ``/openapi.json``."""


def _describe(app, projection: Projection) -> None:
    """Lists ``projection`` in the worker's ``/openapi.json`` (projections/openapi.py), which
    is registered with the first view; like ``/ready``, it asks for no token."""
    served = _DESCRIBED.get(app)
    if served is None:
        served = _DESCRIBED[app] = []

        async def openapi(web, request):
            return web.bytes(orjson.dumps(views_document(served)), content_type="application/json")

        app.page("/openapi.json", name="openapi")(openapi)
    served.append(projection)


_OBSERVED = observed()
"""As on the services (decision 47): the request's correlation id, from its ``traceparent`` or
``X-Request-ID`` or new, echoed in the answer and on the records logged meanwhile."""


def _answer_errors_as_problems(app) -> None:
    """Adds ``_problems`` to the Faust app's aiohttp application once, before it starts, and
    ``_OBSERVED`` before every other middleware."""
    web_app = getattr(app.web, "web_app", None)
    if web_app is not None and _problems not in web_app.middlewares:
        web_app.middlewares.append(_problems)
        web_app.middlewares.insert(0, _OBSERVED)


class TrialReaders:
    """Who may read each trial's views: per trial id, that trial's users (its own access log,
    seeded as the services seed it), so that a user of one trial is nobody in another trial's
    views, as in its commands (decisions 60 and 65)."""

    def __init__(self, by_trial: Mapping[str, UserDirectory | LiveUsers]) -> None:
        self.by_trial = dict(by_trial)

    def authenticate(self, token: str) -> Actor | None:
        """The user the token names in some trial: enough to tell 401 from what follows before
        the trial is read from the query; the trial's own users decide after."""
        for users in self.by_trial.values():
            if (actor := users.authenticate(token)) is not None:
                return actor
        return None

    def for_trial(self, trial_id: str) -> UserDirectory | LiveUsers:
        return self.by_trial[trial_id]


Readers = UserDirectory | LiveUsers | TrialReaders


def _not_a_reader_of(web, request, users: Readers, trial_id: str):
    """Once the trial is known: with readers per trial, :func:`_unauthorized` against that
    trial's users (a user of another trial only: 401, as the services answer)."""
    if not isinstance(users, TrialReaders):
        return None
    return _unauthorized(web, request, users.for_trial(trial_id))


def _unauthorized(web, request, users: Readers):
    """A 401 answer unless the request carries the bearer token of a user with a read role;
    the token is never repeated."""
    token = bearer_token(request.headers.get("Authorization"))
    actor = None if token is None else users.authenticate(token)
    if actor is not None and actor.role in READ_ROLES:
        return None
    if actor is not None:
        return _problem(web, request, 403, "role-not-permitted",
                        f"role {actor.role} may not read the projections")
    return _problem(
        web, request, 401, "unauthenticated",
        "send 'Authorization: Bearer <token>' of a user with a read role",
        headers={"WWW-Authenticate": 'Bearer realm="trialops"'},
    )


class PositionsMoved:
    """Wakes the queries that wait for a position (``wait_for``) when the worker's positions
    move, instead of each polling them: read-your-writes costs the batch's own wait, not a
    poll's period on top."""

    def __init__(self) -> None:
        self._moved = asyncio.Event()

    def notify(self) -> None:
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def wait(self, timeout: float) -> None:
        """Until the positions next move, or ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._moved.wait(), timeout)


POSITION_RECHECK_SECONDS = 0.5
"""A waiting query looks at the positions at least this often, moved or not (a restore from
the changelogs writes them without a batch)."""


def _serve(
    app, projection: Projection, table, positions, users: Readers,
    moved: PositionsMoved | None = None, sources: tuple[str, ...] = (),
    trials: Mapping[str, Projection] | None = None, partitions: int = 1,
) -> None:
    """Serve ``projection`` from ``table``; a worker that does not hold ``sources`` (the event
    topics) passes the request to the one that does (projections/owner.py). ``trials``: the
    deployment's trials, each with this projection built from its trial file (default: the
    one trial ``load_trial`` reads); the table's keys are scoped by trial, and a view reads
    one trial's, named by ``trial_id``; ``partitions``: how many each event topic has, to find
    the trial's (decision 61)."""
    moved = moved if moved is not None else PositionsMoved()
    trials = trials if trials is not None else {load_trial().trial_id: projection}
    orders = {trial_id: KeyOrder() for trial_id in trials}
    _answer_errors_as_problems(app)
    _describe(app, projection)

    async def view(web, request):
        if refused := _unauthorized(web, request, users):
            return refused
        trial_id, refused = _trial_of(web, request, trials)
        if refused is not None:
            return refused
        if refused := _not_a_reader_of(web, request, users, trial_id):
            return refused
        if sources and (
            elsewhere := await _answer_elsewhere(app, web, request, sources, trial_id,
                                                 partitions)
        ):
            return elsewhere
        chosen = trials[trial_id]
        wanted = request.query.get("wait_for")
        if wanted:
            problem = await _wait_for(positions, projection.name, wanted, request.query,
                                      moved)
            if problem is not None:
                status, body = problem
                return _problem(web, request, status, body["error"], body["message"])
        try:
            as_of = _query_time(request.query.get("as_of"))
            # The table's keys may have changed only if the worker applied something since
            # (positions move at the end of every batch) or its size changed (a restore).
            version = (tuple(sorted(positions.items())), len(table))
            trial_table = TrialTable(table, trial_id)
            in_order = trial_table.keys_from
            order = ((StoredOrder(in_order), None) if in_order is not None
                     else (orders[trial_id], version))
            document = _document(chosen, trial_table, request.query, as_of, order)
        except (ValueError, BadPage) as exc:
            return _problem(web, request, 400, "bad-query", str(exc))
        if document is None:
            selected = request.query.get(projection.key_name)
            return _problem(
                web, request, 404, "not-found",
                f"{projection.name} has no {projection.key_name} {selected}",
            )
        return web.bytes(to_json(document), content_type="application/json")

    app.page(f"/projections/{projection.name}", name=f"view-{projection.name}")(view)


def _trial_of(web, request, trials: Iterable[str]) -> tuple[str, Any]:
    """The trial a view is asked about (``trial_id``; the deployment's only trial when absent)
    and None, or a problem: 400 when it is absent and the deployment runs several, 404 when
    the deployment does not run it (decision 61)."""
    try:
        return chosen_trial(trials, request.query.get("trial_id")), None
    except TrialNotNamed as exc:
        return "", _problem(web, request, 400, "bad-query", f"trial_id: {exc}")
    except UnknownTrial as exc:
        return "", _problem(web, request, 404, "not-found", f"trial_id: {exc.args[0]}")


async def _answer_elsewhere(
    app, web, request, sources: tuple[str, ...], trial_id: str | None = None,
    partitions: int = 1,
):
    """None when this worker holds ``sources`` (with ``trial_id``: that trial's partition of
    each of the ``partitions``, decision 61) and answers from its tables; otherwise the answer
    of the worker that holds them, or a 503 problem while no single one does (the group
    rebalancing, or the holder not reachable). Decision 58."""
    retry = {"Retry-After": "2"}
    if held_here(app, sources, trial_id, partitions):
        return None
    if request.headers.get(FORWARDED_BY):
        return _problem(web, request, 503, "not-held-here",
                        "this worker no longer holds the projections' partitions (the group "
                        "moved them); ask again", retry)
    holder = holder_of(app, sources, trial_id, partitions)
    if holder is None or holder == own_url(app):
        return _problem(web, request, 503, "rebalancing",
                        "no worker of the group holds the projections' partitions yet; ask "
                        "again", retry)
    try:
        return await ask_holder(web, request, holder, request.path,
                                request.rel_url.raw_query_string)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _problem(web, request, 503, "holder-unreachable",
                        f"the worker that holds the projections ({holder}) did not answer: "
                        f"{type(exc).__name__}", retry)


def _document(
    projection: Projection, table, query, as_of: datetime,
    order: tuple[KeyOrder | StoredOrder, object],
) -> dict | None:
    """The rendered projection, narrowed by its key filter when the query has one, else one
    page of its list when it has one (``BadPage`` for a bad ``limit`` or ``cursor``). A filter
    on the table's own key reads that one entry, and a page reads its keys' entries only
    (the keys are compared or kept sorted in ``order``, no other value read), so neither
    renders the whole table; nor does a narrowed document that says which keys it needs."""
    selected = query.get(projection.key_name)
    if selected is None and projection.listing is not None:
        limit = parse_limit(query.get("limit"))
        cursor = query.get("cursor")
        after = None if cursor is None else decode_cursor(cursor, projection.listing.prefix)
        return page_document(
            projection,
            table.keys(),
            lambda key: None if (stored := table.get(key)) is None else state_of(stored),
            lambda: states(table),
            after,
            limit,
            as_of,
            order,
        )
    if selected is None:
        return projection.document(states(table), as_of)
    if projection.select is not None:
        chosen = states(table) if projection.select_keys is None else _selected_states(
            table, *projection.select_keys(selected), order)
        return projection.select(projection.document(chosen, as_of), selected)
    stored = table.get(selected)
    if stored is None:
        return None
    chosen = {selected: state_of(stored)}
    if projection.listing is not None and projection.listing.needs is not None:
        for key in projection.listing.needs(chosen[selected]):  # an AE's subject, say
            if key not in chosen and (needed := table.get(key)) is not None:
                chosen[key] = state_of(needed)
    return projection.document(chosen, as_of)


def _selected_states(
    table, keys: tuple[str, ...], prefixes: tuple[str, ...],
    order: tuple[KeyOrder | StoredOrder, object],
) -> dict:
    """The states of ``keys`` and of every key under ``prefixes``: the keys under a prefix
    are found as a page's are (a seek in a table that keeps its keys in order; else one pass
    over the keys while the table changes, a binary search in the kept order once it is
    quiet), and no other value is read."""
    wanted = [*keys, *keys_under(order, table.keys, prefixes)]
    return {key: state_of(stored) for key in wanted if (stored := table.get(key)) is not None}


def _query_time(value: str | None) -> datetime:
    """The time a clock-dependent projection is read at: ``as_of`` (ISO 8601 with a zone)."""
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"as_of: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"as_of: {value!r} has no time zone")
    return moment


async def _wait_for(
    positions, name: str, wanted: str, query, moved: PositionsMoved
) -> tuple[int, dict] | None:
    """Wait until the projection applied ``topic:partition:offset``; a problem if it did not."""
    try:
        topic, partition, offset = wanted.rsplit(":", 2)
        target = int(offset)
        timeout = float(query.get("timeout", "5"))
        if not 0 < timeout <= 60:
            raise ValueError
    except ValueError:
        return 400, {
            "error": "bad-query",
            "message": "wait_for must be TOPIC:PARTITION:OFFSET (as a command's response gives "
            "it) and timeout a number of seconds in (0, 60]",
        }
    key = f"{topic}:{partition}"
    deadline = asyncio.get_running_loop().time() + timeout
    while positions[key] <= target:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return 504, {
                "error": "projection-behind",
                "message": f"{name} has applied {topic}:{partition} up to offset "
                f"{positions[key] - 1}, not yet {target}; timed out after {timeout:g}s",
            }
        await moved.wait(min(remaining, POSITION_RECHECK_SECONDS))
    return None
