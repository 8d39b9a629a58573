"""Givens for the manufacturing tests: one subject, one lot, and the commands that walk it.

Subject MSK-0007 is enrolled in cohort DL1-IP (1 x 10^6 CAR T cells/kg, shipped trial file) at
SITE-01 and weighs 70 kg at collection, so the lot's target is 7 x 10^7 CAR T cells. The lot
LOT-0007-A carries the chain-of-identity id W123425000007S and the bag's DIN A9999251234569
(ISBT 128 form with their ISO 7064 mod 37-2 check characters). Custody goes: apheresis unit ->
courier -> manufacturing facility -> courier -> the site's cell therapy lab.

The tests in this file check that the walk reaches every stage of DOMAIN.md section 2 item 3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from events.enrollment import CohortOpened, SubjectEnrolled, SubjectRegistered, SubjectWithdrawn
from events.envelope import Actor
from events.manufacturing import ManufacturingStep
from services.decider import NewEvent
from services.manufacturing.commands import (
    Command,
    DecideExceptionalRelease,
    DispositionLot,
    ReceiveApheresis,
    ReceiveLotAtSite,
    RecordApheresis,
    RecordCryopreservation,
    RecordCustodyTransfer,
    RecordHarvest,
    RecordManufacturingFailure,
    RecordQcResult,
    ShipLot,
    StartManufacturing,
    ThawLot,
)
from services.manufacturing.decider import make_decider
from services.manufacturing.identifiers import with_check_character
from services.manufacturing.state import ManufacturingState, fold
from trial.config import SHIPPED, load_trial

from .builders import at

TRIAL = load_trial(SHIPPED)
SPEC = TRIAL.release
DECIDER = make_decider(TRIAL)

SUBJECT = "MSK-0007"
COHORT = "DL1-IP"
SITE = "SITE-01"
WEIGHT_KG = 70.0
TARGET_CELLS = 7.0e7  # 1e6 cells/kg x 70 kg
LOT = "LOT-0007-A"
COI = with_check_character("W123425000007")  # W123425000007S
DIN = with_check_character("A999925123456")  # A9999251234569
APHERESIS_UNIT = "MSK Apheresis Unit"
COURIER = "World Courier"
FACILITY = "Cell Therapy Facility"
SITE_LAB = "SITE-01 Cell Therapy Lab"
INVESTIGATOR = Actor(user_id="dr-ortega", role="investigator")
SPONSOR = Actor(user_id="sponsor-mm-1", role="sponsor")


# ---------------------------------------------------------------- running the decider


def decide(command: Command, state: ManufacturingState) -> list[NewEvent]:
    return DECIDER.decide(command, state)


def run(state: ManufacturingState, *commands: Command):
    """Decide and evolve each command in turn, as the service does; return state and events."""
    produced: list[NewEvent] = []
    for command in commands:
        events = decide(command, state)
        for new in events:
            state = DECIDER.evolve(state, new.payload)
        produced.extend(events)
    return state, produced


def payloads(events: list[NewEvent]) -> list:
    return [e.payload for e in events]


def enrolled(subject: str = SUBJECT, *, dose: float = 1e6, cohort: str = COHORT):
    """Enrollment's facts, as followed from its topic: the cohort, the subject, the slot."""
    return fold(
        [
            CohortOpened(
                cohort_id=cohort,
                dose_level="DL1",
                dose_cells_per_kg=dose,
                route="intraperitoneal",
                capacity=3,
            ),
            SubjectRegistered(subject_id=subject, site_id=SITE),
            SubjectEnrolled(subject_id=subject, cohort_id=cohort, slot=1),
        ]
    )


def withdrawn(state: ManufacturingState, subject: str = SUBJECT) -> ManufacturingState:
    return DECIDER.evolve(
        state, SubjectWithdrawn(subject_id=subject, reason_code="consent-withdrawn")
    )


# ---------------------------------------------------------------- commands


def apheresis(**fields) -> RecordApheresis:
    values = {
        "subject_id": SUBJECT,
        "lot_id": LOT,
        "coi_id": COI,
        "din": DIN,
        "collection_site": APHERESIS_UNIT,
        "volume_ml": 250.0,
        "total_nucleated_cells": 1.2e10,
        "cd3_cells": 6.0e9,
        "weight_kg": WEIGHT_KG,
        "occurred_at": at(0),
    }
    return RecordApheresis(**{**values, **fields})


def custodian(state: ManufacturingState, lot: str = LOT) -> str:
    return state.lots[lot].custodian


def _handoff(state, to_party: str, fields: dict) -> dict:
    lot = fields.get("lot_id", LOT)
    values = {
        "lot_id": lot,
        "coi_id": COI,
        "din": DIN,
        "from_party": custodian(state, lot) if lot in state.lots else APHERESIS_UNIT,
        "to_party": to_party,
        "location": "New York",
        "temperature_c": 4.0,
        "occurred_at": at(10),
    }
    return {**values, **fields}


def transfer(state, to_party: str = COURIER, **fields) -> RecordCustodyTransfer:
    return RecordCustodyTransfer(**_handoff(state, to_party, fields))


def receive_apheresis(state, **fields) -> ReceiveApheresis:
    return ReceiveApheresis(**_handoff(state, FACILITY, fields))


def start(step: ManufacturingStep = "activation", **fields) -> StartManufacturing:
    return StartManufacturing(lot_id=LOT, step=step, occurred_at=at(60), **fields)


def harvest() -> RecordHarvest:
    return RecordHarvest(lot_id=LOT, total_viable_cells=9.5e8, occurred_at=at(100))


def qc(test: str, value: float | None = None, outcome: str | None = None, lot: str = LOT):
    return RecordQcResult.model_validate(
        {"lot_id": lot, "test": test, "value": value, "outcome": outcome, "occurred_at": at(200)}
    )


PASSING = {
    "viability": (86.5, None),
    "car_expression": (35.0, None),
    "vector_copy_number": (1.8, None),
    "endotoxin": (0.5, None),
    "sterility": (None, "negative-to-date"),
    "mycoplasma": (None, "negative"),
    "replication_competent_retrovirus": (None, "negative"),
    "identity": (None, "confirmed"),
    "cell_dose": (7.2e7, None),
}
"""A lot within every specification, sterility still negative to date (14-day culture)."""


def results(**overrides: tuple[float | None, str | None]) -> list[RecordQcResult]:
    """All nine release results: PASSING with ``overrides``; a None override leaves one out."""
    table = {**PASSING, **overrides}
    return [qc(test, *result) for test, result in table.items() if result is not None]


def disposition() -> DispositionLot:
    return DispositionLot(lot_id=LOT, occurred_at=at(300))


def exceptional(actor: Actor = INVESTIGATOR, approve: bool = True) -> DecideExceptionalRelease:
    return DecideExceptionalRelease(
        lot_id=LOT,
        actor=actor,
        approve=approve,
        rationale="No alternative therapy; benefit judged to outweigh the deviation",
        occurred_at=at(320),
    )


def cryopreserve() -> RecordCryopreservation:
    return RecordCryopreservation(lot_id=LOT, bag_count=2, occurred_at=at(340))


def ship(state, **fields) -> ShipLot:
    return ShipLot(**_handoff(state, COURIER, {"destination_site": SITE, **fields}))


def receive_at_site(state, **fields) -> ReceiveLotAtSite:
    return ReceiveLotAtSite(**_handoff(state, SITE_LAB, {"site_id": SITE, **fields}))


def thaw(**fields) -> ThawLot:
    return ThawLot(**{"lot_id": LOT, "coi_id": COI, "din": DIN, "occurred_at": at(500), **fields})


def failure(reason_code: str = "expansion-failure") -> RecordManufacturingFailure:
    return RecordManufacturingFailure(lot_id=LOT, reason_code=reason_code, occurred_at=at(400))


# ---------------------------------------------------------------- walking a lot to a stage

Step = Callable[[ManufacturingState], Sequence[Command]]

WALK: list[tuple[str, Step]] = [
    ("collected", lambda s: [apheresis()]),
    ("received", lambda s: [transfer(s, COURIER)]),
    ("received", lambda s: [receive_apheresis(s)]),
    ("activation", lambda s: [start("activation")]),
    ("gene-transfer", lambda s: [start("gene-transfer")]),
    ("expansion", lambda s: [start("expansion")]),
    ("harvested", lambda s: [harvest()]),
    ("qc-testing", lambda s: results()),
    ("released", lambda s: [disposition()]),
    ("cryopreserved", lambda s: [cryopreserve()]),
    ("shipped", lambda s: [ship(s)]),
    ("received-at-site", lambda s: [receive_at_site(s)]),
    ("thawed", lambda s: [thaw()]),
]
STAGES = [
    "collected",
    "received",
    "activation",
    "gene-transfer",
    "expansion",
    "harvested",
    "qc-testing",
    "released",
    "out-of-specification",
    "cryopreserved",
    "shipped",
    "received-at-site",
    "thawed",
    "failed",
]


def lot_at(stage: str, state: ManufacturingState | None = None, **overrides):
    """The lot walked along the happy path (conditional release) until it reaches ``stage``;
    out of specification: viability 65% at disposition; failed: failed right after collection.
    ``overrides`` change QC results as in :func:`results`."""
    state = enrolled() if state is None else state
    if stage == "failed":
        state, _ = run(lot_at("collected", state), failure())
        return state
    if stage == "out-of-specification":
        overrides = {"viability": (65.0, None), **overrides}
        stage = "released"
    for reached, step in WALK:
        commands = results(**overrides) if reached == "qc-testing" else step(state)
        state, _ = run(state, *commands)
        if reached == stage and state.lots[LOT].stage in (stage, "out-of-specification"):
            return state
    raise AssertionError(f"the walk never reached {stage}")


# ---------------------------------------------------------------- the walk itself


@pytest.mark.parametrize("stage", STAGES)
def test_the_walk_reaches_every_stage_of_the_lot(stage):
    assert lot_at(stage).lots[LOT].stage == stage


def test_the_identifiers_carry_their_iso_7064_check_characters():
    assert (COI, DIN) == ("W123425000007S", "A9999251234569")
