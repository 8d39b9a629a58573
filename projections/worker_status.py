"""The worker's watch over its partitions and the pages that report on it: ``/ready``,
``/metrics``, the dashboard and ``/projections`` (what each trial's projections have applied).

Two watches run on timers. A worker whose group assigned it no event topic exits, to be started
again. A held partition whose position stands still while records wait beyond it is read again
from its position (decision 69, ``projections/continuity.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import faust

from events.reading import Halt
from projections.applying import dead_letter_counts
from projections.continuity import stalled
from projections.faust_kafka import MARKERS
from projections.metrics import CONTENT_TYPE, WorkerState, exposition
from projections.owner import holder_of, holder_problem, own_url
from projections.views import (
    TrialReaders,
    _answer_elsewhere,
    _not_a_reader_of,
    _trial_of,
    _unauthorized,
)
from services.problems import PROBLEM_JSON, problem_document
from trial.config import TrialConfig

log = logging.getLogger(__name__)

ASSIGNMENT_CHECK_SECONDS = 10.0
UNASSIGNED_CHECKS_BEFORE_EXIT = 4
"""A worker left without its event topics for this many checks in a row exits (and is
started again by ``trialops worker``)."""
STALL_CHECK_SECONDS = 10.0
"""How often the worker looks for a held partition whose position stands still while records
wait beyond it (decision 69)."""
DASHBOARD = Path(__file__).with_name("dashboard.html")
"""The read-only operations board: one static page that polls the projections' JSON."""


def watch_and_serve_status(
    app: faust.App,
    *,
    readers: Mapping[str, Any],
    positions: MutableMapping[str, int],
    halts: dict[str, Halt],
    dead_lettered: Any,
    alerts: Any,
    readers_now: TrialReaders,
    trials: Mapping[str, TrialConfig],
    sources: tuple[str, ...],
    partitions: int,
    names: list[str],
) -> None:
    """Start the watches and serve the status pages of a worker folding ``readers``' topics
    (per event topic, per trial, the projections that fold it) into tables whose next offsets
    are ``positions``, its agents halted at ``halts``."""
    unassigned_checks = [0]

    def unassigned() -> list[str]:
        assigned = {tp.topic for tp in app.consumer.assignment()}
        return sorted(topic for topic in readers if topic not in assigned)

    @app.timer(interval=ASSIGNMENT_CHECK_SECONDS)
    async def watch_assignment():
        """A worker whose group assigned it no event topic applies nothing, silently: this
        happened when the group's assignment ran on the metadata of a broker still starting
        (its topics not yet known) and was never redone. Such a worker exits; ``trialops
        worker`` starts it again, and its tables come back from their changelogs."""
        missing = unassigned()
        if missing and holder_of(app, missing) not in (None, own_url(app)):
            missing = []  # another member holds them: this one stands by (decision 58)
        unassigned_checks[0] = unassigned_checks[0] + 1 if missing else 0
        if unassigned_checks[0] >= UNASSIGNED_CHECKS_BEFORE_EXIT:
            log.critical("no partition of %s assigned for %.0f s: exiting to start afresh",
                         ", ".join(missing),
                         ASSIGNMENT_CHECK_SECONDS * UNASSIGNED_CHECKS_BEFORE_EXIT)
            os._exit(3)

    looked: list[dict[str, int]] = [{}]
    """The held event partitions' positions at the previous look."""

    @app.timer(interval=STALL_CHECK_SECONDS)
    async def watch_positions():
        """A held partition whose position stands still while records wait beyond it is read
        again from its position (decision 69): the scale-out test once found a worker holding
        a partition 91 records behind, applying nothing, with nothing logged. Copies that come
        again are skipped (projections/applying.py)."""
        if app.rebalancing or not app.flow_control.is_active():
            looked[0] = {}
            return
        held = {f"{tp.topic}:{tp.partition}": tp
                for tp in app.consumer.assignment() if tp.topic in readers}
        now = {source: positions[source] for source in held}
        ends: dict[str, int | None] = {}
        for source, tp in held.items():
            try:
                ends[source] = app.consumer.highwater(tp)
            except Exception:  # no highwater known yet for this partition
                ends[source] = None
        stuck = stalled(looked[0], now, ends, halts, MARKERS)
        looked[0] = now
        for source in stuck:
            log.warning("%s stands at %d for %.0f s while its end is %s: reading it again from "
                        "there", source, now[source], STALL_CHECK_SECONDS, ends[source])
            await app.consumer.seek(held[source], now[source])

    @app.page("/ready", name="ready")
    async def ready(web, request):
        """200 when every event topic is assigned and no agent stands at an unreadable
        record; 503 naming what is not."""
        problems = [halt.describe() for _source, halt in sorted(halts.items())]
        standby_for = None
        if missing := unassigned():
            holder = holder_of(app, missing)
            if holder is not None and holder != own_url(app):
                standby_for = holder  # it answers the views by asking that worker
                if gone := await holder_problem(holder):
                    problems.append(gone)
            else:
                problems.append(f"no partition assigned yet of {', '.join(missing)}")
        body = {
            "ready": not problems,
            **({"standby_for": standby_for} if standby_for else {}),
            "halted": {source: halt.as_dict() for source, halt in sorted(halts.items())},
            "problems": problems,
            "lag": lag(),
            "alerts": alerts,
        }
        if not problems:
            return web.json(body)
        # Not ready is an RFC 9457 problem, as on the services (decision 44), with the same
        # members as before besides.
        return web.json(
            problem_document(503, "not-ready", "; ".join(problems), request.path, **body),
            status=503, content_type=PROBLEM_JSON,
        )

    def lag() -> dict[str, int]:
        """Per assigned event partition: records between what is applied and the end (commit
        markers included, so an idle partition shows 1 after a transactional append)."""
        behind = {}
        for tp in sorted(app.consumer.assignment()):
            if tp.topic in readers:
                source = f"{tp.topic}:{tp.partition}"
                try:
                    behind[source] = max(app.consumer.highwater(tp) - positions[source], 0)
                except Exception:  # no highwater known yet for this partition
                    continue
        return behind

    state = WorkerState(lag, lambda: list(halts), lambda: dead_letter_counts(dead_lettered))

    @app.page("/metrics", name="metrics")
    async def metrics(web, request):
        """Prometheus metrics (projections/metrics.py), open like ``/ready``: counts by topic
        and partition, no patient data (decision 47)."""
        return web.bytes(exposition(state), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/", name="dashboard")
    async def dashboard(web, request):
        # The page holds no data and asks for a token; every request for data sends it.
        return web.bytes(DASHBOARD.read_bytes(), content_type="text/html")

    @app.page("/projections", name="projections-status")
    async def status(web, request):
        if refused := _unauthorized(web, request, readers_now):
            return refused
        trial_id, refused = _trial_of(web, request, trials)  # decision 61
        if refused is not None:
            return refused
        if refused := _not_a_reader_of(web, request, readers_now, trial_id):
            return refused
        if elsewhere := await _answer_elsewhere(app, web, request, sources, trial_id,
                                                partitions):
            return elsewhere
        applied_up_to = {
            f"{p.name}|{topic_partition}": offset
            for topic_partition, offset in sorted(positions.items())
            for p in readers.get(topic_partition.rsplit(":", 1)[0], {}).get(trial_id, [])
        }
        return web.json(
            {
                "projections": names,
                "positions": applied_up_to,
                "dead_lettered": dead_letter_counts(dead_lettered),
                "halted": {source: halt.as_dict() for source, halt in sorted(halts.items())},
            }
        )

