"""What manufacturing knows: its lots, and the enrollment facts it follows read-only.

A lot moves through the stages of DOMAIN.md section 2 item 3: collected -> received -> in
process (activation -> gene transfer -> expansion) -> harvested -> QC testing -> released | out
of specification -> cryopreserved -> shipped -> received at site -> thawed; or failed. Its QC
disposition (released, out of specification, exceptionally released) is kept beside the stage,
because a sterility or mycoplasma result that turns positive after release changes the
disposition of a lot that may already be frozen, in transit or at the site.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Literal

from events.enrollment import (
    CohortOpened,
    PriorTherapyRecorded,
    SubjectEnrolled,
    SubjectRegistered,
    SubjectWithdrawn,
)
from events.manufacturing import (
    ApheresisCollected,
    ApheresisReceived,
    CustodyTransferred,
    ExceptionalReleaseApproved,
    ExceptionalReleaseDecided,
    LotCryopreserved,
    LotHarvested,
    LotOutOfSpecification,
    LotReceivedAtSite,
    LotReleased,
    LotShipped,
    LotThawed,
    ManufacturingFailed,
    ManufacturingStarted,
    ManufacturingStepStarted,
    QcResultRecorded,
)
from events.registry import EventPayload
from services.enrollment.washout import LastDoses, with_prior_therapy
from services.manufacturing.qc import REQUIRED_TESTS, Result
from services.persistent import PMap, PSet, add, put

Stage = Literal[
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

DESCRIBED: dict[str, str] = {
    "collected": "collected (apheresis)",
    "received": "received",
    "activation": "in process (activation)",
    "gene-transfer": "in process (gene transfer)",
    "expansion": "in process (expansion)",
    "harvested": "harvested",
    "qc-testing": "QC testing",
    "released": "released",
    "out-of-specification": "out of specification",
    "cryopreserved": "cryopreserved",
    "shipped": "shipped",
    "received-at-site": "received at site",
    "thawed": "thawed",
    "failed": "failed",
    # requested outcomes that are not a single stage
    "dispositioned": "released or out of specification",
    "exceptionally-released": "exceptionally released",
}


def describe(stage: str) -> str:
    return DESCRIBED.get(stage, stage)


@dataclass(frozen=True, slots=True)
class Decision:
    user_id: str
    approved: bool


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    subject_id: str
    coi_id: str
    din: str
    custodian: str
    weight_kg: float
    stage: Stage = "collected"
    target_car_t_cells: float | None = None
    destination_site: str | None = None
    results: Mapping[str, Result] = field(default_factory=dict)
    disposition: Literal["released", "out-of-specification"] | None = None
    failed_tests: tuple[str, ...] = ()
    decisions: Mapping[str, Decision] = field(default_factory=dict)
    exceptional_release: bool = False
    ever_released: bool = False

    @property
    def usable(self) -> bool:
        """May go on toward the patient: released, or out of specification with both
        exceptional-release approvals."""
        return self.disposition == "released" or self.exceptional_release

    @property
    def pending_tests(self) -> tuple[str, ...]:
        return tuple(t for t in REQUIRED_TESTS if t in self.results and self.results[t].pending)


@dataclass(frozen=True, slots=True)
class ManufacturingState:
    lots: Mapping[str, Lot] = field(default_factory=PMap)
    enrolled_in: Mapping[str, str] = field(default_factory=PMap)
    """subject -> cohort, from enrollment."""
    cohort_dose: Mapping[str, float] = field(default_factory=PMap)
    """cohort -> CAR T cells per kg, from enrollment."""
    subject_site: Mapping[str, str] = field(default_factory=PMap)
    withdrawn: AbstractSet[str] = PSet()
    last_doses: Mapping[str, LastDoses] = field(default_factory=PMap)
    """subject -> prior-therapy class -> latest last dose, from enrollment (for the washout)."""

    def lots_of(self, subject_id: str) -> list[Lot]:
        return [lot for lot in self.lots.values() if lot.subject_id == subject_id]


initial_state = ManufacturingState()


def evolve(state: ManufacturingState, event: EventPayload) -> ManufacturingState:
    match event:
        # ------------------------------------------------ followed from enrollment
        case CohortOpened():
            doses = put(state.cohort_dose, event.cohort_id, event.dose_cells_per_kg)
            return replace(state, cohort_dose=doses)
        case SubjectRegistered():
            return replace(
                state, subject_site=put(state.subject_site, event.subject_id, event.site_id)
            )
        case SubjectEnrolled():
            return replace(
                state, enrolled_in=put(state.enrolled_in, event.subject_id, event.cohort_id)
            )
        case SubjectWithdrawn():
            return replace(state, withdrawn=add(state.withdrawn, event.subject_id))
        case PriorTherapyRecorded():
            return replace(state, last_doses=with_prior_therapy(state.last_doses, event))
        # ------------------------------------------------ manufacturing's own
        case ApheresisCollected():
            lot = Lot(
                lot_id=event.lot_id,
                subject_id=event.subject_id,
                coi_id=event.coi_id,
                din=event.din,
                custodian=event.collection_site,
                weight_kg=event.weight_kg,
            )
            return replace(state, lots=put(state.lots, lot.lot_id, lot))
    found = state.lots.get(getattr(event, "lot_id", ""))
    if found is None:
        return state
    return replace(state, lots=put(state.lots, found.lot_id, _evolve_lot(found, event)))


def stage_after(stage: Stage, event: EventPayload) -> Stage:
    """The lot's stage once ``event`` (one of the lot's own, in its stream's order) is applied.

    The one stage machine of DOMAIN.md section 2 item 3: the decider's state and the
    manufacturing-pipeline projection both call it. A QC result moves a harvested lot into QC
    testing and leaves any later stage as it is; an out-of-specification finding moves a lot
    still in QC or just released to out of specification, while a late finding (a pending
    sterility or mycoplasma test turned positive) on a lot already frozen, shipped, at the site
    or thawed changes its disposition, not where the product physically is."""
    match event:
        case ApheresisCollected():
            return "collected"
        case ApheresisReceived():
            return "received"
        case ManufacturingStarted():
            return "activation"
        case ManufacturingStepStarted():
            return event.step
        case LotHarvested():
            return "harvested"
        case QcResultRecorded():
            return "qc-testing" if stage == "harvested" else stage
        case LotReleased():
            return "released"
        case LotOutOfSpecification():
            return "out-of-specification" if stage in ("qc-testing", "released") else stage
        case LotCryopreserved():
            return "cryopreserved"
        case LotShipped():
            return "shipped"
        case LotReceivedAtSite():
            return "received-at-site"
        case LotThawed():
            return "thawed"
        case ManufacturingFailed():
            return "failed"
    return stage


def _evolve_lot(lot: Lot, event: EventPayload) -> Lot:
    lot = replace(lot, stage=stage_after(lot.stage, event))
    match event:
        case CustodyTransferred():
            return replace(lot, custodian=event.to_party)
        case ManufacturingStarted():
            return replace(lot, target_car_t_cells=event.target_car_t_cells)
        case QcResultRecorded():
            results = {**lot.results, event.test: Result(event.value, event.outcome)}
            return replace(lot, results=results)
        case LotReleased():
            return replace(lot, disposition="released", ever_released=True)
        case LotOutOfSpecification():
            failed = set(lot.failed_tests) | set(event.failed_tests)
            return replace(
                lot,
                disposition="out-of-specification",
                failed_tests=tuple(t for t in REQUIRED_TESTS if t in failed),
                # decisions taken before this finding do not cover it
                decisions={},
                exceptional_release=False,
            )
        case ExceptionalReleaseDecided():
            decision = Decision(event.decided_by, event.approved)
            return replace(lot, decisions={**lot.decisions, event.role: decision})
        case ExceptionalReleaseApproved():
            return replace(lot, exceptional_release=True, ever_released=True)
        case LotShipped():
            return replace(lot, destination_site=event.destination_site)
    return lot


def fold(
    events: list[EventPayload], state: ManufacturingState = initial_state
) -> ManufacturingState:
    for event in events:
        state = evolve(state, event)
    return state
