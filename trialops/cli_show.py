"""``trialops show`` and ``trialops status``: the projections as tables, read from the worker."""

from __future__ import annotations

import os
import urllib.parse
from typing import Annotated

import orjson
import typer

from clients.http import TOKEN_ENV, call, reader_token
from infra.settings import recorded_url
from projections.catalog import get as projection
from projections.paging import DEFAULT_LIMIT, MAX_LIMIT, NEXT, assemble
from trialops import tables

app = typer.Typer(
    help="Show a projection as a table (from the Faust worker).", no_args_is_help=True
)

Url = Annotated[
    str,
    typer.Option(envvar="TRIALOPS_PROJECTIONS_URL", help="The projections worker's HTTP address."),
]
Json = Annotated[bool, typer.Option("--json", help="Print the projection's JSON instead.")]
WaitFor = Annotated[
    str | None,
    typer.Option(help="TOPIC:PARTITION:OFFSET from a command's answer: wait until applied."),
]
Limit = Annotated[
    int | None,
    typer.Option(help=f"Items per page of the list, 1 to {MAX_LIMIT} (the worker's default: "
                 f"{DEFAULT_LIMIT})."),
]
Cursor = Annotated[
    str | None, typer.Option(help="The next_cursor a page gave: the page after it.")
]
Every = Annotated[
    bool, typer.Option("--all", help="Follow next_cursor to the end: the whole list.")
]
Trial = Annotated[
    str | None,
    typer.Option("--trial", help="The trial's id (default: the deployment's only trial; "
                 "needed when TRIALOPS_TRIALS names several)."),
]
DEFAULT_URL = (
    os.environ.get("TRIALOPS_PROJECTIONS_URL")
    or recorded_url("projections_url")  # the running `trialops up`'s, on whatever port
    or "http://127.0.0.1:6066"
)


def trial_of(trial: str | None) -> str | None:
    """The ``trial_id`` to ask for: ``--trial``, or none when the deployment runs one trial
    (the worker answers for it); a deployment of several needs ``--trial`` (decision 61)."""
    if trial is not None:
        return trial
    from projections.catalog import TrialNotNamed, chosen_trial
    from trial.config import TrialConfigError, load_trials

    try:
        chosen_trial(load_trials(), None)
    except TrialNotNamed as exc:
        typer.echo(f"error: --trial: {exc}", err=True)
        raise typer.Exit(2) from None
    except TrialConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return None


def fetch(url: str, name: str, **query: str | None) -> dict:
    """``name``'s document, read with the bearer token in ``TRIALOPS_TOKEN``."""
    params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    token = reader_token()
    try:
        status, body = call(
            "GET", f"{url}/projections/{name}" + (f"?{params}" if params else ""), token=token
        )
    except OSError as exc:
        typer.echo(f"error: the projections worker at {url} does not answer ({exc})", err=True)
        raise typer.Exit(2) from None
    if status == 401 and token is None:
        typer.echo(f"error: {name}: set {TOKEN_ENV} to a bearer token of any trial role", err=True)
        raise typer.Exit(1)
    if status != 200:
        typer.echo(f"error: {name}: {body.get('message', body)}", err=True)
        raise typer.Exit(1)
    return body


def fetch_list(
    url: str, name: str, limit: int | None, cursor: str | None, every: bool, **query: str | None
) -> dict:
    """A page of ``name``'s list (decision 41), or with ``every`` the whole document put
    together from the pages after ``cursor``. A page that is not the last says on stderr how
    to ask for the next."""
    size = None if limit is None else str(limit)
    doc = fetch(url, name, limit=size, cursor=cursor, **query)
    if not every:
        if doc.get(NEXT):
            typer.echo(f"more: --cursor {doc[NEXT]}", err=True)
        return doc
    listing = projection(name).listing
    assert listing is not None, f"{name} is not a list view"
    pages = [doc]
    while pages[-1].get(NEXT):
        pages.append(fetch(url, name, limit=size, cursor=pages[-1][NEXT], **query))
    return assemble(listing, pages)


def _print(doc: dict, as_json: bool, render) -> None:
    if as_json:
        typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(render(doc))


@app.command()
def cohorts(
    url: Url = DEFAULT_URL,
    cohort: str | None = None,
    wait_for: WaitFor = None,
    json: Json = False,
    limit: Limit = None,
    cursor: Cursor = None,
    every: Every = False,
    trial: Trial = None,
):
    """Cohort occupancy and the waiting list (the screening list, in ``--json``, a page at a
    time)."""
    if cohort is not None:  # one cohort's answer: no screening list to page
        doc = fetch(url, "cohort-occupancy", cohort_id=cohort, wait_for=wait_for,
                    trial_id=trial_of(trial))
    else:
        doc = fetch_list(url, "cohort-occupancy", limit, cursor, every, wait_for=wait_for,
                         trial_id=trial_of(trial))
    if not json and "cohorts" not in doc:
        typer.echo("error: a later page of cohort-occupancy holds its screening list only: "
                   "add --json", err=True)
        raise typer.Exit(1)
    _print(doc, json, tables.cohorts)


@app.command()
def escalation(
    url: Url = DEFAULT_URL, wait_for: WaitFor = None, json: Json = False, trial: Trial = None
):
    """The dose-escalation recommendation, its evidence and the review's decisions."""
    _print(fetch(url, "dose-escalation", wait_for=wait_for, trial_id=trial_of(trial)), json,
           tables.escalation)


@app.command()
def lots(
    url: Url = DEFAULT_URL,
    lot: str | None = None,
    wait_for: WaitFor = None,
    json: Json = False,
    limit: Limit = None,
    cursor: Cursor = None,
    every: Every = False,
    trial: Trial = None,
):
    """The manufacturing pipeline: lots (a page at a time), chain of identity, vein-to-vein
    times."""
    doc = fetch_list(
        url, "manufacturing-pipeline", limit, cursor, every, lot_id=lot, wait_for=wait_for,
        trial_id=trial_of(trial),
    )
    _print(doc, json, tables.lots)


@app.command()
def safety(
    url: Url = DEFAULT_URL,
    as_of: str | None = None,
    wait_for: WaitFor = None,
    json: Json = False,
    limit: Limit = None,
    cursor: Cursor = None,
    every: Every = False,
    trial: Trial = None,
):
    """AEs, DLT windows, DLTs per cohort and the expedited-report clock (the AE list, in
    ``--json``, a page at a time)."""
    doc = fetch_list(url, "safety", limit, cursor, every, as_of=as_of, wait_for=wait_for,
                     trial_id=trial_of(trial))
    if not json and "as_of" not in doc:
        typer.echo("error: a later page of safety holds its AE list only: add --json", err=True)
        raise typer.Exit(1)
    _print(doc, json, tables.safety)


@app.command()
def timeline(
    subject: Annotated[
        str | None, typer.Argument(help="Pseudonymous subject id; without it, every subject.")
    ] = None,
    url: Url = DEFAULT_URL,
    wait_for: WaitFor = None,
    json: Json = False,
    limit: Limit = None,
    cursor: Cursor = None,
    every: Every = False,
    trial: Trial = None,
):
    """Everything that happened to one subject (or to every subject, a page at a time), with
    who recorded it."""
    doc = fetch_list(
        url, "patient-timeline", limit, cursor, every, subject_id=subject, wait_for=wait_for,
        trial_id=trial_of(trial),
    )
    _print(doc, json, tables.timeline)


def status(url: Url = DEFAULT_URL, trial: Trial = None):
    """The trial at a glance: cohorts, escalation, manufacturing and safety."""
    trial_id = trial_of(trial)
    parts = [
        tables.cohorts(fetch(url, "cohort-occupancy", trial_id=trial_id)),
        tables.escalation(fetch(url, "dose-escalation", trial_id=trial_id)),
        tables.lots(fetch(url, "manufacturing-pipeline", trial_id=trial_id)),
        tables.safety(fetch(url, "safety", trial_id=trial_id)),
    ]
    typer.echo("\n\n".join(parts))
