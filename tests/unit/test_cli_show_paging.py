"""``trialops show`` pages the list views as the worker serves them (decision 41): ``--limit``
and ``--cursor`` ask for one page, whose next cursor the command prints on stderr; ``--all``
follows the cursors and prints the whole document, the one the replay prints. The worker is
stood in for by the same page code over a fixed table."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from projections.catalog import build
from projections.paging import BadPage, decode_cursor, page_document, parse_limit
from trialops import cli_show

TIMELINE = build()["patient-timeline"]
SUBJECTS = ["MSK-0103", "MSK-0101", "MDA-0201", "MSK-0110", "MDA-0202"]
STATES = {s: {"subject_id": s, "entries": []} for s in SUBJECTS}
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def worker(method: str, url: str, token: str | None = None, **_: Any) -> tuple[int, Any]:
    """The worker's patient-timeline view over ``STATES``."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query))
    try:
        after = decode_cursor(query["cursor"]) if "cursor" in query else None
        limit = parse_limit(query.get("limit"))
    except BadPage as exc:
        return 400, {"error": "bad-query", "message": str(exc)}
    return 200, page_document(TIMELINE, STATES, STATES.get, lambda: STATES, after, limit, NOW)


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setattr(cli_show, "call", worker)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli_show.app, ["timeline", *args, "--url", "http://w"])


def test_a_page_names_the_cursor_of_the_next(run):
    first = run("--limit", "2", "--json")
    assert first.exit_code == 0, first.output
    page = orjson.loads(first.stdout)
    assert [s["subject_id"] for s in page["subjects"]] == ["MDA-0201", "MDA-0202"]
    assert f"more: --cursor {page['next_cursor']}" in first.stderr

    second = orjson.loads(run("--limit", "2", "--cursor", page["next_cursor"], "--json").stdout)
    assert [s["subject_id"] for s in second["subjects"]] == ["MSK-0101", "MSK-0103"]


def test_all_follows_the_cursors_to_the_whole_document(run):
    result = run("--limit", "2", "--all", "--json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == TIMELINE.document(STATES, NOW)
    assert "more:" not in result.stderr


def test_a_refused_limit_is_said_with_the_workers_rule(run):
    result = run("--limit", "5000")
    assert result.exit_code == 1
    assert "limit must be a whole number from 1 to 1000" in result.stderr


def test_cohorts_page_the_screening_list_and_all_gives_the_replays_document(monkeypatch):
    from projections.base import fold

    from .test_cohort_answer import OCCUPANCY, history

    states = fold(OCCUPANCY, history())

    def occupancy(method: str, url: str, token: str | None = None, **_: Any) -> tuple[int, Any]:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query))
        after = decode_cursor(query["cursor"]) if "cursor" in query else None
        return 200, page_document(OCCUPANCY, states, states.get, lambda: states, after,
                                  parse_limit(query.get("limit")), NOW)

    monkeypatch.setattr(cli_show, "call", occupancy)
    runner = CliRunner()

    def show(*args: str):
        return runner.invoke(cli_show.app, ["cohorts", *args, "--url", "http://w"])

    whole = show("--limit", "7", "--all", "--json")
    assert whole.exit_code == 0, whole.output
    assert orjson.loads(whole.stdout) == OCCUPANCY.render(states)
    first = show("--limit", "7")
    assert first.exit_code == 0 and "DL1-IP" in first.stdout and "more: --cursor" in first.stderr
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    later = show("--limit", "7", "--cursor", cursor)
    assert later.exit_code == 1 and "add --json" in later.stderr
