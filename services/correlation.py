"""A request's correlation id: taken from the caller's ``traceparent`` or ``X-Request-ID`` when
it sent one, else new; echoed in the answer, written to the events' ``correlation_id`` and
continued in their records' ``traceparent`` header (events/cloudevents.py). Decision 47.

Pure apart from ``new``, the source of a fresh id, which the caller passes in.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID, uuid4, uuid5

from events.cloudevents import TraceParent, parse_traceparent, trace_id_of

REQUEST_ID = "X-Request-ID"
TRACEPARENT = "traceparent"

REQUEST_ID_NAMESPACE = UUID("6f1c0d2e-5b7a-4c8e-9a31-2d4f8e7b6a10")
"""The namespace of the name-based UUIDs an ``X-Request-ID`` that is not a UUID is hashed into
(RFC 9562 section 5.5, UUID version 5: SHA-1 of this namespace and the header's UTF-8 bytes):
the same request id always gives the same correlation id. Fixed once; never change it, or old
request ids would correlate to other ids."""

_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
"""RFC 9562 section 4: the 8-4-4-4-12 hex form (either case; section 4 asks readers to accept
upper case)."""
_NIL = UUID(int=0)


@dataclass(frozen=True, slots=True)
class Correlation:
    """Where a request's correlation id came from, and the caller's trace to continue."""

    correlation_id: UUID
    caller: TraceParent | None
    """The caller's valid ``traceparent``: its trace is the correlation id, and the records the
    request appends continue it (their parent id is the append's own span)."""
    source: str
    """``traceparent``, ``x-request-id``, ``x-request-id-hashed`` or ``new``."""

    @property
    def incoming_traceparent(self) -> str | None:
        """The caller's ``traceparent`` as ``events.cloudevents.record_headers`` takes it."""
        return None if self.caller is None else str(self.caller)

    def answer_headers(self, span_id: str | None = None) -> dict[str, str]:
        """The headers echoed in the answer: ``X-Request-ID`` (the correlation id) and a
        ``traceparent`` of the same trace whose parent id is this server's span (``span_id``,
        random when not given: W3C Trace Context Level 1, section 3.2.2.4, a span id is 8
        random bytes) and whose flags are the caller's, or ``00`` (not sampled: trialops
        records no spans)."""
        span = span_id or new_span_id()
        flags = self.caller.flags if self.caller is not None else "00"
        trace = TraceParent(trace_id_of(self.correlation_id), span, flags)
        return {REQUEST_ID: str(self.correlation_id), TRACEPARENT: str(trace)}


def correlation_of(
    traceparent: str | None, request_id: str | None, new: Callable[[], UUID] = uuid4
) -> Correlation:
    """The correlation id of a request, in this order:

    1. a valid ``traceparent`` (W3C Trace Context Level 1, section 3.2; an invalid one is
       ignored, as section 4.3 says): its 128-bit trace id read as a UUID, so that the trace
       and the events are found by the same value;
    2. an ``X-Request-ID`` in the UUID text form: that UUID (the nil UUID excepted, which
       every caller could send: it is hashed as in 3);
    3. any other non-empty ``X-Request-ID``: hashed into a name-based UUID (version 5, SHA-1,
       in ``REQUEST_ID_NAMESPACE``), so the caller's id is never stored, and the same id
       always gives the same UUID;
    4. else a new UUID (``new``).

    Both headers given: the ``traceparent`` wins, being the standard one."""
    caller = parse_traceparent(traceparent)
    if caller is not None:
        return Correlation(UUID(hex=caller.trace_id), caller, TRACEPARENT)
    given = (request_id or "").strip()
    if _UUID.fullmatch(given) and UUID(given) != _NIL:
        return Correlation(UUID(given), None, "x-request-id")
    if given:
        return Correlation(uuid5(REQUEST_ID_NAMESPACE, given), None, "x-request-id-hashed")
    return Correlation(new(), None, "new")


def new_span_id() -> str:
    """8 random bytes in hex, never all zero (W3C Trace Context Level 1, section 3.2.2.4)."""
    while True:
        span = secrets.token_hex(8)
        if span != "0" * 16:
            return span
