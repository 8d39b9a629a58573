"""What may be asked of manufacturing: one command per step of the lot, named as in the trial
file's ``permissions``. Shapes only; the rules live in ``decider`` and ``qc``."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from events.enrollment import SubjectId
from events.envelope import Actor
from events.manufacturing import LotId, ManufacturingStep, QcOutcome, QcTest
from services.fields import REASON_MAX_LENGTH, Code, FreeText, PartyName, SiteId
from services.manufacturing.identifiers import IsbtIdentifier
from services.manufacturing.qc import check_result_shape

Location = Annotated[str, FreeText(1, 200)]
Rationale = Annotated[str, FreeText(10, REASON_MAX_LENGTH)]


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime


class LotCommand(Command):
    lot_id: LotId


class RecordApheresis(Command):
    """Leukapheresis of an enrolled subject; the command brings the lot id, the COI and the
    apheresis bag's DIN, which every later hand-off must present."""

    subject_id: SubjectId
    lot_id: LotId
    coi_id: IsbtIdentifier
    din: IsbtIdentifier
    collection_site: PartyName
    volume_ml: float = Field(gt=0, le=2000, allow_inf_nan=False)
    total_nucleated_cells: float = Field(gt=0, allow_inf_nan=False)
    cd3_cells: float = Field(gt=0, allow_inf_nan=False)
    weight_kg: float = Field(gt=0, le=400, allow_inf_nan=False)

    @model_validator(mode="after")
    def _cd3_within_nucleated(self) -> Self:
        if self.cd3_cells > self.total_nucleated_cells:
            raise ValueError(
                f"cd3_cells {self.cd3_cells:g} exceed total_nucleated_cells "
                f"{self.total_nucleated_cells:g}"
            )
        return self


class IdentityCheck(LotCommand):
    """Both identifiers read from the label, checked against the lot's."""

    coi_id: IsbtIdentifier
    din: IsbtIdentifier


class Handoff(IdentityCheck):
    """A chain-of-custody hand-off: who (the actor), from, to, where, when, temperature."""

    from_party: PartyName
    to_party: PartyName
    location: Location
    temperature_c: float = Field(ge=-273.15, le=60, allow_inf_nan=False)


class RecordCustodyTransfer(Handoff):
    pass


class ReceiveApheresis(Handoff):
    pass


class StartManufacturing(LotCommand):
    """Starts a manufacturing step, in order: activation, gene transfer, expansion. Activation
    may carry the manufacturing order's target cell count; without it the target is the
    cohort's dose (cells/kg) x the subject's weight at collection."""

    step: ManufacturingStep = "activation"
    target_car_t_cells: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _target_only_at_activation(self) -> Self:
        if self.target_car_t_cells is not None and self.step != "activation":
            raise ValueError("target_car_t_cells is set by the order, at activation only")
        return self


class RecordHarvest(LotCommand):
    total_viable_cells: float = Field(gt=0, allow_inf_nan=False)


class RecordQcResult(LotCommand):
    """A measured ``value`` (viability %, CAR expression %, vector copies per transduced cell,
    endotoxin EU/mL, cell dose as total CAR T cells) or an ``outcome`` (sterility, mycoplasma,
    replication-competent retrovirus, identity)."""

    test: QcTest
    value: float | None = Field(default=None, allow_inf_nan=False)
    outcome: QcOutcome | None = None

    @model_validator(mode="after")
    def _shape_fits_the_test(self) -> Self:
        check_result_shape(self.test, self.value, self.outcome)
        return self


class DispositionLot(LotCommand):
    pass


class DecideExceptionalRelease(LotCommand):
    """One of the two decisions (investigator, sponsor) on infusing an out-of-specification
    lot; the server fills ``actor``."""

    actor: Actor
    approve: bool
    rationale: Rationale


class RecordCryopreservation(LotCommand):
    bag_count: int = Field(ge=1, le=20)


class ShipLot(Handoff):
    destination_site: SiteId


class ReceiveLotAtSite(Handoff):
    site_id: SiteId


class ThawLot(IdentityCheck):
    pass


class RecordManufacturingFailure(LotCommand):
    reason_code: Code


COMMANDS: dict[str, type[Command]] = {
    "record-apheresis": RecordApheresis,
    "record-custody-transfer": RecordCustodyTransfer,
    "receive-apheresis": ReceiveApheresis,
    "start-manufacturing": StartManufacturing,
    "record-harvest": RecordHarvest,
    "record-qc-result": RecordQcResult,
    "disposition-lot": DispositionLot,
    "decide-exceptional-release": DecideExceptionalRelease,
    "record-cryopreservation": RecordCryopreservation,
    "ship-lot": ShipLot,
    "receive-lot-at-site": ReceiveLotAtSite,
    "thaw-lot": ThawLot,
    "record-manufacturing-failure": RecordManufacturingFailure,
}
