"""Chain of identity and chain of custody (DOMAIN.md section 2 item 2).

Two unique identifiers, the chain-of-identity id (COI) and the bag's DIN, are checked at every
hand-off and label check: regulators expect at least two. A refusal names which identifier did
not match and what was presented, never the lot's own identifiers, so a mismatch cannot be
"corrected" by copying them from the message. Custody passes from the current custodian to
another party; the first custodian is the collection site.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from events.manufacturing import CustodyTransferred
from services.errors import RuleViolated

if TYPE_CHECKING:
    from services.manufacturing.commands import Handoff
    from services.manufacturing.state import Lot, ManufacturingState

LABELS = {"coi_id": "chain-of-identity id", "din": "DIN"}


def check_new_identifiers(coi_id: str, din: str, state: ManufacturingState) -> None:
    """A new lot's two identifiers differ from each other and from every other lot's."""
    if coi_id == din:
        raise RuleViolated(
            "two-distinct-identifiers",
            f"the chain-of-identity id and the DIN are both {coi_id}: two different "
            "identifiers are needed",
            coi_id=coi_id,
            din=din,
        )
    for lot in state.lots.values():
        for name, presented in (("coi_id", coi_id), ("din", din)):
            if presented in (lot.coi_id, lot.din):
                raise RuleViolated(
                    "identifier-unique",
                    f"{LABELS[name]} {presented} already identifies lot {lot.lot_id}",
                    field=name,
                    presented=presented,
                    lot_id=lot.lot_id,
                )


def check_identity(lot: Lot, coi_id: str, din: str) -> None:
    """Both identifiers read from the label must be the lot's."""
    presented = {"coi_id": coi_id, "din": din}
    wrong = [name for name, value in presented.items() if value != getattr(lot, name)]
    if not wrong:
        return
    shown = " and ".join(f"{LABELS[name]} {presented[name]}" for name in wrong)
    verb = "does" if len(wrong) == 1 else "do"
    raise RuleViolated(
        "chain-of-identity-mismatch",
        f"lot {lot.lot_id}: the presented {shown} {verb} not match the lot's; stop and "
        "quarantine the bag",
        lot_id=lot.lot_id,
        mismatched=wrong,
        presented={name: presented[name] for name in wrong},
    )


def handoff(lot: Lot, cmd: Handoff) -> CustodyTransferred:
    if cmd.from_party != lot.custodian:
        raise RuleViolated(
            "custody-from-current-custodian",
            f"lot {lot.lot_id} is in the custody of {lot.custodian}, not {cmd.from_party}",
            lot_id=lot.lot_id,
            custodian=lot.custodian,
            from_party=cmd.from_party,
        )
    if cmd.to_party == cmd.from_party:
        raise RuleViolated(
            "custody-to-another-party",
            f"lot {lot.lot_id}: a hand-off from {cmd.from_party} to itself is not a transfer",
            lot_id=lot.lot_id,
            party=cmd.from_party,
        )
    return CustodyTransferred(
        lot_id=lot.lot_id,
        subject_id=lot.subject_id,
        coi_id=cmd.coi_id,
        din=cmd.din,
        from_party=cmd.from_party,
        to_party=cmd.to_party,
        location=cmd.location,
        temperature_c=cmd.temperature_c,
    )


def check_destination(lot: Lot, destination_site: str, state: ManufacturingState) -> None:
    """The product goes to the site where its subject is registered, when that is known."""
    site = state.subject_site.get(lot.subject_id)
    if site is not None and destination_site != site:
        raise RuleViolated(
            "ship-to-subject-site",
            f"lot {lot.lot_id} is for subject {lot.subject_id} at {site}, not {destination_site}",
            lot_id=lot.lot_id,
            subject_site=site,
            destination_site=destination_site,
        )


def check_arrival(lot: Lot, site_id: str) -> None:
    if site_id != lot.destination_site:
        raise RuleViolated(
            "receive-at-destination",
            f"lot {lot.lot_id} was shipped to {lot.destination_site}, not {site_id}",
            lot_id=lot.lot_id,
            destination_site=lot.destination_site,
            site_id=site_id,
        )
