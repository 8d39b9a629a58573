"""``trialops report escalation-meeting|safety-review``: the PDF packets a dose-escalation
meeting and a safety review committee work from (audit/reports/), built from one replay of the
log through the one reading rule, as the exports are.

The PDF is written beside its name and renamed when complete, so a packet file that exists
holds the whole packet; the one-line summary goes to stderr. Bad arguments, an unknown cohort,
a period whose start is not before its end and missing topics exit 2 naming the option and the
rule, without a traceback. A log that was not read whole (a partition stopped at an unreadable
record, or quarantined records passed over: ``audit.replay.ReplayStats``) exits 3 naming them
and writes nothing, unless ``--allow-partial``: then the packet is written with a banner on its
first page naming them, and the command exits 0.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from infra.settings import Settings
from trialops.cli_audit import TrialOption, chosen
from trialops.times import aware_time

app = typer.Typer(
    help="PDF packets for the dose-escalation meeting and the safety review committee.",
    no_args_is_help=True,
)

ESCALATION_CONTEXTS = ("enrollment", "dosing", "safety")
SAFETY_CONTEXTS = ("enrollment", "dosing", "manufacturing", "safety")


PARTIAL_EXIT = 3
"""The exit status of a packet refused because the log was not read whole."""

AllowPartial = Annotated[
    bool,
    typer.Option(
        "--allow-partial",
        help="Write the packet even if a partition stopped at an unreadable record or "
        "quarantined records were passed over; its first page says so. Without it such a "
        "log exits 3 and writes nothing.",
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _packet(
    contexts: tuple[str, ...],
    output: Path,
    build: Callable[[list[Any], Any, Any], Any],
    allow_partial: bool,
    trial_id: str,
    trials: dict,
) -> None:
    """Replay ``contexts`` of one trial (``trial_id`` of the deployment's ``trials``), build
    the packet with that trial's configuration, write the PDF, say what it holds. A log not
    read whole is refused (exit 3) unless ``allow_partial``."""
    from audit import replay
    from audit.replay import ReplayStats
    from audit.reports.facts import Reading, ReportError
    from audit.reports.render import write_pdf
    from trialops.cli import _progress, report_reading

    trial = trials[trial_id]
    stats = ReplayStats(progress=_progress)
    partial = output.with_name(f"{output.name}.partial")
    try:
        events = list(replay.trial_events(Settings.reachable(), contexts, stats, trial_id,
                                          trials))
        reading = Reading(tuple(stats.halts), tuple(stats.quarantined))
        report = build(events, trial, reading)
        if reading.partial and not allow_partial:
            report_reading(stats)
            raise _fail(
                f"the log was not read whole: {reading.describe()}; no packet written. "
                "Have the records examined (trialops verify; a sponsor's quarantine, POST "
                "/quarantines) and run again, or "
                "pass --allow-partial to write the packet with a banner naming them",
                PARTIAL_EXIT,
            )
        pages = write_pdf(report, partial, datetime.now(UTC).isoformat(timespec="seconds"))
        partial.replace(output)
    except ReportError as exc:
        raise _fail(str(exc)) from None
    except LookupError as exc:
        raise _fail(f"{exc}; create the topics with 'trialops topics create'") from None
    except ValueError as exc:  # no keyring, or an unusable one
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"--output: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    typer.echo(
        f"wrote {report.title} ({pages} pages) to {output} "
        f"({stats.events} records read in {stats.seconds:.2f}s)"
        + ("; partial: its first page names what was not read" if reading.partial else ""),
        err=True,
    )
    report_reading(stats)


@app.command("escalation-meeting")
def escalation_meeting(
    cohort: Annotated[str, typer.Option(help="The cohort the meeting reviews, e.g. DL2-IP.")],
    output: Annotated[Path, typer.Option(help="The PDF file to write.")],
    allow_partial: AllowPartial = False,
    trial: TrialOption = None,
):
    """The dose-escalation meeting's packet for COHORT: its subjects (dose level, route,
    infusion, DLT-evaluable, DLT), the DLT adjudications with their signatures, its AEs by
    grade and attribution, the design's recommendation with its evidence and the review's
    decisions, with the event ids behind every figure."""
    from audit.reports.escalation_meeting import escalation_meeting as build

    _packet(
        ESCALATION_CONTEXTS,
        output,
        lambda events, trial, reading: build(events, trial, cohort, reading),
        allow_partial,
        *chosen(trial),
    )


@app.command("safety-review")
def safety_review(
    start: Annotated[
        str, typer.Option("--from", help="ISO 8601 time with zone: the period's start.")
    ],
    end: Annotated[str, typer.Option("--to", help="ISO 8601 time with zone: the period's end.")],
    output: Annotated[Path, typer.Option(help="The PDF file to write.")],
    allow_partial: AllowPartial = False,
    trial: TrialOption = None,
):
    """The safety review committee's packet for a period of business time: AEs with onset in
    it by grade and attribution, the serious ones, the expedited reports and their clocks, the
    DLT adjudications and evaluations, pauses and safety reviews, with the event ids behind
    every figure."""
    from audit.reports.facts import ReportError
    from audit.reports.safety_review import check_period
    from audit.reports.safety_review import safety_review as build

    first, last = aware_time("--from", start), aware_time("--to", end)
    trial_id, trials = chosen(trial)
    try:
        check_period(first, last)  # before reading the log: the answer does not depend on it
    except ReportError as exc:
        raise _fail(str(exc)) from None
    _packet(
        SAFETY_CONTEXTS,
        output,
        lambda events, trial, reading: build(events, trial, first, last, reading),
        allow_partial,
        trial_id,
        trials,
    )
