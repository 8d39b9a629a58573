"""JSON Schemas of the envelope and every event payload, for downstream teams.

Every version a reader accepts is exported, not only the current one: an old version stays on
its topic forever (events/past_versions.py keeps the models of past versions). Per event type
and version there are two documents: the payload's (``<EventType>.v<N>.schema.json``) and the
record's (``<EventType>.v<N>.record.schema.json``: the envelope with that type, version and
payload, what a record's value holds; the ``ce_dataschema`` header names it). Each document's
``$id`` is a stable URI ending in its file name, so the folder can be served as it is and a
reference between the documents (relative, ``envelope.schema.json``) resolves on disk and
served alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from events.envelope import Envelope
from events.past_versions import MODELS as PAST_MODELS
from events.registry import all_types, readable_versions

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE = "https://trialops.example/schemas/"
"""The base of every schema's ``$id``: a name, not a download address (``.example`` is reserved
for documentation, RFC 6761 section 6.5)."""
ENVELOPE = "envelope.schema.json"


def payload_file(name: str, version: int) -> str:
    return f"{name}.v{version}.schema.json"


def record_file(name: str, version: int) -> str:
    return f"{name}.v{version}.record.schema.json"


def schema_id(file_name: str) -> str:
    return BASE + file_name


def record_schema_id(name: str, version: int) -> str:
    """The ``$id`` of the schema a record of ``name`` version ``version`` conforms to."""
    return schema_id(record_file(name, version))


def payload_model(name: str, version: int) -> type[BaseModel]:
    """The payload model of ``name`` at ``version``: the registered one when current, else
    the past version's (events/past_versions.py)."""
    current = all_types()[name]
    if version == current.schema_version:
        return current
    try:
        return PAST_MODELS[(name, version)]
    except KeyError:
        raise LookupError(
            f"{name} v{version} can be read (an upcaster takes it to v{version + 1}) but has "
            "no model: describe it in events/past_versions.py"
        ) from None


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema document."""
    documents = {ENVELOPE: _document(Envelope.model_json_schema(), "Envelope", ENVELOPE)}
    for name, model in all_types().items():
        for version in readable_versions(name):
            about = {
                "event_type": name,
                "schema_version": version,
                "context": model.context,
                "current_version": model.schema_version,
            }
            file_name = payload_file(name, version)
            schema = _document(payload_model(name, version).model_json_schema(), name, file_name)
            documents[file_name] = {**schema, "x-trialops": about}
            documents[record_file(name, version)] = {
                **_record(name, version, file_name),
                "x-trialops": about,
            }
    return documents


def _document(schema: dict[str, Any], title: str, file_name: str) -> dict[str, Any]:
    return {"$schema": DIALECT, "$id": schema_id(file_name), **schema, "title": title}


def _record(name: str, version: int, payload: str) -> dict[str, Any]:
    return {
        "$schema": DIALECT,
        "$id": record_schema_id(name, version),
        "title": f"{name} v{version} record",
        "description": f"A record's value: the envelope of one {name} event of schema version "
        f"{version}, its payload as {payload} describes.",
        "allOf": [{"$ref": ENVELOPE}],
        "properties": {
            "event_type": {"const": name},
            "schema_version": {"const": version},
            "payload": {"$ref": payload},
        },
    }


def export(directory: Path) -> list[Path]:
    return write(directory, schemas())


def write(directory: Path, documents: dict[str, dict[str, Any]]) -> list[Path]:
    """Write each document as sorted, indented JSON: the same documents give the same bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, schema in documents.items():
        path = directory / file_name
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
        written.append(path)
    return written
