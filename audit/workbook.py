"""The projections as an xlsx workbook (Office Open XML, written with openpyxl), for everyone
who works from spreadsheets.

One sheet per list of records in a replayed projection document ("manufacturing-pipeline
lots", "cohort-occupancy cohorts", "patient-timeline subjects", ...), one row per record, one
column per field in the order the first record has them (a later record's new fields are added
at the right); and an "adverse events" sheet of every AE folded from the safety log (the
safety document holds only counts). A nested value (a list, an object) is its JSON text; one
longer than Excel's 32,767 characters per cell (Excel specifications and limits) says so
instead of being cut. Sheet names are cut to Excel's 31 characters; an empty list's sheet
says "(no records)".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from audit.sdtm import AdverseEventRecord

MAX_CELL = 32_767
MAX_SHEET_NAME = 31
AE_SHEET = "adverse events"


def sheets(
    documents: Mapping[str, Any], aes: Iterable[AdverseEventRecord]
) -> dict[str, list[dict[str, Any]]]:
    """Sheet name -> its records, projections in the order given, then the AEs."""
    found: dict[str, list[dict[str, Any]]] = {}
    for projection, document in documents.items():
        if not isinstance(document, dict):
            continue
        for key, value in document.items():
            if isinstance(value, list) and all(isinstance(item, dict) for item in value):
                found[f"{projection} {key}"[:MAX_SHEET_NAME]] = value
    found[AE_SHEET] = [asdict(ae) for ae in aes]
    return found


def cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple | dict):
        text = orjson.dumps(value, default=str).decode()
    else:
        text = str(value)
    if len(text) > MAX_CELL:
        return f"({len(text)} characters: too long for a cell; see the projection's JSON)"
    return text


def write_workbook(tables: Mapping[str, list[dict[str, Any]]], path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, rows in tables.items():
        sheet = book.create_sheet(name)
        columns: list[str] = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
        sheet.append(columns or ["(no records)"])
        for row in rows:
            sheet.append([cell(row.get(column)) for column in columns])
        sheet.freeze_panes = "A2"
    book.save(path)
