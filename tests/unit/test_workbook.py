"""The projections as an xlsx workbook, read back with openpyxl: a sheet per list of records,
a row per record, and a sheet of every adverse event. Reference values come from the simulated
trial's events (the lots, cohorts, subjects and AEs they name); limits from Microsoft's "Excel
specifications and limits" (32,767 characters in a cell, 31 in a sheet name)."""

from __future__ import annotations

from datetime import timedelta

from openpyxl import load_workbook
from typer.testing import CliRunner

from audit.sdtm import adverse_events
from audit.workbook import AE_SHEET, MAX_CELL, cell, sheets, write_workbook
from projections.base import fold
from projections.catalog import NAMES, get
from trialops.cli_audit import export_app

from .test_audit_trail import History, ae_reported
from .test_sdtm import replaying
from .test_snapshots import simulated_trial


def read_back(path) -> dict[str, list[dict]]:
    book = load_workbook(path, read_only=True)
    found = {}
    for sheet in book.worksheets:
        header, *rows = list(sheet.iter_rows(values_only=True))
        found[sheet.title] = [dict(zip(header, row, strict=True)) for row in rows]
    return found


def column(rows: list[dict], name: str) -> set:
    return {row[name] for row in rows}


def test_a_simulated_trials_projections_read_back_sheet_by_sheet(tmp_path):
    api = simulated_trial(9, 3)
    recorded = api.recorded()
    now = max(r.envelope.recorded_at for _c, r in recorded) + timedelta(days=1)
    documents = {}
    for name in NAMES:
        projection = get(name)
        states = fold(projection, [r for c, r in recorded if c in projection.contexts])
        documents[name] = projection.document(states, now)
    safety = [r for c, r in recorded if c == "safety"]
    path = tmp_path / "trial.xlsx"
    write_workbook(sheets(documents, adverse_events(safety)), path)
    book = read_back(path)

    def named(kind: str, field: str) -> set:
        return {getattr(r.payload, field) for _c, r in recorded
                if r.envelope.event_type.startswith(kind) and hasattr(r.payload, field)}

    manufactured = {r.payload.lot_id for c, r in recorded
                    if c == "manufacturing" and hasattr(r.payload, "lot_id")}
    assert column(book["manufacturing-pipeline lots"], "lot_id") == manufactured
    assert column(book["cohort-occupancy cohorts"], "cohort_id") == named(
        "CohortOpened", "cohort_id")
    assert column(book["patient-timeline subjects"], "subject_id") == named(
        "SubjectRegistered", "subject_id")
    reported = [r.payload for r in safety if r.envelope.event_type == "AdverseEventReported"]
    aes = book[AE_SHEET]
    assert len(aes) == len(reported)
    assert {(row["ae_id"], row["subject_id"], row["term"]) for row in aes} == {
        (ae.ae_id, ae.subject_id, ae.term) for ae in reported}
    assert len(book["dose-escalation levels"]) == len(documents["dose-escalation"]["levels"])


def test_a_nested_value_is_json_and_one_too_long_for_a_cell_says_so():
    assert cell({"a": [1, 2]}) == '{"a":[1,2]}'
    assert cell(None) is None and cell(3) == 3
    too_long = cell(["x" * MAX_CELL])
    assert isinstance(too_long, str) and "too long for a cell" in too_long


def test_the_export_command_writes_the_workbook(monkeypatch, tmp_path):
    import audit.replay

    h = History()
    h.append("ae-AE-0007-01", ae_reported(7))
    replaying(monkeypatch, h.events)
    monkeypatch.setattr(audit.replay, "replay_all", lambda *_a, **_kw: {
        "manufacturing-pipeline": {"lots": [{"lot_id": "LOT-0007-A", "stage": "infused"}]}})
    out = tmp_path / "trial.xlsx"
    result = CliRunner().invoke(export_app, ["--format", "xlsx", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 sheets (2 rows) as an xlsx workbook" in result.stderr
    book = read_back(out)
    assert book["manufacturing-pipeline lots"] == [{"lot_id": "LOT-0007-A", "stage": "infused"}]
    assert [row["ae_id"] for row in book[AE_SHEET]] == ["AE-0007-01"]
