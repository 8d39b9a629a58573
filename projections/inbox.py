"""The inbox: what each role must do next, by when, why, and the command that clears it.

A pure function of the recorded events and the moment it is read at (issue 15). It writes no
rule of its own: it folds the services' states with their own ``evolve`` (each context with
the contexts it follows, as the services do) and asks the services' own functions what is
pending:
- determinations due: ``services.safety.expedited.awaiting_determination`` (21 CFR 312.32(b),
  the 15-day clock starts at the determination, 312.32(c)(1));
- expedited reports due or overdue: ``services.safety.expedited.due_for`` (7 and 15 calendar
  days, 21 CFR 312.32(c); follow-ups 312.32(d)), overdue when the sponsor's calendar day is
  past the due date, as the safety board counts it;
- DLT adjudications: the AEs the DLT evaluation waits for
  (``services.safety.evaluation.adjudications_pending``), each listed exactly when the safety
  decider would take its adjudication (``adjudication_due``: not while the rule's improvement
  clock runs), due by the window's last day or by the day that clock ends when later;
- DLT evaluations: an infused subject's evaluation listed exactly when the decider would close
  it (``evaluation_due``: after the window's end, or earlier after an adjudicated DLT, with no
  adjudication outstanding), due on the first day after the window's last day;
- late out-of-specification follow-ups: ``services.safety.late_oos.awaiting_follow_up``;
- QC results missing and lots awaiting disposition: ``services.manufacturing.qc.assess``;
- exceptional-release decisions on an out-of-specification lot: the deciders of
  ``services.manufacturing.stages.DECIDERS`` who have not approved;
- eligibility re-confirmation of a subject whose lot is available, before conditioning starts
  (DOMAIN.md section 2 item 5; dosing refuses conditioning day 1 without it,
  ``services.dosing.preconditions.eligibility_reconfirmed``);
- the safety review while enrollment is paused by the stopping rule.

Who must act is the roles the trial file permits to send the clearing command
(``TrialConfig.permissions``); the command's HTTP route comes from the services' route tables.
Items without a regulatory clock have no deadline (``due`` None).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any

from events.dosing import InfusionRecorded
from events.notifications import AlertDeliveryFailed
from events.registry import EventPayload, Recorded
from events.topics import NOTIFICATIONS
from services.auth import READ_ROLES, ROLES
from services.catalog import services
from services.dosing import state as dosing
from services.errors import RuleViolated
from services.manufacturing import state as manufacturing
from services.manufacturing.qc import assess
from services.manufacturing.stages import CLOSED, DECIDERS, QC_STAGES
from services.notifications import decider as notices
from services.safety import state as safety
from services.safety.dlt import window_ends_at
from services.safety.evaluation import adjudication_due, adjudications_pending, evaluation_due
from services.safety.expedited import awaiting_determination, due_for
from services.safety.late_oos import awaiting_follow_up
from trial.calendar import calendar_day
from trial.config import TrialConfig

CONTEXTS = ("enrollment", "manufacturing", "dosing", "safety")
"""The topics the inbox reads: safety's and manufacturing's own and those they follow."""
DESK_CONTEXTS = (*CONTEXTS, NOTIFICATIONS)
"""The topics the worker's desk reads: the inbox's, and the alerts raised from it."""


@dataclass(frozen=True)
class Item:
    kind: str
    """What is pending: ``expedited-report``, ``determination``, ``dlt-adjudication``, ..."""
    subject: str
    """What it is about: an AE, a subject or a lot id."""
    roles: tuple[str, ...]
    """Who may clear it: the roles the trial file permits to send ``command``."""
    command: str
    route: str
    """The HTTP route that clears it, ``POST /safety/expedited-reports``."""
    due: date | datetime | None
    """By when: a calendar day (the reporting clock) or an instant (a window's end)."""
    overdue: bool
    why: tuple[str, ...]
    """The ids of the events behind it."""
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "roles": list(self.roles),
            "command": self.command,
            "route": self.route,
            "due": None if self.due is None else self.due.isoformat(),
            "overdue": self.overdue,
            "why": list(self.why),
            "detail": self.detail,
        }


def inbox_roles() -> tuple[str, ...]:
    """The roles an inbox can be asked for: those who read the projections
    (``services.auth.READ_ROLES``; the auditor's inbox is empty, it clears nothing). The
    administrator and the notifier read no trial data, so they have no inbox."""
    return READ_ROLES


def check_role(role: str) -> None:
    """``ValueError`` naming a role that has no inbox, and the roles that have one."""
    if role not in inbox_roles():
        what = "has no inbox (it reads no trial data)" if role in ROLES else "unknown role"
        subject = f"{role!r} {what}" if role in ROLES else f"{what} {role!r}"
        raise ValueError(
            f"role: {subject}; the roles with an inbox: {', '.join(inbox_roles())}"
        )


def _context(payload: EventPayload) -> str:
    return type(payload).__module__.rsplit(".", 1)[-1]


@cache
def _follows() -> dict[str, frozenset[str]]:
    """Per context, the contexts whose events its state folds: its own and those it follows."""
    return {c: frozenset({c, *spec.upstream}) for c, spec in services().items()}


@cache
def _routes() -> dict[str, str]:
    """Per command, the HTTP route that sends it, ``POST /safety/expedited-reports``."""
    return {r.command: f"POST {r.path}" for spec in services().values() for r in spec.routes}


@dataclass
class Desk:
    """What the inbox is computed from: the safety, manufacturing and dosing states folded by
    the services' own ``evolve``, and, per AE, lot or subject, the ids of the events behind it.
    Its memory is the states, not the history: :meth:`fold` takes each recorded event once,
    in the order a reader of the topics meets them, and :meth:`pending` asks, at any moment
    after the last event folded, what is pending."""

    safety: safety.SafetyState = safety.initial_state
    lots: manufacturing.ManufacturingState = manufacturing.initial_state
    dosing: dosing.DosingState = dosing.initial_state
    by_ref: dict[str, list[str]] = field(default_factory=dict)
    """AE, lot or subject id -> the ids of the events about it"""
    pauses: list[str] = field(default_factory=list)
    """The enrollment pauses not yet followed by a resumption"""
    infusions: dict[str, str] = field(default_factory=dict)
    """subject -> the infusion that opened the DLT window"""
    latest: datetime | None = None
    """The latest recorded time among the events folded that the items depend on (the alerts
    raised from them do not move it)."""
    notifications: notices.NotificationsState = notices.initial_state
    """The alerts raised and delivered (decision 52), when the notifications topic is folded."""
    failed_at: dict[str, datetime] = field(default_factory=dict)
    """alert id -> when its last failed delivery was recorded"""

    def fold(self, recorded: Recorded) -> None:
        payload, context = recorded.payload, _context(recorded.payload)
        follows = _follows()
        if context in follows["safety"]:
            self.safety = safety.evolve(self.safety, payload)
        if context in follows["manufacturing"]:
            self.lots = manufacturing.evolve(self.lots, payload)
        if context in follows["dosing"]:
            self.dosing = dosing.evolve(self.dosing, payload)
        if context == NOTIFICATIONS:
            self.notifications = notices.evolve(self.notifications, payload)
            if isinstance(payload, AlertDeliveryFailed):
                self.failed_at[payload.alert_id] = recorded.envelope.recorded_at
        event_id = str(recorded.envelope.event_id)
        for name in ("ae_id", "lot_id", "subject_id"):
            ref = getattr(payload, name, None)
            if isinstance(ref, str):
                self.by_ref.setdefault(ref, []).append(event_id)
                break
        if isinstance(payload, InfusionRecorded):
            self.infusions[payload.subject_id] = event_id
        if payload.event_type == "EnrollmentPaused":
            self.pauses.append(event_id)
        elif payload.event_type == "EnrollmentResumed":
            self.pauses = []
        recorded_at = recorded.envelope.recorded_at
        if context != NOTIFICATIONS and (self.latest is None or recorded_at > self.latest):
            self.latest = recorded_at

    def pending(
        self, trial: TrialConfig, as_of: datetime, role: str | None = None
    ) -> list[Item]:
        """The pending actions as of ``as_of``, for ``role`` (every role when None), overdue
        first, then by deadline."""
        return _pending(self, trial, as_of, role)


def inbox(
    events: Iterable[Recorded], trial: TrialConfig, as_of: datetime, role: str | None = None
) -> list[Item]:
    """The pending actions as of ``as_of`` (events recorded later are left out), for ``role``
    (every role when None), overdue first, then by deadline."""
    desk = Desk()
    for recorded in events:
        if recorded.envelope.recorded_at <= as_of:
            desk.fold(recorded)
    return desk.pending(trial, as_of, role)


def document(items: Sequence[Item], role: str | None, as_of: datetime) -> dict[str, Any]:
    """The inbox as JSON, as ``trialops inbox --json`` prints it and the worker serves it."""
    return {
        "role": role,
        "as_of": as_of.isoformat(),
        "items": [i.as_json() for i in items],
        "overdue": sum(1 for i in items if i.overdue),
    }


def _pending(desk: Desk, trial: TrialConfig, as_of: datetime, role: str | None) -> list[Item]:
    routes = _routes()
    safety_state, lots_state, dosing_state = desk.safety, desk.lots, desk.dosing
    by_ref, pauses, infusions = desk.by_ref, desk.pauses, desk.infusions
    zone = trial.zone()
    today = calendar_day(as_of, zone)
    items: list[Item] = []

    def add(kind: str, ref: str, command: str, due: date | datetime | None, detail: str,
            why: list[str] | None = None, overdue: bool | None = None) -> None:
        if overdue is None:
            overdue = due is not None and (
                today > due if not isinstance(due, datetime) else as_of > due
            )
        items.append(Item(kind, ref, tuple(sorted(trial.roles_for(command))), command,
                          routes.get(command, ""), due, overdue,
                          tuple(by_ref.get(ref, []) if why is None else why), detail))

    aes = sorted(safety_state.adverse_events.values(), key=lambda a: a.ae_id)
    for ae in awaiting_determination(safety_state, trial.reporting):
        add("determination", ae.ae_id, "determine-expedited-report", None,
            f"{ae.term} of {ae.subject_id}: serious, unexpected and suspected; the sponsor "
            "determines whether it qualifies")
    for ae in aes:
        for d in due_for(ae, trial.reporting, zone):
            if d.report not in ae.submitted:
                add("expedited-report", ae.ae_id, "submit-expedited-report", d.due_on,
                    f"{d.report} report of {ae.ae_id} ({ae.term}, {ae.subject_id}), day 0 "
                    f"{d.day_zero.isoformat()}")
    for subject in sorted(safety_state.subjects.values(), key=lambda s: s.subject_id):
        infusion = subject.infusion
        if infusion is None:
            continue
        opened = [infusions[subject.subject_id]] if subject.subject_id in infusions else []
        for ae_id in adjudications_pending(safety_state, subject.subject_id, trial.dlt, zone):
            try:  # the safety decider's own rule: listed exactly when it would be accepted
                adj = adjudication_due(safety_state, ae_id, trial.dlt, zone, as_of)
            except RuleViolated:
                continue  # the rule's improvement clock still runs (the board says until when)
            ae = adj.ae
            add("dlt-adjudication", ae_id, "adjudicate-dlt", adj.due_on,
                f"grade {ae.grade} {ae.term} of {ae.subject_id} ({infusion.cohort_id}): the "
                f"DLT evaluation waits for its {'re-' if adj.again else ''}adjudication; the "
                f"rule says {adj.rule_verdict} ({adj.assessment.findings[-1]})",
                why=[*by_ref.get(ae_id, []), *opened])
        if subject.dlt_evaluated:
            continue
        try:
            evaluation = evaluation_due(safety_state, subject.subject_id, trial.dlt, zone, as_of)
        except RuleViolated:
            continue  # the window is open without a DLT, or adjudications come first
        ends = window_ends_at(infusion.infused_at, trial.dlt.window_days, zone)
        state_of = (f"DLT adjudicated ({', '.join(evaluation.dlt_ae_ids)})"
                    if evaluation.dlt_ae_ids and as_of < ends
                    else f"the {trial.dlt.window_days}-day DLT window is over")
        add("dlt-evaluation", subject.subject_id, "record-dlt-evaluation", evaluation.due_on,
            f"{subject.subject_id} ({infusion.cohort_id}): {state_of}", why=opened)
    for infused in awaiting_follow_up(safety_state):
        add("late-oos-follow-up", infused.lot_id, "record-late-oos-follow-up", None,
            f"infused lot {infused.lot_id} of {infused.subject_id} failed "
            f"{', '.join(infused.open_tests)} "
            "after release: the investigator's notice and safety assessment")
    for lot in sorted(lots_state.lots.values(), key=lambda x: x.lot_id):
        if (lot.stage in QC_STAGES and lot.disposition is None
                and lot.target_car_t_cells is not None):
            missing = assess(lot.results, trial.release, lot.target_car_t_cells).missing
            if missing:
                add("qc-results", lot.lot_id, "record-qc-result", None,
                    f"lot {lot.lot_id} of {lot.subject_id}: no result yet for "
                    f"{', '.join(missing)}")
            else:
                add("lot-disposition", lot.lot_id, "disposition-lot", None,
                    f"lot {lot.lot_id} of {lot.subject_id}: every release test has a result")
        if (lot.disposition == "out-of-specification" and not lot.exceptional_release
                and lot.stage not in CLOSED and lot.subject_id not in lots_state.withdrawn):
            waiting = [r for r in DECIDERS if not (dec := lot.decisions.get(r)) or not dec.approved]
            for decider in waiting:
                items.append(Item(
                    "exceptional-release", lot.lot_id, (decider,), "decide-exceptional-release",
                    routes.get("decide-exceptional-release", ""), None, False,
                    tuple(by_ref.get(lot.lot_id, [])),
                    f"lot {lot.lot_id} of {lot.subject_id} is out of specification "
                    f"({', '.join(lot.failed_tests)}): the {decider}'s decision"))
    for product in sorted(dosing_state.lots.values(), key=lambda x: x.lot_id):
        patient = dosing_state.subjects.get(product.subject_id or "")
        if (product.available and not product.thawed and patient is not None
                and not patient.withdrawn and patient.infused_lot is None
                and not patient.conditioning
                and product.lot_id not in patient.reconfirmed_for_lots):
            add("eligibility-reconfirmation", product.lot_id, "reconfirm-eligibility", None,
                f"lot {product.lot_id} of {patient.subject_id} is {product.release}: "
                "eligibility is re-confirmed before conditioning starts")
    if safety_state.enrollment_paused:
        add("safety-review", "stopping-rule", "record-safety-review", None,
            f"enrollment paused by {', '.join(safety_state.pausing)}: a safety review covering "
            "them may resume it", why=pauses)

    if role is not None:
        items = [i for i in items if role in i.roles]

    def order(item: Item) -> tuple[bool, str, str, str]:
        due = item.due
        day = "" if due is None else (due if isinstance(due, date) and not isinstance(
            due, datetime) else calendar_day(due, zone)).isoformat()
        return (not item.overdue, day or "9999", item.kind, item.subject)

    return sorted(items, key=order)
