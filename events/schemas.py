"""JSON Schemas of the envelope and every event payload, for downstream teams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from events.envelope import Envelope
from events.registry import all_types

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema document."""
    documents = {"envelope.schema.json": _document(Envelope.model_json_schema(), "Envelope")}
    for name, model in all_types().items():
        schema = _document(model.model_json_schema(), name)
        schema["x-trialops"] = {
            "event_type": name,
            "schema_version": model.schema_version,
            "context": model.context,
        }
        documents[f"{name}.v{model.schema_version}.schema.json"] = schema
    return documents


def _document(schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"$schema": DIALECT, **schema, "title": title}


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, schema in schemas().items():
        path = directory / file_name
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
        written.append(path)
    return written
