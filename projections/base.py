"""What a projection is: a pure fold over recorded events, partitioned by a key.

Nothing here knows about Faust or Kafka: the Faust agent and the replay tool both call these
functions, so a projection rebuilt for an audit is the live one, by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson

from events.registry import Recorded

State = dict[str, Any]
V = TypeVar("V")


@dataclass(frozen=True)
class Listing:
    """Where a projection's document holds one item per table key (subjects, lots, AEs): the
    list its live view pages (projections/paging.py, decision 41)."""

    path: tuple[str, ...]
    """The list's place in the document: ``("subjects",)``, ``("adverse_events", "list")``."""
    prefix: str = ""
    """The table keys the list is made of (``ae:`` for the AEs): other keys are not listed."""
    summary: bool = False
    """Whether the rest of the document aggregates every key (counts by stage, the reporting
    clock): then the first page carries it, computed over the whole table."""
    summary_prefixes: tuple[str, ...] | None = None
    """With ``summary``, when the summary is made from some keys only: every key under these
    prefixes (cohort occupancy's cohorts and waiting list, not its screening list). The first
    page renders it from those keys' states alone, so it must equal the whole document's.
    None: from every key."""
    needs: Callable[[State], Iterable[str]] | None = None
    """The other keys a listed key's item is rendered with (an AE's item needs its subject's
    infusion and evaluation): a page reads them too, so its items equal the whole document's."""


@dataclass(frozen=True)
class Projection:
    name: str
    contexts: tuple[str, ...]
    key_of: Callable[[Recorded], str | tuple[str, ...] | None]
    """The key (or keys) whose state an event changes, None when it concerns none. Keep keys
    fine-grained: each table value is rewritten on every change and must fit a Kafka message."""
    initial: Callable[[str], State]
    apply: Callable[[State, Recorded], State | None]
    """The key's new state; None when the key has nothing left to show (its entry is removed,
    so state that is over, such as a subject off the waiting list, does not pile up)."""
    render: Callable[[Mapping[str, State]], Any]
    """The JSON document served by the live view and printed by the replay."""
    key_name: str = "key"
    """The query filter's name (``cohort_id``, ``subject_id``)."""
    select: Callable[[Any, str], Any] | None = None
    """Narrows the rendered document to one ``key_name`` value (None when absent); without
    it the filter picks the state stored under that key."""
    select_keys: Callable[[str], tuple[tuple[str, ...], tuple[str, ...]]] | None = None
    """The table keys ``select``'s document for a value is made from: some keys, and every
    key that starts with one of some prefixes. The view renders it from those keys' states
    alone, so ``select`` of that rendering must equal ``select`` of the whole document.
    None: from every key."""
    render_at: Callable[[Mapping[str, State], datetime], Any] | None = None
    """For documents that depend on the time they are read at (what is overdue): used instead
    of ``render`` with the query time."""
    listing: Listing | None = None
    """The document's per-key list, which the live view pages; None for a document that is
    one aggregate (the escalation's history, the cohorts), served whole."""

    def document(self, states: Mapping[str, State], as_of: datetime) -> Any:
        if self.render_at is not None:
            return self.render_at(states, as_of)
        return self.render(states)


class FoldError(RuntimeError):
    """A projection's ``apply`` raised on an event: a bug in the fold, or an event it cannot
    take. Every reader skips that event for that key and reports it; none stops."""


def apply_to(projection: Projection, state: State, recorded: Recorded) -> State | None:
    """``projection.apply``, with any error it raises as a ``FoldError`` naming the event."""
    try:
        return projection.apply(state, recorded)
    except Exception as exc:
        e = recorded.envelope
        raise FoldError(
            f"{projection.name} cannot apply {e.event_type} {e.event_id} "
            f"(stream {e.stream_id} seq {e.stream_seq}): {type(exc).__name__}: {exc}"[:1000]
        ) from exc


def fold(
    projection: Projection,
    events: Iterable[Recorded],
    states: dict[str, State] | None = None,
    errors: list[str] | None = None,
) -> dict[str, State]:
    """Fold ``events`` into ``states``; an event a fold cannot apply leaves the key's state as
    it was, and its ``FoldError`` message goes to ``errors`` (as the live worker does)."""
    states = {} if states is None else states
    for recorded in events:
        for key in keys(projection, recorded):
            try:
                state = apply_to(projection, states.get(key) or projection.initial(key), recorded)
            except FoldError as exc:
                if errors is not None:
                    errors.append(str(exc))
                continue
            if state is None:
                states.pop(key, None)
            else:
                states[key] = state
    return states


def keys(projection: Projection, recorded: Recorded) -> tuple[str, ...]:
    found = projection.key_of(recorded)
    if found is None:
        return ()
    return (found,) if isinstance(found, str) else found


TRIAL_SCOPE = "/"
"""Between a trial's id and a projection's key in the tables' and the replay's keys."""


def scope(trial_id: str) -> str:
    """The prefix of every key of ``trial_id`` in a table or a replay's states (decision 61):
    two trials of one deployment may both have a cohort "DL1"; under their scopes their keys
    never meet. A trial id holding the separator could be read as another's scope: refused."""
    if not trial_id or TRIAL_SCOPE in trial_id:
        raise ValueError(f"trial id {trial_id!r} cannot scope keys: it is empty or holds "
                         f"{TRIAL_SCOPE!r}")
    return trial_id + TRIAL_SCOPE


def table_keys(projection: Projection, recorded: Recorded) -> tuple[tuple[str, str], ...]:
    """Each key ``recorded`` changes, as ``(stored, key)``: ``stored`` scoped by the event's
    trial (the key of the table or of the replay's states), ``key`` the projection's own (what
    ``initial`` and ``render`` see). The one place both the worker (projections/applying.py)
    and the replay (:func:`fold_trials`) scope a key."""
    found = keys(projection, recorded)
    if not found:
        return ()
    prefix = scope(recorded.envelope.trial_id)
    return tuple((prefix + key, key) for key in found)


def trial_states(states: Mapping[str, State], trial_id: str) -> dict[str, State]:
    """One trial's states, keyed by the projection's own keys (its scope stripped): what its
    ``render`` takes. Another trial's keys are left out."""
    prefix = scope(trial_id)
    return {key[len(prefix):]: state for key, state in states.items()
            if key.startswith(prefix)}


def of_trial(
    projections: Mapping[str, V], recorded: Recorded, errors: list[str] | None
) -> V | None:
    """What ``projections`` (by trial id) holds for the event's trial; None, with the reason in
    ``errors`` as for a fold error, when the deployment does not run that trial: its event is
    folded by no trial's projections rather than by another trial's."""
    e = recorded.envelope
    found = projections.get(e.trial_id)
    if found is None and errors is not None:
        errors.append(
            f"{e.event_type} {e.event_id} (stream {e.stream_id} seq {e.stream_seq}) is of trial "
            f"{e.trial_id}, which this deployment does not run (it runs "
            f"{', '.join(sorted(projections))}): not folded"[:1000]
        )
    return found


def fold_trials(
    projections: Mapping[str, Projection],
    events: Iterable[Recorded],
    states: dict[str, State] | None = None,
    errors: list[str] | None = None,
) -> dict[str, State]:
    """:func:`fold` for a deployment of several trials: each event by its own trial's
    projection (``projections``: trial id -> the projection built from that trial's file), into
    trial-scoped keys (:func:`table_keys`), as the worker applies it. :func:`trial_states` gives
    one trial's states back, which equal :func:`fold` of that trial's events alone."""
    states = {} if states is None else states
    for recorded in events:
        projection = of_trial(projections, recorded, errors)
        if projection is None:
            continue
        for stored, key in table_keys(projection, recorded):
            try:
                state = apply_to(projection, states.get(stored) or projection.initial(key),
                                 recorded)
            except FoldError as exc:
                if errors is not None:
                    errors.append(str(exc))
                continue
            if state is None:
                states.pop(stored, None)
            else:
                states[stored] = state
    return states


def ordered_insert(items: list[dict[str, Any]], item: dict[str, Any]) -> list[dict[str, Any]]:
    """``items`` with ``item`` added, ordered by business time, then recorded time, then event
    id: events of several topics arrive interleaved in no fixed order, and a fold that keeps
    facts in this order gives the same document live and on replay."""
    return sorted([*items, item], key=lambda x: (x["occurred_at"], x["recorded_at"], x["event_id"]))


def stamp(recorded: Recorded) -> dict[str, str]:
    """The fields ``ordered_insert`` orders by."""
    e = recorded.envelope
    return {
        "event_id": str(e.event_id),
        "occurred_at": e.occurred_at.isoformat(),
        "recorded_at": e.recorded_at.isoformat(),
    }


def to_json(document: Any) -> bytes:
    """The one serialisation of a projection document: the live view and the replay share it."""
    return orjson.dumps(
        document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    )
