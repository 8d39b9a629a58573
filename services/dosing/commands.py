"""The commands of dosing: what a site asks the dosing service to record. Validated at the
edge; the rules that decide them are in ``services.dosing.decider`` and its modules."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events.enrollment import Route, SubjectId
from events.envelope import Actor
from events.manufacturing import LotId
from services.fields import Reason, identifier_field

PresentedCoiId = Annotated[
    str, identifier_field(64, "The chain-of-identity id as read from the bag's label")
]


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    occurred_at: AwareDatetime


class RecordConditioningDay(Command):
    subject_id: SubjectId
    lot_id: LotId
    day: int = Field(ge=1, le=30)
    height_cm: float = Field(gt=0, le=272, allow_inf_nan=False)
    weight_kg: float = Field(gt=0, le=400, allow_inf_nan=False)
    fludarabine_mg: float = Field(gt=0, allow_inf_nan=False)
    cyclophosphamide_mg: float = Field(gt=0, allow_inf_nan=False)
    creatinine_clearance_ml_per_min: float | None = Field(
        default=None, gt=0, le=300, allow_inf_nan=False
    )
    """The day's creatinine clearance, when measured: fludarabine is then checked against the
    trial file's renal reductions."""


class VerifyBedsideCoi(Command):
    subject_id: SubjectId
    lot_id: LotId
    coi_id: PresentedCoiId
    actor: Actor
    """The person checking, injected by the server from the authenticated user."""


class RecordBedsideIdentityMismatch(Command):
    """The deviation a ``bedside-coi-mismatch`` refusal names: the same identifiers as the
    refused check, as they were read."""

    subject_id: SubjectId
    lot_id: LotId
    coi_id: PresentedCoiId
    actor: Actor
    """The person who made the check, injected by the server from the authenticated user."""


class RecordInfusion(Command):
    subject_id: SubjectId
    lot_id: LotId
    weight_kg: float = Field(gt=0, le=400, allow_inf_nan=False)
    cells_infused: float = Field(gt=0, allow_inf_nan=False)
    route: Route
    reason: Reason | None = None
    """Why the weight at infusion differs from the weight at collection beyond the trial's
    tolerance (kept in the envelope's ``reason``); not needed otherwise."""


IDENTITY_DEVIATION_COMMAND = "record-bedside-identity-mismatch"

COMMANDS: dict[str, type[Command]] = {
    "record-conditioning-day": RecordConditioningDay,
    "verify-bedside-coi": VerifyBedsideCoi,
    "record-bedside-identity-mismatch": RecordBedsideIdentityMismatch,
    "record-infusion": RecordInfusion,
}


def subject_stream(subject_id: str) -> str:
    return f"subject-{subject_id}"
