"""Manufacturing and chain of identity: apheresis, custody, the lot's states, QC and release.

The classes in the "contract" section are read by other contexts (dosing follows this topic):
keep their names and fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field

from events.enrollment import SubjectId
from events.registry import EventPayload, event_type, upcaster

CONTEXT = "manufacturing"

LotId = Annotated[str, Field(pattern=r"^LOT-[A-Z0-9-]{3,32}$")]
CoiId = Annotated[str, Field(min_length=6, max_length=64, description="chain-of-identity id")]


# ---------------------------------------------------------------- contract (read by dosing)


@event_type("LotReleased", version=1, context=CONTEXT)
class LotReleased(EventPayload):
    """QC met the specifications; ``conditional`` while sterility or mycoplasma is "negative to
    date"."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "LOT-0007-A",
                    "subject_id": "MSK-0007",
                    "coi_id": "COI-MSK-0007-01",
                    "total_car_t_cells": 2.1e9,
                    "conditional": True,
                }
            ]
        }
    )
    lot_id: LotId
    subject_id: SubjectId
    coi_id: CoiId
    total_car_t_cells: float = Field(gt=0, allow_inf_nan=False)
    conditional: bool


@event_type("LotOutOfSpecification", version=1, context=CONTEXT)
class LotOutOfSpecification(EventPayload):
    """A QC result failed its specification; ``after_release`` when a pending test turned late."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "LOT-0007-A",
                    "subject_id": "MSK-0007",
                    "failed_tests": ["viability"],
                    "after_release": False,
                }
            ]
        }
    )
    lot_id: LotId
    subject_id: SubjectId
    failed_tests: tuple[str, ...] = Field(min_length=1)
    after_release: bool


@event_type("ExceptionalReleaseApproved", version=1, context=CONTEXT)
class ExceptionalReleaseApproved(EventPayload):
    """An out-of-specification lot may be infused: both the investigator and the sponsor decided."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot_id": "LOT-0007-A",
                    "subject_id": "MSK-0007",
                    "investigator_id": "dr-ortega",
                    "sponsor_id": "sponsor-mm-1",
                }
            ]
        }
    )
    lot_id: LotId
    subject_id: SubjectId
    investigator_id: str = Field(min_length=1)
    sponsor_id: str = Field(min_length=1)


@event_type("LotThawed", version=2, context=CONTEXT)
class LotThawed(EventPayload):
    """The product thawed at the site, at ``thawed_at`` (the thaw's business time): dosing
    counts the minutes from it to the infusion (``infusion-within-thaw-limit``). Version 1
    carried no time; such a thaw is upcast with ``thawed_at`` null (the limit cannot be
    checked for it)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"lot_id": "LOT-0007-A", "subject_id": "MSK-0007",
                                         "thawed_at": "2026-03-20T08:15:00Z"}]}
    )
    lot_id: LotId
    subject_id: SubjectId
    thawed_at: AwareDatetime | None = None


@upcaster("LotThawed", from_version=1)
def _thaw_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "thawed_at": None}


# ---------------------------------------------------------------- manufacturing's own facts

DinId = Annotated[
    str, Field(min_length=6, max_length=64, description="second unique id: the bag's DIN")
]
Party = Annotated[str, Field(min_length=1, max_length=128, description="custodian")]
QcTest = Literal[
    "viability",
    "car_expression",
    "vector_copy_number",
    "endotoxin",
    "sterility",
    "mycoplasma",
    "replication_competent_retrovirus",
    "identity",
    "cell_dose",
]
QcOutcome = Literal["negative", "negative-to-date", "positive", "confirmed", "not-confirmed"]
ManufacturingStep = Literal["activation", "gene-transfer", "expansion"]
TargetBasis = Literal["cohort-dose-x-weight", "manufacturing-order"]


def _example(**fields: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [fields]})


_LOT = {"lot_id": "LOT-0007-A", "subject_id": "MSK-0007"}
_IDS = {"coi_id": "W123425000007S", "din": "A9999251234569"}


@event_type("ApheresisCollected", version=1, context=CONTEXT)
class ApheresisCollected(EventPayload):
    """Leukapheresis of an enrolled subject: opens the lot and its chain of identity. The
    collection site is the first custodian; ``weight_kg`` is the subject's weight at collection."""

    model_config = _example(
        **_LOT,
        **_IDS,
        collection_site="MSK Apheresis Unit",
        volume_ml=250.0,
        total_nucleated_cells=1.2e10,
        cd3_cells=6.0e9,
        weight_kg=70.0,
    )
    lot_id: LotId
    subject_id: SubjectId
    coi_id: CoiId
    din: DinId
    collection_site: Party
    volume_ml: float = Field(gt=0, allow_inf_nan=False)
    total_nucleated_cells: float = Field(gt=0, allow_inf_nan=False)
    cd3_cells: float = Field(gt=0, allow_inf_nan=False)
    weight_kg: float = Field(gt=0, le=400, allow_inf_nan=False)


@event_type("CustodyTransferred", version=1, context=CONTEXT)
class CustodyTransferred(EventPayload):
    """A hand-off at which both identifiers were presented and matched the lot. Who recorded it
    is the envelope's actor; when is its ``occurred_at``."""

    model_config = _example(
        **_LOT,
        **_IDS,
        from_party="MSK Apheresis Unit",
        to_party="Courier: World Courier",
        location="MSK Apheresis Unit, New York",
        temperature_c=4.0,
    )
    lot_id: LotId
    subject_id: SubjectId
    coi_id: CoiId
    din: DinId
    from_party: Party
    to_party: Party
    location: str = Field(min_length=1, max_length=200)
    temperature_c: float = Field(ge=-273.15, le=60, allow_inf_nan=False)


@event_type("ApheresisReceived", version=1, context=CONTEXT)
class ApheresisReceived(EventPayload):
    """The manufacturing facility took the apheresis bag in: the lot is received."""

    model_config = _example(**_LOT)
    lot_id: LotId
    subject_id: SubjectId


@event_type("ManufacturingStarted", version=1, context=CONTEXT)
class ManufacturingStarted(EventPayload):
    """Activation began. The manufacturing order fixes the target CAR T cell count here, from
    the cohort's dose x the weight at collection or as ordered, so that a later change
    elsewhere does not move the cell-dose specification."""

    model_config = _example(**_LOT, target_car_t_cells=7.0e7, target_basis="cohort-dose-x-weight")
    lot_id: LotId
    subject_id: SubjectId
    target_car_t_cells: float = Field(gt=0, allow_inf_nan=False)
    target_basis: TargetBasis


@event_type("ManufacturingStepStarted", version=1, context=CONTEXT)
class ManufacturingStepStarted(EventPayload):
    model_config = _example(**_LOT, step="gene-transfer")
    lot_id: LotId
    subject_id: SubjectId
    step: Literal["gene-transfer", "expansion"]


@event_type("LotHarvested", version=1, context=CONTEXT)
class LotHarvested(EventPayload):
    model_config = _example(**_LOT, total_viable_cells=9.5e8)
    lot_id: LotId
    subject_id: SubjectId
    total_viable_cells: float = Field(gt=0, allow_inf_nan=False)


@event_type("QcResultRecorded", version=1, context=CONTEXT)
class QcResultRecorded(EventPayload):
    """One release test's result: a measured ``value`` or a qualitative ``outcome``. Whether it
    meets the specification is decided at disposition, not stored here."""

    model_config = _example(**_LOT, test="viability", value=86.5, outcome=None)
    lot_id: LotId
    subject_id: SubjectId
    test: QcTest
    value: float | None = Field(allow_inf_nan=False)
    outcome: QcOutcome | None


@event_type("ExceptionalReleaseDecided", version=1, context=CONTEXT)
class ExceptionalReleaseDecided(EventPayload):
    """One documented decision (investigator or sponsor) on infusing an out-of-specification
    lot; ``ExceptionalReleaseApproved`` follows when both have approved."""

    model_config = _example(
        **_LOT,
        decided_by="dr-ortega",
        role="investigator",
        approved=True,
        rationale="No alternative therapy; viability 68% judged acceptable for this patient",
    )
    lot_id: LotId
    subject_id: SubjectId
    decided_by: str = Field(min_length=1, max_length=128)
    role: Literal["investigator", "sponsor"]
    approved: bool
    rationale: str = Field(min_length=10, max_length=2000)


@event_type("LotCryopreserved", version=1, context=CONTEXT)
class LotCryopreserved(EventPayload):
    model_config = _example(**_LOT, bag_count=2)
    lot_id: LotId
    subject_id: SubjectId
    bag_count: int = Field(ge=1, le=20)


@event_type("LotShipped", version=1, context=CONTEXT)
class LotShipped(EventPayload):
    model_config = _example(**_LOT, destination_site="SITE-01")
    lot_id: LotId
    subject_id: SubjectId
    destination_site: str = Field(min_length=1, max_length=32)


@event_type("LotReceivedAtSite", version=1, context=CONTEXT)
class LotReceivedAtSite(EventPayload):
    model_config = _example(**_LOT, site_id="SITE-01")
    lot_id: LotId
    subject_id: SubjectId
    site_id: str = Field(min_length=1, max_length=32)


@event_type("ManufacturingFailed", version=1, context=CONTEXT)
class ManufacturingFailed(EventPayload):
    """The lot will never be infused. The subject may be collected again (a new lot) or be
    withdrawn by the investigator."""

    model_config = _example(**_LOT, reason_code="expansion-failure")
    lot_id: LotId
    subject_id: SubjectId
    reason_code: str = Field(min_length=1, max_length=64)
