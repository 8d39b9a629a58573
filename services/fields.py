"""Text field types that the commands of every context share, defined once.

Commands are stricter than the events they lead to: an event model must go on reading what the
log already holds, while a command decides what may be added to it. So a blank reason or an id
of spaces is refused here, at the edge, and the event types stay as they were.

Characters that are never accepted in any string of a request (control and bidirectional
formatting characters) are refused before a command is built (``services.validation``).

Free text (``Reason`` and every ``free_text`` type) is capped and never identifies a patient:
text with an obvious identifier (a birth-date or record-number label, an e-mail address, a
telephone number) is refused with rule ``identifying-data`` (``services.phi``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from annotated_types import GroupedMetadata
from pydantic import AfterValidator, Field, StringConstraints
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from services.phi import identifying_data

REASON_MAX_LENGTH = 2000
"""The longest reason, rationale or summary a command may carry. The full text goes on the
topic; projections keep a shortened copy (``projections.bounded``)."""



def _identifies_nobody(text: str) -> str:
    kind = identifying_data(text)
    if kind is not None:
        # The text is not repeated: it is what must not be kept, in the log or anywhere.
        raise PydanticCustomError(
            "identifying-data",
            "holds what looks like {kind}: free text is kept forever and must never identify "
            "a patient (no name, birth date, record number, e-mail or telephone number; use "
            "the subject's code)",
            {"kind": kind},
        )
    return text


NoIdentifyingData = AfterValidator(_identifies_nobody)
"""Refuses free text that holds an obvious identifier (``services.phi``)."""

Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=REASON_MAX_LENGTH),
    NoIdentifyingData,
]
"""A reason that says something: surrounding blanks are dropped, blank or whitespace-only is
refused. The envelope's ``reason`` of every route is checked against this type too."""

_NO_EDGE_BLANKS = r"^\S(?:.*\S)?$"
"""Not blank, and no leading or trailing whitespace: an id is compared character for character,
so ' MSK' and 'MSK' must not both be accepted as different sites."""


def identifier_field(max_length: int, description: str | None = None) -> FieldInfo:
    """A free-form id or name (site, custodian, report reference): 1 to ``max_length``
    characters, never blank, no whitespace at either end. The metadata of a type written
    ``Annotated[str, identifier_field(64, "...")]``, which type checkers read as ``str``."""
    field: FieldInfo = Field(
        min_length=1, max_length=max_length, pattern=_NO_EDGE_BLANKS, description=description
    )
    return field


def identifier(max_length: int, description: str | None = None) -> Any:
    """The type ``Annotated[str, identifier_field(max_length, description)]``, built at run
    time (a type checker cannot read it: declare aliases with ``identifier_field``)."""
    return Annotated[str, identifier_field(max_length, description)]


SiteId = Annotated[str, identifier_field(32, "The site's code, e.g. 'MSK'")]
PartyName = Annotated[
    str, identifier_field(128, "A custodian: a person, a site, a courier, a facility")
]
Reference = Annotated[
    str, identifier_field(64, "A number given by another system, e.g. an expedited report's")
]
Code = Annotated[
    str, identifier_field(64, "A short code, e.g. a manufacturing failure's reason code")
]


@dataclass(frozen=True)
class FreeText(GroupedMetadata):
    """Text written by a person: surrounding blanks dropped, then ``min_length`` to
    ``max_length`` characters, never identifying anybody. The metadata of a type written
    ``Annotated[str, FreeText(1, 200)]``, which type checkers read as ``str``."""

    min_length: int
    max_length: int

    def __iter__(self) -> Iterator[object]:
        yield from StringConstraints(
            strip_whitespace=True, min_length=self.min_length, max_length=self.max_length
        )
        yield NoIdentifyingData


def free_text(min_length: int, max_length: int) -> Any:
    """The type ``Annotated[str, FreeText(min_length, max_length)]``, built at run time (a type
    checker cannot read it: declare aliases with ``FreeText``)."""
    return Annotated[str, FreeText(min_length, max_length)]
