"""``trialops simulate``: a whole simulated trial through the public command API.

Mounted in ``trialops.cli`` with ``app.command("simulate")(simulate)``.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from infra.settings import recorded_url

# The running `trialops up`'s servers, on whatever ports, unless told otherwise.
DEFAULT_SERVICE_URL = recorded_url("service_url") or "http://127.0.0.1:8081"
DEFAULT_PROJECTIONS_URL = (
    os.environ.get("TRIALOPS_PROJECTIONS_URL")
    or recorded_url("projections_url")
    or "http://127.0.0.1:6066"
)


def simulate(
    patients: Annotated[
        int,
        typer.Option(
            help="Patients to treat: a multiple of the 3+3 cohort size, 6 to the trial's "
            "maximum (18). More are screened (screen failures, a withdrawal)."
        ),
    ] = 18,
    seed: Annotated[
        int, typer.Option(help="The same seed gives the same trial: subjects, outcomes, times.")
    ] = 7,
    speed: Annotated[
        float,
        typer.Option(help="Wall-clock seconds to pause between commands (0: as fast as possible)."),
    ] = 0.0,
    service_url: Annotated[
        str, typer.Option(envvar="TRIALOPS_SERVICE_URL", help="The command services' HTTP address.")
    ] = DEFAULT_SERVICE_URL,
    projections_url: Annotated[
        str,
        typer.Option(
            envvar="TRIALOPS_PROJECTIONS_URL", help="The projections worker's HTTP address."
        ),
    ] = DEFAULT_PROJECTIONS_URL,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the closing summary.")] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the services and the worker to answer.")
    ] = 60.0,
):
    """Drive a simulated phase I trial (screening, enrollment, manufacturing, infusions,
    adverse events, DLTs and the dose-escalation review) through the public command API, on
    a simulated calendar, into a fresh namespace; print progress and a closing summary."""
    from clients.http import DEMO_READER, wait_until_up
    from clients.journey import JourneyStepRefused
    from clients.simulate import PlanError, SimulationError
    from clients.simulate import simulate as run
    from clients.simulate_plan import ladder
    from trial.config import TrialConfigError, load_trial

    def say(line: str) -> None:
        if not quiet:
            typer.echo(line)

    try:
        ladder(load_trial(), patients)  # refuse a bad --patients before waiting for anything
        wait_until_up(f"{service_url}/health", timeout, "the command services")
        wait_until_up(
            f"{projections_url}/projections/cohort-occupancy", timeout, "the projections worker",
            token=DEMO_READER,
        )
        report = run(patients, seed, service_url, projections_url, speed=speed, say=say)
    except (PlanError, TrialConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (TimeoutError, SimulationError, JourneyStepRefused, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(report.summary())


WALK_STAGES = ("enrolled", "released", "infused")


def walk(
    subject_id: Annotated[
        str, typer.Argument(help="A new pseudonymous subject id, e.g. MSK-0102.")
    ],
    cohort: Annotated[
        str, typer.Option(help="An open cohort with a free slot (the demo leaves DL1-IP's open).")
    ] = "DL1-IP",
    to: Annotated[
        str, typer.Option(help="How far: enrolled, released (the lot) or infused.")
    ] = "infused",
    start: Annotated[
        str, typer.Option(help="Day 0 of the patient's calendar (ISO date, UTC): registration.")
    ] = "2026-03-02",
    enrolled: Annotated[
        bool,
        typer.Option("--enrolled", help="The subject is already enrolled in --cohort (by hand, "
                     "on the same calendar): go on from the apheresis."),
    ] = False,
    site: Annotated[str, typer.Option(help="The site's id.")] = "MSK",
    service_url: Annotated[
        str, typer.Option(envvar="TRIALOPS_SERVICE_URL", help="The command services' HTTP address.")
    ] = DEFAULT_SERVICE_URL,
):
    """Walk one patient through the command API as the demo users (needs 'serve --demo'):
    registration, pre-screening, consent, eligibility and enrollment, then apheresis,
    manufacturing and release, conditioning, the bedside check and the infusion; each command
    with its business time on the patient's calendar (clients/journey_steps.py). Prints each
    step's events; a refusal stops the walk naming the rule (exit 1)."""
    from datetime import UTC, datetime

    from clients.journey import Journey, JourneyStepRefused
    from clients.journey_steps import cohort_of
    from trial.config import TrialConfigError, load_trial

    if to not in WALK_STAGES:
        raise _refuse(f"--to must be one of {', '.join(WALK_STAGES)}, not {to!r}")
    try:
        day0 = datetime.fromisoformat(start).replace(tzinfo=UTC)
    except ValueError:
        raise _refuse(f"--start: {start!r} is not an ISO date like 2026-03-02") from None
    try:
        trial = load_trial()
        level = cohort.rsplit("-", 1)[0]
        chosen = cohort_of(trial, level, cohort)
    except (TrialConfigError, KeyError, ValueError) as exc:
        raise _refuse(f"--cohort {cohort!r}: {exc.args[0] if exc.args else exc}") from None

    def transport(method, url, body=None, *, token=None):
        from clients.http import call

        status, answer = call(method, url, body, token=token)
        if status == 201:
            path = url.removeprefix(service_url.rstrip("/"))
            types = ", ".join(e["event_type"] for e in answer.get("events", []))
            typer.echo(f"  {path}: {types}")
        return status, answer

    journey = Journey(service_url.rstrip("/"), subject_id, site, day0, trial=trial,
                      transport=transport)
    if enrolled:
        journey.done = ["register", "prescreen", "consent", "assess-eligibility", "enroll"]
        journey.cohort = chosen
    try:
        journey.to_enrolled(chosen)
        if to != "enrolled":
            journey.to_released_lot()
        if to == "infused":
            journey.to_infused()
    except JourneyStepRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: the command services at {service_url}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{subject_id}: {to} in {chosen.cohort_id} ({len(journey.done)} steps; lot "
               f"{journey.lot_id})")


def _refuse(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)
