"""``trialops simulate``: a whole simulated trial through the public command API.

Mounted in ``trialops.cli`` with ``app.command("simulate")(simulate)``.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

DEFAULT_SERVICE_URL = "http://127.0.0.1:8081"
DEFAULT_PROJECTIONS_URL = os.environ.get("TRIALOPS_PROJECTIONS_URL", "http://127.0.0.1:6066")


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
        str, typer.Option(help="The command services' HTTP address.")
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
