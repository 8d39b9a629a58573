"""``trialops design``: dose-escalation designs' decision tables for protocol writers."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import orjson
import typer

from projections.escalation import boin, three_plus_three

app = typer.Typer(help="Dose-escalation designs (3+3, BOIN).", no_args_is_help=True)


class Design(StrEnum):
    boin = "boin"
    three_plus_three = "3+3"


class Format(StrEnum):
    json = "json"
    table = "table"


@app.command()
def table(
    design: Annotated[Design, typer.Option(help="The design.")],
    target: Annotated[
        float | None, typer.Option(help="BOIN target DLT rate, between 0.05 and 0.6.")
    ] = None,
    max_n: Annotated[int, typer.Option(help="Rows for 1..MAX_N patients at a dose.")] = 18,
    format: Annotated[Format, typer.Option(help="json, or table for people.")] = Format.json,
):
    """Print the design's decision table."""
    if design is Design.three_plus_three:
        document = three_plus_three.rules()
    else:
        if target is None or not 0.05 <= target <= 0.6:
            typer.echo("error: --target is required for BOIN, between 0.05 and 0.6", err=True)
            raise typer.Exit(2)
        if not 1 <= max_n <= 200:
            typer.echo("error: --max-n must be between 1 and 200", err=True)
            raise typer.Exit(2)
        document = boin.decision_table(target, max_n)
    if format is Format.json:
        typer.echo(orjson.dumps(document).decode())
        return
    typer.echo(_render(document))


def _render(document: dict) -> str:
    if document["design"] == "boin":
        lines = [
            f"BOIN, target DLT rate {document['target']}: "
            f"lambda_e = {document['lambda_e']}, lambda_d = {document['lambda_d']}",
            f"{'patients':>8} {'escalate if DLTs <=':>20} {'de-escalate if >=':>18} "
            f"{'eliminate if >=':>16}",
        ]
        for row in document["rows"]:
            eliminate = row["eliminate_if_dlt_at_least"]
            lines.append(
                f"{row['n']:>8} {row['escalate_if_dlt_at_most']:>20} "
                f"{row['deescalate_if_dlt_at_least']:>18} "
                f"{'-' if eliminate is None else eliminate:>16}"
            )
        return "\n".join(lines)
    lines = [f"3+3, cohorts of {document['cohort_size']}", f"{'patients':>8} {'DLTs':>5}  decision"]
    for row in document["rows"]:
        note = f" ({row['note']})" if "note" in row else ""
        lines.append(f"{row['n']:>8} {row['dlt']:>5}  {row['decision']}{note}")
    lines.append(f"MTD: {document['mtd']}")
    lines += [f"- {note}" for note in document["notes"]]
    return "\n".join(lines)
