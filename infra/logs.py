"""Logging of ``trialops serve`` and ``trialops worker`` (decision 47): one JSON object per line
on stderr, with ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message`` and, while a
request is handled, its ``correlation_id``; an ``exception`` member holds a traceback.

Every library logs through it (aiohttp, kafka-python, Faust and mode): the standard library's
records are rendered by structlog's ``ProcessorFormatter``, and Faust's worker takes the same
configuration (its ``logging_config`` option) instead of its coloured handler.

When stderr is a terminal the lines are for a person (structlog's console format, in colour);
anywhere else (a file, a pipe, a container's log) JSON without escape codes.
``TRIALOPS_LOG_FORMAT=json`` or ``human`` chooses either way.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import structlog

FORMAT_VARIABLE = "TRIALOPS_LOG_FORMAT"
CORRELATION_ID = "correlation_id"

LEVELS = {
    "crit": logging.CRITICAL, "critical": logging.CRITICAL, "error": logging.ERROR,
    "warn": logging.WARNING, "warning": logging.WARNING, "info": logging.INFO,
    "debug": logging.DEBUG,
}
"""The names ``--loglevel`` takes (Faust's) and the standard library's."""

QUIET_LIBRARIES = {"kafka": logging.WARNING}
"""kafka-python's INFO records (every connection, every metadata refresh) drown the rest."""


def level_of(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; one of {sorted(LEVELS)}") from None


def wants_json(stream: TextIO | None = None) -> bool:
    """JSON unless ``TRIALOPS_LOG_FORMAT`` says ``human`` or, unset, ``stream`` (stderr) is a
    terminal."""
    chosen = os.environ.get(FORMAT_VARIABLE, "").strip().lower()
    if chosen in ("json", "human"):
        return chosen == "json"
    stream = stream if stream is not None else sys.stderr
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


FIRST = ("time", "level", "logger", "message", CORRELATION_ID)
"""The members every line starts with, in this order (for a reader of the raw file)."""


def _in_order(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: event.pop(key) for key in FIRST if key in event}
    ordered.update(event)
    return ordered


def formatter(json: bool) -> structlog.stdlib.ProcessorFormatter:
    """Renders a standard library record as one JSON line (or one human line)."""
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json:
        final += [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _in_order,
            structlog.processors.JSONRenderer(),
        ]
    else:
        final.append(structlog.dev.ConsoleRenderer(colors=True))
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=_shared(), processors=final)


def logging_config(level: str | int = "info", *, json: bool | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` configuration: the root logger at ``level``, one handler
    on stderr with ``formatter``. Faust's worker takes it as is (``logging_config``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"trialops": {"()": formatter, "json": wants_json() if json is None
                                    else json}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "trialops"}},
        "root": {"level": level_of(level), "handlers": ["stderr"]},
        "loggers": {name: {"level": quiet} for name, quiet in QUIET_LIBRARIES.items()},
    }


def configure(level: str | int = "info", *, json: bool | None = None) -> None:
    """Set the process's logging up as described above (``trialops serve``)."""
    logging.config.dictConfig(logging_config(level, json=json))
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def faust_options(level: str | int = "warn") -> dict[str, Any]:
    """``faust.Worker``'s logging options for the same format: its ``loglevel`` and a
    ``logging_config`` that replaces its coloured stream handler."""
    return {"loglevel": level, "logging_config": logging_config(level)}


@contextlib.contextmanager
def correlated(correlation_id: str) -> Iterator[None]:
    """Every record logged within (in this task, and in threads and tasks it starts) carries
    ``correlation_id``; the earlier value, if any, comes back after."""
    with structlog.contextvars.bound_contextvars(**{CORRELATION_ID: correlation_id}):
        yield
