"""``trialops export --format sdtm-ae|fhir|xlsx``: the adverse events of one trial's log in a
standard format for downstream systems, and its projections as a workbook, replayed from the
topics as the audit trail and ``trialops replay`` are (``--trial``: decision 62).

The file is written beside its name and renamed when complete, so an export file that exists
holds the whole export; the one-line summary goes to stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from infra.settings import Settings

DOMAIN_FORMATS = ("sdtm-ae", "fhir", "xlsx")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def export_domain(kind: str, output: Path | None, trial_id: str, trials: dict) -> None:
    """Replay the contexts ``kind`` needs, of one trial (``trial_id`` of the deployment's
    ``trials``: decision 62), write the file, say what it holds."""
    from audit.replay import ReplayStats, trial_events
    from trialops.cli import _progress, report_reading

    if output is None:
        raise _fail(f"--format {kind} writes a file: give it with --output")
    settings = Settings.reachable()
    stats = ReplayStats(progress=_progress)
    writer, contexts = _WRITERS[kind]
    partial = output.with_name(f"{output.name}.partial")
    try:
        events = list(trial_events(settings, contexts, stats, trial_id, trials))
        summary = writer(events, Study(settings, trial_id, trials), partial)
        partial.replace(output)
    except LookupError as exc:
        raise _fail(f"{exc}; create the topics with 'trialops topics create'") from None
    except ValueError as exc:  # no keyring, an unusable one, or a value the format refuses
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"--output: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    typer.echo(
        f"exported {summary} to {output} ({stats.events} records read in {stats.seconds:.2f}s)",
        err=True,
    )
    report_reading(stats)


@dataclass(frozen=True)
class Study:
    """What an export is of: the deployment's settings and one of its trials."""

    settings: Settings
    trial_id: str
    trials: dict


def _sdtm_ae(events: list, study: Study, path: Path) -> str:
    from audit.sdtm import adverse_events, ae_rows, write_xpt

    rows = ae_rows(adverse_events(events), study.trial_id)
    write_xpt(rows, path)
    subjects = len({row["USUBJID"] for row in rows})
    return f"{len(rows)} adverse events of {subjects} subjects as SDTM AE (SAS XPORT v5)"


def _fhir(events: list, study: Study, path: Path) -> str:
    from datetime import UTC, datetime

    import orjson

    from audit.fhir import bundle

    document = bundle(events, study.trial_id, datetime.now(UTC))
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    kinds = [entry["resource"]["resourceType"] for entry in document["entry"]]
    return (
        f"{kinds.count('ResearchSubject')} research subjects and "
        f"{kinds.count('AdverseEvent')} adverse events as a FHIR R5 bundle"
    )


def _xlsx(events: list, study: Study, path: Path) -> str:
    """Every projection of the trial replayed from one read of the topics, and the AEs of
    ``events``."""
    from datetime import UTC, datetime

    from audit import replay
    from audit.sdtm import adverse_events
    from audit.workbook import sheets, write_workbook

    documents = replay.replay_all(study.settings, now=datetime.now(UTC),
                                  trial_id=study.trial_id, trials=study.trials)
    tables = sheets(documents, adverse_events(events))
    write_workbook(tables, path)
    rows = sum(len(each) for each in tables.values())
    return f"{len(tables)} sheets ({rows} rows) as an xlsx workbook"


_WRITERS: dict[str, tuple[Callable[[list, Study, Path], str], tuple[str, ...]]] = {
    "sdtm-ae": (_sdtm_ae, ("safety",)),
    "fhir": (_fhir, ("enrollment", "safety")),
    "xlsx": (_xlsx, ("safety",)),
}
