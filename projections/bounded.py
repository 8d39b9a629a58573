"""Free text in projection values, kept short by construction.

A table value is rewritten to its changelog on every change and must fit one Kafka message
(decisions 13). A reason or a rationale may be 2,000 characters, and a subject's timeline holds
many of them; so the folds keep the first ``TEXT_LIMIT`` characters with a marker that says how
long the text was. The full text stays on the topic, where the audit trail and the replay read
it.
"""

from __future__ import annotations

from typing import Any

import orjson

TEXT_LIMIT = 200
"""Characters of a free-text value a projection keeps."""

MARK = " [shortened from {length} characters; the full text is in the event on its topic]"


def shorten(text: str | None, limit: int = TEXT_LIMIT) -> str | None:
    """``text`` if it has at most ``limit`` characters, else its first ``limit`` and a mark."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + MARK.format(length=len(text))


def bounded(value: Any, limit: int = TEXT_LIMIT) -> Any:
    """A JSON value with every string (object keys excepted) shortened to ``limit``."""
    if isinstance(value, str):
        return shorten(value, limit)
    if isinstance(value, dict):
        return {key: bounded(item, limit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [bounded(item, limit) for item in value]
    return value


def capped_details(details: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """``details`` with its strings shortened; if that still takes more than ``max_bytes`` as
    JSON (a payload with many items), a note of its size instead."""
    kept: dict[str, Any] = bounded(details)
    size = len(orjson.dumps(kept))
    if size <= max_bytes:
        return kept
    return {"shortened": f"the details take {size} bytes; the full event is on its topic"}
