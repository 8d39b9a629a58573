"""A lot that turned out of specification after it was infused: the investigator's notice and
the safety assessment (issue 11, item 3; decision 32).

Source: DOMAIN.md section 2.4: sterility and mycoplasma may be "negative to date" at release, so
a lot may turn out of specification later; "before infusion that blocks administration; after
infusion it becomes a safety event with notice to the investigator".

Rules:
- The safety state opens a follow-up when manufacturing records a late out-of-specification
  result (``LotOutOfSpecification`` with ``after_release``) for a lot that dosing recorded as
  infused, and no exceptional release covered that failure (services/safety/state.py, ``Lot``).
- The investigator records once per open failure that they were notified and how they assessed
  the subject: ``no-adverse-event``, or ``adverse-event-reported`` naming at least one AE of
  that subject already reported (report it first). The follow-up covers every open failure of
  the lot at that moment; a later failure opens a new one.
"""

from __future__ import annotations

from events.safety import LateOosFollowUpRecorded
from services.decider import NewEvent
from services.errors import NotFound, RuleViolated
from services.safety.checks import known_ae, not_in_future
from services.safety.commands import RecordLateOosFollowUp
from services.safety.state import Lot, SafetyState


def late_oos_stream(lot_id: str) -> str:
    return f"late-oos-{lot_id}"


def awaiting_follow_up(state: SafetyState) -> tuple[Lot, ...]:
    """Infused lots with a late out-of-specification result not yet followed up, by lot id."""
    return tuple(
        lot for lot in sorted(state.lots.values(), key=lambda x: x.lot_id) if lot.needs_follow_up
    )


def record_follow_up(cmd: RecordLateOosFollowUp, state: SafetyState) -> list[NewEvent]:
    lot = state.lots.get(cmd.lot_id)
    if lot is None:
        raise NotFound(
            "lot-must-be-known",
            f"lot {cmd.lot_id} was neither infused nor found out of specification",
            lot_id=cmd.lot_id,
        )
    if not lot.needs_follow_up:
        raise RuleViolated(
            "late-oos-follow-up-needs-an-open-item",
            f"lot {cmd.lot_id} has no late out-of-specification result to follow up: "
            f"infused={lot.infused}, late failures={list(lot.late_oos_tests)}, "
            f"followed up={sorted(lot.followed_up_tests)}",
            lot_id=cmd.lot_id,
            infused=lot.infused,
            late_oos_tests=list(lot.late_oos_tests),
        )
    not_in_future("investigator_notified_at", cmd.investigator_notified_at, cmd.occurred_at)
    if (cmd.assessment == "adverse-event-reported") != bool(cmd.ae_ids):
        raise RuleViolated(
            "assessment-names-its-adverse-events",
            f"lot {cmd.lot_id}: assessment {cmd.assessment} with AEs {list(cmd.ae_ids)}; "
            "'adverse-event-reported' names the AEs reported, 'no-adverse-event' names none",
            lot_id=cmd.lot_id,
            assessment=cmd.assessment,
            ae_ids=list(cmd.ae_ids),
        )
    for ae_id in cmd.ae_ids:
        ae = known_ae(state, ae_id)
        if ae.subject_id != lot.subject_id:
            raise RuleViolated(
                "ae-of-the-lots-subject",
                f"{ae_id} is an AE of subject {ae.subject_id}; lot {cmd.lot_id} was given to "
                f"{lot.subject_id}",
                ae_id=ae_id,
                lot_id=cmd.lot_id,
                subject_id=lot.subject_id,
            )
    payload = LateOosFollowUpRecorded(
        lot_id=lot.lot_id,
        subject_id=lot.subject_id,
        failed_tests=lot.open_tests,
        investigator_notified_at=cmd.investigator_notified_at,
        assessment=cmd.assessment,
        ae_ids=cmd.ae_ids,
        summary=cmd.summary,
    )
    return [NewEvent(late_oos_stream(lot.lot_id), payload, cmd.occurred_at)]
