"""``trialops show`` and ``trialops status``: the projections as tables, read from the worker."""

from __future__ import annotations

import os
import urllib.parse
from typing import Annotated

import orjson
import typer

from clients.http import TOKEN_ENV, call, reader_token
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
DEFAULT_URL = os.environ.get("TRIALOPS_PROJECTIONS_URL", "http://127.0.0.1:6066")


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


def _print(doc: dict, as_json: bool, render) -> None:
    if as_json:
        typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(render(doc))


@app.command()
def cohorts(
    url: Url = DEFAULT_URL, cohort: str | None = None, wait_for: WaitFor = None, json: Json = False
):
    """Cohort occupancy and the waiting list."""
    _print(
        fetch(url, "cohort-occupancy", cohort_id=cohort, wait_for=wait_for), json, tables.cohorts
    )


@app.command()
def escalation(url: Url = DEFAULT_URL, wait_for: WaitFor = None, json: Json = False):
    """The dose-escalation recommendation, its evidence and the review's decisions."""
    _print(fetch(url, "dose-escalation", wait_for=wait_for), json, tables.escalation)


@app.command()
def lots(
    url: Url = DEFAULT_URL, lot: str | None = None, wait_for: WaitFor = None, json: Json = False
):
    """The manufacturing pipeline: lots, chain of identity, vein-to-vein times."""
    _print(fetch(url, "manufacturing-pipeline", lot_id=lot, wait_for=wait_for), json, tables.lots)


@app.command()
def safety(
    url: Url = DEFAULT_URL, as_of: str | None = None, wait_for: WaitFor = None, json: Json = False
):
    """AEs, DLT windows, DLTs per cohort and the expedited-report clock."""
    _print(fetch(url, "safety", as_of=as_of, wait_for=wait_for), json, tables.safety)


@app.command()
def timeline(
    subject: Annotated[str, typer.Argument(help="Pseudonymous subject id.")],
    url: Url = DEFAULT_URL,
    wait_for: WaitFor = None,
    json: Json = False,
):
    """Everything that happened to one subject, with who recorded it."""
    _print(
        fetch(url, "patient-timeline", subject_id=subject, wait_for=wait_for), json, tables.timeline
    )


def status(url: Url = DEFAULT_URL):
    """The trial at a glance: cohorts, escalation, manufacturing and safety."""
    parts = [
        tables.cohorts(fetch(url, "cohort-occupancy")),
        tables.escalation(fetch(url, "dose-escalation")),
        tables.lots(fetch(url, "manufacturing-pipeline")),
        tables.safety(fetch(url, "safety")),
    ]
    typer.echo("\n\n".join(parts))
