"""What both packets read from the log: the people's signatures on records, the adverse events
as the safety context folds them (with the events behind each), and their tally by grade and
attribution.

No rule is written here: an AE's grade, seriousness and attribution are those the safety
service's own ``evolve`` gives (services/safety/state.py), so the packet and the service agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from events.reading import Halt, Where
from events.registry import Recorded
from events.safety import ATTRIBUTION_ORDER, Attribution, SeriousnessCriterion
from events.signatures import RecordSigned
from services.safety.state import AdverseEvent, SafetyState, evolve, initial_state

GRADES = (1, 2, 3, 4, 5)
"""CTCAE v5.0 grades 1 (mild) to 5 (death related to the AE)."""
ATTRIBUTIONS: tuple[Attribution, ...] = ATTRIBUTION_ORDER


class ReportError(ValueError):
    """A packet that cannot be made as asked: names the option, the rule (kebab-case) and the
    values."""

    def __init__(self, option: str, rule: str, message: str) -> None:
        super().__init__(f"{option}: {message} (rule {rule})")
        self.option = option
        self.rule = rule


@dataclass(frozen=True)
class Reading:
    """How the log was read for a packet (``audit.replay.ReplayStats`` after the read): where
    a partition stopped at an unreadable record that is not quarantined (nothing recorded after
    it in that partition is in the packet) and the quarantined records passed over. A packet
    with either is partial and says so on its first page (decision 54)."""

    halts: tuple[Halt, ...] = ()
    quarantined: tuple[Where, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.halts or self.quarantined)

    def describe(self) -> str:
        """One line for the command's message: what the packet lacks."""
        parts = [
            f"{halt.where} stopped its partition, unreadable ({halt.kind}: {halt.detail})"
            for halt in self.halts
        ]
        if self.quarantined:
            n = len(self.quarantined)
            parts.append(
                f"{n} quarantined record{'s' if n != 1 else ''} passed over: "
                + ", ".join(str(where) for where in self.quarantined)
            )
        return "; ".join(parts)


WHOLE = Reading()
"""A log read whole: no halt, nothing quarantined."""


@dataclass(frozen=True)
class Figure:
    """A number in a packet and the events it was counted from."""

    value: int
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignatureLine:
    """A Part 11 signature's manifestation (21 CFR 11.50): printed name, date and time,
    meaning; with the signer's id and role and the ``RecordSigned`` event's id."""

    printed_name: str
    signer_id: str
    role: str
    meaning: str
    signed_at: datetime
    event_id: str


def signatures(events: Iterable[Recorded]) -> dict[str, tuple[SignatureLine, ...]]:
    """Signed event id -> the signatures recorded on it, in the order recorded. A signature
    whose hash is not the signed record's is the audit trail's concern (audit/trail.py): the
    packet shows what was recorded."""
    found: dict[str, tuple[SignatureLine, ...]] = {}
    for recorded in events:
        payload = recorded.payload
        if isinstance(payload, RecordSigned):
            line = SignatureLine(
                payload.printed_name, payload.signer_id, payload.role, payload.meaning,
                payload.signed_at, str(recorded.envelope.event_id),
            )
            key = str(payload.signed_event_id)
            found[key] = (*found.get(key, ()), line)
    return found


@dataclass(frozen=True)
class AeLine:
    """An adverse event as the safety context knows it at the packet's moment."""

    ae_id: str
    subject_id: str
    term: str
    grade: int
    attribution: Attribution
    serious_criteria: tuple[SeriousnessCriterion, ...]
    expected: bool
    onset_at: datetime
    sponsor_received_at: datetime
    verdict: str | None
    resolved: bool
    events: tuple[str, ...]
    """The report first, then every safety event that changed it (gradings, regrades,
    improvements, adjudications, determinations, submissions)."""

    @property
    def serious(self) -> bool:
        return bool(self.serious_criteria)


@dataclass(frozen=True)
class SafetyFold:
    state: SafetyState
    events_of_ae: Mapping[str, tuple[str, ...]]

    def lines(self) -> list[AeLine]:
        return sorted(
            (self.line(ae) for ae in self.state.adverse_events.values()),
            key=lambda a: (a.subject_id, a.onset_at, a.ae_id),
        )

    def line(self, ae: AdverseEvent) -> AeLine:
        return AeLine(
            ae.ae_id, ae.subject_id, ae.term, ae.grade, ae.attribution, ae.serious_criteria,
            ae.expected, ae.onset_at, ae.sponsor_received_at, ae.verdict,
            ae.resolved_at is not None, self.events_of_ae.get(ae.ae_id, ()),
        )


def safety_fold(events: Iterable[Recorded]) -> SafetyFold:
    """The safety service's state folded by its own ``evolve`` from ``events`` (in the order
    given), and the ids of the events that concern each AE."""
    state = initial_state
    ids: dict[str, tuple[str, ...]] = {}
    for recorded in events:
        payload = recorded.payload
        state = evolve(state, payload)
        ae_id = getattr(payload, "ae_id", None)
        if payload.context == "safety" and isinstance(ae_id, str):
            ids[ae_id] = (*ids.get(ae_id, ()), str(recorded.envelope.event_id))
    return SafetyFold(state, ids)


@dataclass(frozen=True)
class Tally:
    """AEs by grade (rows, CTCAE v5.0) and attribution to the product (columns), each cell
    with the AEs' report events."""

    cells: Mapping[tuple[int, str], Figure]
    by_grade: Mapping[int, Figure]
    by_attribution: Mapping[str, Figure]
    total: Figure

    def cell(self, grade: int, attribution: str) -> Figure:
        return self.cells[(grade, attribution)]


def tally(aes: Iterable[AeLine]) -> Tally:
    listed = list(aes)

    def figure(chosen: list[AeLine]) -> Figure:
        return Figure(len(chosen), tuple(a.events[0] for a in chosen if a.events))

    cells: dict[tuple[int, str], Figure] = {
        (g, at): figure([a for a in listed if a.grade == g and a.attribution == at])
        for g in GRADES
        for at in ATTRIBUTIONS
    }
    return Tally(
        cells,
        {g: figure([a for a in listed if a.grade == g]) for g in GRADES},
        {at: figure([a for a in listed if a.attribution == at]) for at in ATTRIBUTIONS},
        figure(listed),
    )


def event_id(recorded: Recorded) -> str:
    return str(recorded.envelope.event_id)
