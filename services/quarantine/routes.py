"""HTTP route of the quarantine service: the signed decision to set an unreadable record aside.
It writes its own topic, so a context halted by an unreadable record can still be released."""

from __future__ import annotations

from events.topics import QUARANTINE
from services.catalog import Route, ServiceSpec
from services.quarantine.decider import QuarantineRecord, make_decider

SERVICE = ServiceSpec(
    context=QUARANTINE,
    make_decider=make_decider,
    routes=(Route("/quarantines", "quarantine-record", QuarantineRecord, signature="approval"),),
)
