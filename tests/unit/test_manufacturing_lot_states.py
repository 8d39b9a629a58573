"""The lot's state machine (DOMAIN.md section 2 item 3): received -> in process (activation,
gene transfer, expansion) -> harvested -> QC testing -> released | out of specification ->
cryopreserved -> shipped -> received at site -> thawed; a manufacturing failure leads to a new
collection (a new lot) or to withdrawal. Every other move is refused with RuleViolated naming the
current and the requested stage, and nothing is emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from events.manufacturing import (
    ApheresisCollected,
    ApheresisReceived,
    CustodyTransferred,
    LotCryopreserved,
    LotHarvested,
    LotReceivedAtSite,
    LotReleased,
    LotShipped,
    LotThawed,
    ManufacturingFailed,
    ManufacturingStarted,
    ManufacturingStepStarted,
    QcResultRecorded,
)
from services.errors import NotFound, RuleViolated
from services.manufacturing.state import describe

from .builders import at
from .test_manufacturing_givens import (
    COI,
    FACILITY,
    INVESTIGATOR,
    LOT,
    STAGES,
    SUBJECT,
    TARGET_CELLS,
    apheresis,
    cryopreserve,
    decide,
    disposition,
    enrolled,
    exceptional,
    failure,
    harvest,
    lot_at,
    payloads,
    qc,
    receive_apheresis,
    receive_at_site,
    results,
    run,
    ship,
    start,
    thaw,
    transfer,
    withdrawn,
)

# requested command -> (the stage it asks for, how to build it, the stages it may start from)
Build = Callable[[object], object]
REQUESTS: dict[str, tuple[str, Build, frozenset[str]]] = {
    "receive-apheresis": ("received", receive_apheresis, frozenset({"collected"})),
    "start-manufacturing activation": (
        "activation",
        lambda s: start("activation"),
        frozenset({"received"}),
    ),
    "start-manufacturing gene-transfer": (
        "gene-transfer",
        lambda s: start("gene-transfer"),
        frozenset({"activation"}),
    ),
    "start-manufacturing expansion": (
        "expansion",
        lambda s: start("expansion"),
        frozenset({"gene-transfer"}),
    ),
    "record-harvest": ("harvested", lambda s: harvest(), frozenset({"expansion"})),
    "record-qc-result": (
        "qc-testing",
        lambda s: qc("sterility", outcome="negative"),
        frozenset(
            {
                "harvested",
                "qc-testing",
                "released",
                "out-of-specification",
                "cryopreserved",
                "shipped",
                "received-at-site",
                "thawed",
            }
        ),
    ),
    "disposition-lot": ("dispositioned", lambda s: disposition(), frozenset({"qc-testing"})),
    "decide-exceptional-release": (
        "exceptionally-released",
        lambda s: exceptional(INVESTIGATOR),
        frozenset({"out-of-specification"}),
    ),
    "record-cryopreservation": ("cryopreserved", lambda s: cryopreserve(), frozenset({"released"})),
    "ship-lot": ("shipped", ship, frozenset({"cryopreserved"})),
    "receive-lot-at-site": ("received-at-site", receive_at_site, frozenset({"shipped"})),
    "thaw-lot": ("thawed", lambda s: thaw(), frozenset({"received-at-site"})),
    "record-manufacturing-failure": (
        "failed",
        lambda s: failure(),
        frozenset(STAGES) - {"thawed", "failed"},
    ),
}

ILLEGAL = [
    (stage, name)
    for name, (_requested, _build, legal) in REQUESTS.items()
    for stage in STAGES
    if stage not in legal
    # an out-of-specification lot is held by its own rule (exceptional release), tested below
    and not (name == "record-cryopreservation" and stage == "out-of-specification")
]
LEGAL = [(stage, name) for name, (_r, _b, legal) in REQUESTS.items() for stage in sorted(legal)]


@pytest.mark.parametrize(("stage", "name"), ILLEGAL)
def test_every_illegal_move_is_refused_naming_current_and_requested_stage(stage, name):
    requested, build, _legal = REQUESTS[name]
    state = lot_at(stage)

    with pytest.raises(RuleViolated) as refused:
        decide(build(state), state)

    assert refused.value.rule == "lot-state-transition"
    assert refused.value.status == 409
    assert refused.value.details == {"lot_id": LOT, "current": stage, "requested": requested}
    assert refused.value.message == (
        f"lot {LOT} cannot go from {describe(stage)} to {describe(requested)}"
    )


@pytest.mark.parametrize(("stage", "name"), LEGAL)
def test_every_legal_move_is_accepted(stage, name):
    _requested, build, _legal = REQUESTS[name]
    state = lot_at(stage)

    assert decide(build(state), state)


def test_an_out_of_specification_lot_is_not_cryopreserved_without_exceptional_release():
    state = lot_at("out-of-specification")

    with pytest.raises(RuleViolated) as refused:
        decide(cryopreserve(), state)

    assert refused.value.rule == "lot-must-be-released"
    assert refused.value.details["current"] == "out-of-specification"
    assert refused.value.details["requested"] == "cryopreserved"
    assert refused.value.details["failed_tests"] == ["viability"]


def test_illegal_matrix_covers_every_stage_and_every_lot_command():
    assert {stage for stage, _ in ILLEGAL + LEGAL} == set(STAGES)
    assert len(REQUESTS) == 13


# ---------------------------------------------------------------- the happy path, event by event


def test_the_happy_path_emits_one_fact_per_step_on_the_lot_stream():
    state = enrolled()
    state, collected = run(state, apheresis())
    state, handed = run(state, transfer(state))
    state, received = run(state, receive_apheresis(state))
    state, steps = run(state, start("activation"), start("gene-transfer"), start("expansion"))
    state, harvested = run(state, harvest())
    state, tested = run(state, *results(sterility=(None, "negative")))
    state, released = run(state, disposition())
    state, frozen = run(state, cryopreserve())
    state, shipped = run(state, ship(state))
    state, arrived = run(state, receive_at_site(state))
    state, thawed = run(state, thaw())

    every = collected + handed + received + steps + harvested + tested + released
    every += frozen + shipped + arrived + thawed
    assert {e.stream_id for e in every} == {f"lot-{LOT}"}
    assert [type(p) for p in payloads(collected)] == [ApheresisCollected]
    assert [type(p) for p in payloads(handed)] == [CustodyTransferred]
    assert [type(p) for p in payloads(received)] == [CustodyTransferred, ApheresisReceived]
    assert payloads(steps) == [
        ManufacturingStarted(
            lot_id=LOT,
            subject_id=SUBJECT,
            target_car_t_cells=TARGET_CELLS,
            target_basis="cohort-dose-x-weight",
        ),
        ManufacturingStepStarted(lot_id=LOT, subject_id=SUBJECT, step="gene-transfer"),
        ManufacturingStepStarted(lot_id=LOT, subject_id=SUBJECT, step="expansion"),
    ]
    assert [type(p) for p in payloads(harvested)] == [LotHarvested]
    assert [type(p) for p in payloads(tested)] == [QcResultRecorded] * 9
    assert payloads(released) == [
        LotReleased(
            lot_id=LOT,
            subject_id=SUBJECT,
            coi_id=COI,
            total_car_t_cells=7.2e7,
            conditional=False,
        )
    ]
    assert [type(p) for p in payloads(frozen)] == [LotCryopreserved]
    assert [type(p) for p in payloads(shipped)] == [CustodyTransferred, LotShipped]
    assert [type(p) for p in payloads(arrived)] == [CustodyTransferred, LotReceivedAtSite]
    # The thaw records its time: dosing counts the minutes to the infusion from it
    assert payloads(thawed) == [LotThawed(lot_id=LOT, subject_id=SUBJECT, thawed_at=at(500))]
    assert state.lots[LOT].stage == "thawed"


def test_each_event_carries_the_business_time_of_its_command():
    state = lot_at("received")

    (event,) = decide(start("activation"), state)

    assert event.occurred_at == start().occurred_at


def test_the_manufacturing_order_may_set_the_target_at_activation():
    state = lot_at("received")

    (event,) = decide(start("activation", target_car_t_cells=6.5e7), state)

    assert event.payload.target_car_t_cells == 6.5e7
    assert event.payload.target_basis == "manufacturing-order"


def test_without_a_known_cohort_dose_the_order_must_give_the_target():
    # Given the subject's cohort was never seen opening (its dose is unknown here)
    state = replace(lot_at("received"), cohort_dose={})

    with pytest.raises(RuleViolated) as refused:
        decide(start("activation"), state)

    assert refused.value.rule == "target-dose-known"


def test_a_command_for_an_unknown_lot_is_not_found():
    with pytest.raises(NotFound) as refused:
        decide(harvest(), enrolled())

    assert refused.value.rule == "lot-must-exist"
    assert refused.value.status == 404


# ---------------------------------------------------------- failure, re-collection, withdrawal


@pytest.mark.parametrize("stage", sorted(set(STAGES) - {"thawed", "failed"}))
def test_a_failed_lot_lets_the_subject_be_collected_again_as_a_new_lot(stage):
    # Given a lot that failed at this stage
    state, events = run(lot_at(stage), failure("expansion-failure"))
    assert payloads(events) == [
        ManufacturingFailed(lot_id=LOT, subject_id=SUBJECT, reason_code="expansion-failure")
    ]

    # When the subject is collected again, under a new lot and new identifiers
    again = apheresis(lot_id="LOT-0007-B", coi_id="W123425000017O", din="W1234251000071")
    (event,) = decide(again, state)

    # Then a second lot opens for the same subject
    assert event.stream_id == "lot-LOT-0007-B"
    assert event.payload.subject_id == SUBJECT


@pytest.mark.parametrize("stage", sorted(set(STAGES) - {"failed"}))
def test_a_subject_has_one_lot_at_a_time(stage):
    state = lot_at(stage)
    again = apheresis(lot_id="LOT-0007-B", coi_id="W123425000017O", din="W1234251000071")

    with pytest.raises(RuleViolated) as refused:
        decide(again, state)

    assert refused.value.rule == "one-lot-at-a-time"
    assert refused.value.details == {"subject_id": SUBJECT, "lot_id": LOT, "current": stage}


@pytest.mark.parametrize(
    ("stage", "build"),
    [
        ("collected", receive_apheresis),
        ("received", lambda s: start("activation")),
        ("expansion", lambda s: harvest()),
        ("qc-testing", lambda s: disposition()),
        ("released", lambda s: cryopreserve()),
        ("cryopreserved", ship),
        ("shipped", receive_at_site),
        ("received-at-site", lambda s: thaw()),
    ],
)
def test_a_withdrawn_subjects_lot_goes_no_further_toward_infusion(stage, build):
    state = withdrawn(lot_at(stage))

    with pytest.raises(RuleViolated) as refused:
        decide(build(state), state)

    assert refused.value.rule == "subject-withdrawn"
    assert refused.value.details["current"] == stage


def test_a_withdrawn_subjects_lot_may_still_be_closed_moved_and_tested():
    state = withdrawn(lot_at("released"))

    assert decide(failure("subject-withdrawn"), state)
    assert decide(transfer(state, FACILITY + " quarantine"), state)
    assert decide(qc("sterility", outcome="negative"), state)


def test_no_apheresis_for_a_withdrawn_subject():
    state = withdrawn(enrolled())

    with pytest.raises(RuleViolated) as refused:
        decide(apheresis(), state)

    assert refused.value.rule == "subject-withdrawn"
    assert refused.value.details == {"subject_id": SUBJECT}
