"""The bedside chain-of-identity check and the deviation a mismatch is documented by (rules
and sources in ``services.dosing.decider``)."""

from __future__ import annotations

from events.dosing import BedsideCoiVerified, BedsideIdentityMismatchRecorded
from services.decider import NewEvent
from services.dosing.commands import (
    IDENTITY_DEVIATION_COMMAND,
    RecordBedsideIdentityMismatch,
    VerifyBedsideCoi,
    subject_stream,
)
from services.dosing.preconditions import treatable_subject
from services.dosing.state import DosingState, Lot
from services.errors import NotFound, RuleViolated


def _lot_with_coi(lot: Lot, consequence: str) -> Lot:
    if lot.coi_id is None or lot.subject_id is None:
        raise NotFound(
            "lot-coi-must-be-known",
            f"lot {lot.lot_id} has no chain-of-identity id on record (last manufacturing event: "
            f"{lot.last_manufacturing_event or 'none'}); {consequence}",
            lot_id=lot.lot_id,
        )
    return lot


def _mismatched(cmd: VerifyBedsideCoi | RecordBedsideIdentityMismatch, lot: Lot) -> list[str]:
    """The presented identifiers that differ from the lot's chain of identity."""
    return [
        name
        for name, presented, expected in (
            ("subject_id", cmd.subject_id, lot.subject_id),
            ("coi_id", cmd.coi_id, lot.coi_id),
        )
        if presented != expected
    ]


def _matches_chain_of_identity(cmd: VerifyBedsideCoi, lot: Lot) -> None:
    # The expected values are never echoed: the check is only worth something if the person
    # reads the identifiers off the bag and the wristband.
    mismatched = _mismatched(cmd, lot)
    if mismatched:
        raise RuleViolated(
            "bedside-coi-mismatch",
            f"bedside check of lot {lot.lot_id} by {cmd.actor.user_id}: the presented "
            f"{' and '.join(mismatched)} ({', '.join(getattr(cmd, f) for f in mismatched)}) "
            f"do not match the lot's chain of identity; it cannot be infused. Record the "
            f"deviation with {IDENTITY_DEVIATION_COMMAND} and the same identifiers",
            lot_id=lot.lot_id,
            mismatched=mismatched,
            presented={name: getattr(cmd, name) for name in mismatched},
            deviation_command=IDENTITY_DEVIATION_COMMAND,
        )


def verify_bedside_coi(cmd: VerifyBedsideCoi, state: DosingState) -> list[NewEvent]:
    lot = state.lot(cmd.lot_id)
    # A bag read against the wrong wristband is a mismatch whoever the wristband names, a
    # patient of the trial or not, so the identifiers are compared first.
    if lot.coi_id is not None and lot.subject_id is not None:
        _matches_chain_of_identity(cmd, lot)
    subject = treatable_subject(state, cmd.subject_id, "no bedside check can be recorded")
    lot = _lot_with_coi(lot, "the bedside check cannot be made")
    checked_by = subject.checked_by(lot.lot_id)
    if cmd.actor.user_id in checked_by:
        raise RuleViolated(
            "bedside-coi-by-two-people",
            f"{cmd.actor.user_id} already checked lot {lot.lot_id} at the bedside; "
            f"the second check must be made by a different person",
            lot_id=lot.lot_id,
            verified_by=list(checked_by),
        )
    if len(checked_by) >= 2:
        raise RuleViolated(
            "bedside-coi-by-two-people",
            f"lot {lot.lot_id} was already checked at the bedside by {' and '.join(checked_by)}",
            lot_id=lot.lot_id,
            verified_by=list(checked_by),
        )
    payload = BedsideCoiVerified(
        subject_id=cmd.subject_id,
        lot_id=cmd.lot_id,
        coi_id=cmd.coi_id,
        verified_by=cmd.actor.user_id,
        verified_at=cmd.occurred_at,
    )
    return [NewEvent(subject_stream(cmd.subject_id), payload, cmd.occurred_at)]


def record_identity_mismatch(
    cmd: RecordBedsideIdentityMismatch, state: DosingState
) -> list[NewEvent]:
    """A bedside chain-of-identity mismatch is a deviation documented as a fact (decision 28):
    it records what was presented, by whom, when, on the stream of the subject the lot was made
    for. It must be a mismatch: identifiers that match are a check, not a deviation."""
    lot = _lot_with_coi(state.lot(cmd.lot_id), "no identity mismatch can be recorded for it")
    mismatched = _mismatched(cmd, lot)
    if not mismatched:
        raise RuleViolated(
            "identity-mismatch-must-differ",
            f"the identifiers presented for lot {lot.lot_id} by {cmd.actor.user_id} match its "
            f"chain of identity: there is no mismatch to record; verify-bedside-coi records "
            f"the check",
            lot_id=lot.lot_id,
        )
    assert lot.subject_id is not None  # _lot_with_coi
    payload = BedsideIdentityMismatchRecorded(
        subject_id=lot.subject_id,
        lot_id=lot.lot_id,
        presented_subject_id=cmd.subject_id,
        presented_coi_id=cmd.coi_id,
        mismatched=tuple(mismatched),  # type: ignore[arg-type]
        detected_by=cmd.actor.user_id,
        detected_at=cmd.occurred_at,
    )
    return [NewEvent(subject_stream(lot.subject_id), payload, cmd.occurred_at)]
