"""One reading of a time given on the command line: ISO 8601 with a zone, or exit 2 naming
the option and the rule."""

from __future__ import annotations

from datetime import datetime

import typer


def aware_time(option: str, value: str) -> datetime:
    """``value`` as an aware datetime; ``typer.Exit(2)`` (the message on stderr, naming
    ``option``) when it is not ISO 8601 or has no zone: a business time without a zone would
    be read in the machine's."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        typer.echo(f"error: {option}: {value!r} is not an ISO 8601 time", err=True)
        raise typer.Exit(2) from None
    if moment.tzinfo is None:
        typer.echo(
            f"error: {option}: {value!r} has no time zone; add 'Z' or an offset like +01:00",
            err=True,
        )
        raise typer.Exit(2)
    return moment
