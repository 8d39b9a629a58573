"""What ``trialops schemas export`` writes for downstream teams: every JSON Schema (each event
type in every version, the envelope, the records, the signed checkpoint) and the AsyncAPI 3.0
document of the topics, in one folder, so the document's relative references resolve."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from audit.checkpoint import SignedCheckpoint
from events.asyncapi import CHECKPOINT_SCHEMA, FILE_NAME, document
from events.schemas import DIALECT, schema_id, schemas, write


def application_version() -> str:
    try:
        return installed_version("trialops")
    except PackageNotFoundError:
        return "0.0.0"


def contracts() -> dict[str, dict[str, Any]]:
    """File name -> document."""
    checkpoint = {
        "$schema": DIALECT,
        "$id": schema_id(CHECKPOINT_SCHEMA),
        **SignedCheckpoint.model_json_schema(),
        "title": "SignedCheckpoint",
    }
    return {
        **schemas(),
        CHECKPOINT_SCHEMA: checkpoint,
        FILE_NAME: document(application_version()),
    }


def export(directory: Path) -> list[Path]:
    return write(directory, contracts())
