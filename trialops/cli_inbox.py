"""``trialops inbox``: what a role must do next, from a replay of the log (projections/inbox.py).

The table (or ``--json``) goes to stdout, the one-line summary and warnings to stderr. Bad
arguments and missing topics exit 2 with a message, without a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer

from infra.settings import Settings
from projections.inbox import CONTEXTS, Item
from projections.inbox import document as inbox_document
from trialops.tables import table
from trialops.times import aware_time


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def document(items: Sequence[Item], role: str, as_of: datetime) -> dict[str, Any]:
    """The same document the worker's ``GET /projections/inbox`` answers."""
    return inbox_document(items, role, as_of)


def to_table(items: Sequence[Item]) -> str:
    rows = [
        (
            "OVERDUE" if i.overdue else "",
            "-" if i.due is None else i.due.isoformat(),
            i.kind,
            i.subject,
            i.route,
            i.detail,
            " ".join(i.why),
        )
        for i in items
    ]
    return table(("", "due", "what", "about", "command", "why", "events"), rows)


def summary(items: Sequence[Item], role: str, as_of: datetime) -> str:
    overdue = sum(1 for i in items if i.overdue)
    return (
        f"inbox of {role} as of {as_of.isoformat()}: {len(items)} pending, {overdue} overdue"
    )


def inbox(
    role: Annotated[
        str, typer.Option(help="The role whose actions are listed, e.g. safety_officer.")
    ],
    as_of: Annotated[
        str | None,
        typer.Option(help="ISO 8601 time with zone: the inbox at this moment (default: now)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
    trial: Annotated[
        str | None,
        typer.Option("--trial", help="The trial's id (default: the deployment's only trial; "
                     "needed when TRIALOPS_TRIALS names several)."),
    ] = None,
):
    """What ROLE must do next: each pending action with its deadline, whether it is overdue,
    the command that clears it and the events behind it, computed from a replay of one
    trial's log with that trial's rules (decision 62)."""
    from audit.replay import ReplayStats, trial_events
    from projections import inbox as inboxes
    from trialops.cli import _progress, report_reading
    from trialops.cli_audit import chosen

    trial_id, trials = chosen(trial)
    try:
        inboxes.check_role(role)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    moment = datetime.now(UTC) if as_of is None else aware_time("--as-of", as_of)
    stats = ReplayStats(progress=_progress)
    try:
        events = trial_events(Settings.reachable(), CONTEXTS, stats, trial_id, trials, moment)
        items = inboxes.inbox(events, trials[trial_id], moment, role)
    except LookupError as exc:
        raise _fail(f"{exc}; create the topics with 'trialops topics create'") from None
    except ValueError as exc:  # no keyring, or an unusable one
        raise _fail(str(exc)) from None
    report_reading(stats)
    if as_json:
        sys.stdout.buffer.write(
            orjson.dumps(
                document(items, role, moment),
                option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE,
            )
        )
    else:
        sys.stdout.write(to_table(items) + "\n")
    typer.echo(summary(items, role, moment), err=True)
