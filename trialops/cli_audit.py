"""``trialops audit trail`` and ``trialops export``: the audit trail of a subject, a lot or a
cohort, and the event log as JSON Lines or CSV.

Results go to stdout (or ``--output``), counts and warnings to stderr. Bad arguments and
missing topics exit 2 with a message, without a traceback.
"""

from __future__ import annotations

import enum
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from infra.settings import Settings
from trialops.times import aware_time

audit_app = typer.Typer(
    help="Audit trails read from the event log (21 CFR 11.10(e), 11.50).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
export_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

_SHOWN_UNREADABLE = 20


class TrailFormat(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    odm = "odm"


class ExportFormat(enum.StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    sdtm_ae = "sdtm-ae"
    fhir = "fhir"
    xlsx = "xlsx"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _time(option: str, value: str | None) -> datetime | None:
    return None if value is None else aware_time(option, value)


TrialOption = Annotated[
    str | None,
    typer.Option("--trial", help="The trial's id (default: the deployment's only trial; "
                 "needed when TRIALOPS_TRIALS names several)."),
]


def chosen(trial: str | None) -> tuple[str, dict]:
    """The trial a command reads (``--trial``, or the deployment's only one) and the
    deployment's trials by id: one trial's events and configuration, never two trials' in one
    inbox, trail, export or packet (decision 62). Exit 2 naming ``--trial`` when several
    trials run and none is named, or the one named is not run."""
    from projections.catalog import TrialNotNamed, UnknownTrial, chosen_trial
    from trial.config import TrialConfigError, load_trials

    try:
        trials = load_trials()
        return chosen_trial(trials, trial), trials
    except (TrialNotNamed, UnknownTrial) as exc:
        raise _fail(f"--trial: {exc.args[0]}") from None
    except TrialConfigError as exc:
        raise _fail(str(exc)) from None


@audit_app.callback()
def audit() -> None:
    """Audit trails read from the event log (21 CFR 11.10(e), 11.50)."""


@audit_app.command("trail")
def trail(
    subject: Annotated[str | None, typer.Option(help="Events naming this subject id.")] = None,
    lot: Annotated[str | None, typer.Option(help="Events naming this lot id.")] = None,
    cohort: Annotated[str | None, typer.Option(help="Events naming this cohort id.")] = None,
    user: Annotated[
        str | None,
        typer.Option(help="Events this user recorded, and every change to their access."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="ISO 8601 time with zone: recorded at or after it."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="ISO 8601 time with zone: recorded at or before it.")
    ] = None,
    output_format: Annotated[
        TrailFormat, typer.Option("--format", help="table, csv, json or odm (CDISC ODM 1.3.2).")
    ] = TrailFormat.table,
    trial: TrialOption = None,
):
    """Who did what, when and why, to a subject, a lot or a cohort, or by a user.

    Every event naming the subject, lot or cohort (all given must match) in recorded order;
    a correction with what it changed, beside the original; each signature on the record it
    signs, flagged when it does not match it."""
    from audit import trail as trails
    from audit.replay import ReplayStats

    if subject is None and lot is None and cohort is None and user is None:
        raise _fail("choose what to audit: --subject ID, --lot ID, --cohort ID or --user ID")
    window = _time("--from", start), _time("--to", end)
    if window[0] is not None and window[1] is not None and window[0] > window[1]:
        raise _fail(f"--from {start} is after --to {end}")
    try:
        selection = trails.Selection(subject, lot, cohort, *window, user_id=user)
    except trails.SelectionError as exc:
        raise _fail(str(exc)) from None
    trial_id, trials = chosen(trial)
    from trialops.cli import _progress

    settings = Settings.reachable()
    stats = ReplayStats(progress=_progress)
    try:
        found = trails.read_trail(settings, selection, stats, trial_id, trials)
    except LookupError as exc:
        raise _fail(f"{exc}; create the topics with 'trialops topics create'") from None
    except ValueError as exc:  # no keyring, or an unusable one
        raise _fail(str(exc)) from None
    if output_format is TrailFormat.table:
        sys.stdout.write(trails.to_table(found.rows))
    elif output_format is TrailFormat.csv:
        sys.stdout.write(trails.to_csv(found.rows))
    elif output_format is TrailFormat.json:
        sys.stdout.buffer.write(trails.to_json(found.rows))
    else:
        from audit.odm import to_odm

        document = to_odm(
            found,
            trial_id=trial_id,
            created_at=datetime.now(UTC),
            source_version=_version(),
        )
        sys.stdout.buffer.write(document)
    sys.stdout.flush()
    flagged = sum(1 for row in found.rows if row.flags)
    typer.echo(
        f"audit trail of {selection.describe()}: {len(found.rows)} events "
        f"({stats.events} records read in {stats.seconds:.2f}s)",
        err=True,
    )
    from trialops.cli import report_reading

    report_reading(stats)
    if flagged:
        typer.echo(f"warning: {flagged} event(s) carry a signature problem (see flags)", err=True)
    for problem in found.problems:
        typer.echo(f"warning: {problem}", err=True)


@export_app.command()
def export(
    output_format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="jsonl (the wire bytes), csv, sdtm-ae (CDISC SDTM AE, SAS XPORT v5), fhir "
            "(an HL7 FHIR R5 bundle) or xlsx (the projections); the last three need --output.",
        ),
    ] = ExportFormat.jsonl,
    subject: Annotated[
        str | None,
        typer.Option(help="Only the events naming this subject id, and their signatures."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="File to write (default: stdout).", dir_okay=False)
    ] = None,
    trial: TrialOption = None,
):
    """Export one trial's event log (--trial), or one subject's events, as JSON Lines or CSV.

    JSON Lines: one envelope per line exactly as on the wire, so its hash verifies. CSV: the
    envelope's fields in columns, the payload as JSON. Progress and counts go to stderr.
    sdtm-ae: the adverse events replayed from the log as the SDTM AE domain (audit/sdtm.py).
    fhir: the trial, its subjects and their AEs as a FHIR R5 bundle (audit/fhir.py).
    xlsx: every projection replayed, a sheet per list of records (audit/workbook.py)."""
    from trialops.cli_exports import DOMAIN_FORMATS, export_domain

    if output_format.value in DOMAIN_FORMATS:
        if subject is not None:
            raise _fail(f"--subject: --format {output_format.value} exports the whole trial")
        export_domain(output_format.value, output, *chosen(trial))
        return
    trial_id, _trials = chosen(trial)
    from audit import export as exporting

    def progress(stats: exporting.ExportStats) -> None:
        rate = stats.read / max(stats.seconds, 1e-9)
        typer.echo(f"  ... {stats.read} events read, {rate:,.0f} events/s", err=True)

    stats = exporting.ExportStats()
    selected = exporting.select(
        exporting.wire_records(Settings.reachable()), stats, subject_id=subject, progress=progress,
        trial_id=trial_id,
    )
    # A file is written beside its name and renamed when complete: an export file that exists
    # holds the whole export.
    partial = None if output is None else output.with_name(f"{output.name}.partial")
    try:
        if output_format is ExportFormat.jsonl:
            if partial is None:
                exporting.write_jsonl(selected, sys.stdout.buffer)
            else:
                with partial.open("wb") as out:
                    exporting.write_jsonl(selected, out)
        elif partial is None:
            exporting.write_csv(selected, sys.stdout)
        else:
            with partial.open("w", newline="", encoding="utf-8") as text:
                exporting.write_csv(selected, text)
        if partial is not None and output is not None:
            partial.replace(output)
    except LookupError as exc:
        raise _fail(f"{exc}; create the topics with 'trialops topics create'") from None
    except ValueError as exc:  # no keyring, or an unusable one
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"--output: {exc}") from None
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    sys.stdout.flush()
    rate = stats.read / max(stats.seconds, 1e-9)
    typer.echo(
        f"exported {stats.exported} of {stats.read} events "
        f"({stats.seconds:.2f}s, {rate:,.0f} events/s)"
        + (f" to {output}" if output is not None else ""),
        err=True,
    )
    _report_unreadable(stats.unreadable)
    if stats.other_trials:
        typer.echo(f"note: {stats.other_trials} event(s) of other trials than {trial_id} "
                   "not exported", err=True)


def _report_unreadable(unreadable: list[str]) -> None:
    if not unreadable:
        return
    typer.echo(f"warning: {len(unreadable)} unreadable record(s) skipped", err=True)
    for where in unreadable[:_SHOWN_UNREADABLE]:
        typer.echo(f"  {where}", err=True)
    if len(unreadable) > _SHOWN_UNREADABLE:
        typer.echo(f"  ... and {len(unreadable) - _SHOWN_UNREADABLE} more", err=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trialops")
    except PackageNotFoundError:
        return ""
