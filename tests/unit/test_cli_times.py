"""A time given on the command line is ISO 8601 with a zone; anything else exits 2 naming the
option and the rule (a time without a zone would be read in the machine's zone)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from trialops.times import aware_time


def test_an_iso_time_with_a_zone_is_read_as_given():
    assert aware_time("--as-of", "2026-04-01T00:00:00Z") == datetime(2026, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "rule"),
    [("2026-04-01T00:00:00", "has no time zone"), ("1 April", "is not an ISO 8601 time")],
)
def test_anything_else_exits_2_naming_the_option_and_the_rule(value, rule, capsys):
    with pytest.raises(typer.Exit) as exited:
        aware_time("--from", value)
    assert exited.value.exit_code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --from: ") and rule in err
