"""One stage machine for the lot: the manufacturing service's state and the manufacturing-pipeline
projection show the same stage, because the projection calls the service's ``stage_after``.

Source: DOMAIN.md section 2 items 3-4. A lot may be released conditionally while sterility or
mycoplasma is "negative to date" and turn out of specification later; before infusion that
blocks administration (the lot cannot be thawed without an exceptional release), but the
product stays where it is: a late finding on a shipped lot leaves it shipped, out of
specification.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from events.dosing import InfusionRecorded
from events.envelope import Actor
from events.manufacturing import (
    ApheresisCollected,
    ApheresisReceived,
    ExceptionalReleaseApproved,
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
from projections.base import fold as fold_projection
from projections.catalog import build
from services.decider import NewEvent
from services.errors import DomainError, RuleViolated
from services.manufacturing.state import ManufacturingState, stage_after
from services.manufacturing.state import fold as fold_service

from .builders import at, history
from .test_manufacturing_givens import (
    COI,
    DECIDER,
    FACILITY,
    INVESTIGATOR,
    LOT,
    SPONSOR,
    SUBJECT,
    TRIAL,
    apheresis,
    cryopreserve,
    disposition,
    enrolled,
    exceptional,
    failure,
    harvest,
    lot_at,
    qc,
    receive_apheresis,
    receive_at_site,
    results,
    ship,
    start,
    thaw,
    transfer,
)

PIPELINE = build(TRIAL)["manufacturing-pipeline"]


def walked(*steps: Any) -> tuple[ManufacturingState, list[NewEvent]]:
    """Enrollment's facts, then each step (a state -> command function) decided and evolved."""
    state, produced = enrolled(), []
    for step in steps:
        for new in DECIDER.decide(step(state), state):
            state = DECIDER.evolve(state, new.payload)
            produced.append(new)
    return state, produced


def pipeline_row(events: list[NewEvent]) -> dict:
    [row] = PIPELINE.render(fold_projection(PIPELINE, history(events)))["lots"]
    return row


def to_shipped() -> list:
    return [
        lambda s: apheresis(),
        lambda s: transfer(s),
        lambda s: receive_apheresis(s),
        lambda s: start("activation"),
        lambda s: start("gene-transfer"),
        lambda s: start("expansion"),
        lambda s: harvest(),
        *[lambda s, c=c: c for c in results()],  # sterility negative to date
        lambda s: disposition(),
        lambda s: cryopreserve(),
        lambda s: ship(s),
    ]


# ---------------------------------------------------------------- the late finding


def test_a_sterility_culture_turning_positive_after_shipment_leaves_the_lot_shipped_and_oos():
    state, events = walked(*to_shipped(), lambda s: qc("sterility", outcome="positive"))
    late = events[-1].payload
    assert isinstance(late, LotOutOfSpecification) and late.after_release
    lot = state.lots[LOT]
    assert (lot.stage, lot.disposition) == ("shipped", "out-of-specification")
    row = pipeline_row(events)
    assert row["stage"] == "shipped"
    assert row["out_of_specification"] == ["sterility"]


def test_the_shipped_oos_lot_is_received_at_site_but_not_thawed_without_exceptional_release():
    state, events = walked(
        *to_shipped(),
        lambda s: qc("sterility", outcome="positive"),
        lambda s: receive_at_site(s),
    )
    assert state.lots[LOT].stage == pipeline_row(events)["stage"] == "received-at-site"
    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(thaw(), state)
    assert refused.value.rule == "lot-must-be-released"


def test_after_exceptional_release_the_late_oos_lot_is_thawed_in_both_views():
    state, events = walked(
        *to_shipped(),
        lambda s: qc("sterility", outcome="positive"),
        lambda s: receive_at_site(s),
        lambda s: exceptional(INVESTIGATOR),
        lambda s: exceptional(SPONSOR),
        lambda s: thaw(),
    )
    assert any(isinstance(e.payload, ExceptionalReleaseApproved) for e in events)
    assert state.lots[LOT].stage == pipeline_row(events)["stage"] == "thawed"


def test_the_pipeline_shows_infused_over_the_stage_whatever_topic_arrives_first():
    _, events = walked(*to_shipped(), lambda s: receive_at_site(s), lambda s: thaw())
    infusion = NewEvent(
        f"subject-{SUBJECT}",
        InfusionRecorded(
            subject_id=SUBJECT, lot_id=LOT, cohort_id="DL1-IP", dose_level="DL1",
            target_cells_per_kg=1e6, weight_kg=70, cells_infused=7.2e7,
            route="intraperitoneal", infused_at=events[-1].occurred_at,
        ),
        events[-1].occurred_at,
    )
    assert pipeline_row([*events, infusion])["stage"] == "infused"
    # dosing's topic read before manufacturing's last events
    assert pipeline_row([*events[:-1], infusion, events[-1]])["stage"] == "infused"


# ---------------------------------------------------------------- both views always agree

COMMANDS = [
    lambda s: apheresis(),
    lambda s: transfer(s),
    lambda s: transfer(s, FACILITY),
    lambda s: receive_apheresis(s),
    lambda s: start("activation"),
    lambda s: start("gene-transfer"),
    lambda s: start("expansion"),
    lambda s: harvest(),
    lambda s: qc("viability", 86.5),
    lambda s: qc("viability", 50.0),
    lambda s: qc("sterility", outcome="negative-to-date"),
    lambda s: qc("sterility", outcome="negative"),
    lambda s: qc("sterility", outcome="positive"),
    lambda s: qc("mycoplasma", outcome="positive"),
    *[lambda s, c=c: c for c in results()],
    lambda s: disposition(),
    lambda s: exceptional(INVESTIGATOR),
    lambda s: exceptional(SPONSOR),
    lambda s: exceptional(Actor(user_id="sponsor-2", role="sponsor"), approve=False),
    lambda s: cryopreserve(),
    lambda s: ship(s),
    lambda s: receive_at_site(s),
    lambda s: thaw(),
]
"""Every command a lot can be sent, good and bad results alike; most are refused at most stages.
A manufacturing failure, accepted at almost any stage and final, is drawn rarely (below)."""


def random_walk(seed: int, steps: int = 40) -> list[NewEvent]:
    """A lot driven by ``steps`` commands, each drawn at random among those the decider accepts
    at that point (the refused ones append nothing). Odd seeds start from a conditional
    release (sterility negative to date), where late findings happen."""
    rng = random.Random(seed)
    start = to_shipped()[:-2] if seed % 2 else [lambda s: apheresis()]
    state, produced = walked(*start)
    for _ in range(steps):
        draws = rng.sample(COMMANDS, len(COMMANDS))
        if rng.random() < 0.004:
            draws.insert(0, lambda s: failure())
        for draw in draws:
            try:
                new_events = DECIDER.decide(draw(state), state)
            except (DomainError, ValueError):
                continue
            for new in new_events:
                state = DECIDER.evolve(state, new.payload)
            produced.extend(new_events)
            break
    return produced


@pytest.mark.parametrize("seed", range(200))
def test_the_service_and_the_pipeline_agree_on_the_stage_after_every_decided_event(seed):
    events = random_walk(seed)
    # Both folds are left folds: each prefix's state is the previous one's with one more
    # event, so the log is sealed once and both sides go on from where they were.
    service, states = enrolled(), {}
    for n, recorded in enumerate(history(events), start=1):
        service = fold_service([events[n - 1].payload], service)
        fold_projection(PIPELINE, [recorded], states)
        [row] = PIPELINE.render(states)["lots"]
        assert row["stage"] == service.lots[LOT].stage, [
            type(e.payload).__name__ for e in events[:n]
        ]


LOT_EVENTS = [
    ApheresisReceived(lot_id=LOT, subject_id=SUBJECT),
    ManufacturingStarted(lot_id=LOT, subject_id=SUBJECT, target_car_t_cells=7e7,
                         target_basis="cohort-dose-x-weight"),
    ManufacturingStepStarted(lot_id=LOT, subject_id=SUBJECT, step="gene-transfer"),
    ManufacturingStepStarted(lot_id=LOT, subject_id=SUBJECT, step="expansion"),
    LotHarvested(lot_id=LOT, subject_id=SUBJECT, total_viable_cells=9.5e8),
    QcResultRecorded(lot_id=LOT, subject_id=SUBJECT, test="sterility", value=None,
                     outcome="positive"),
    LotReleased(lot_id=LOT, subject_id=SUBJECT, coi_id=COI, total_car_t_cells=7.2e7,
                conditional=True),
    LotOutOfSpecification(lot_id=LOT, subject_id=SUBJECT, failed_tests=("sterility",),
                          after_release=True),
    ExceptionalReleaseApproved(lot_id=LOT, subject_id=SUBJECT, investigator_id="dr-ortega",
                               sponsor_id="sponsor-mm-1"),
    LotCryopreserved(lot_id=LOT, subject_id=SUBJECT, bag_count=2),
    LotShipped(lot_id=LOT, subject_id=SUBJECT, destination_site="SITE-01"),
    LotReceivedAtSite(lot_id=LOT, subject_id=SUBJECT, site_id="SITE-01"),
    LotThawed(lot_id=LOT, subject_id=SUBJECT),
    ManufacturingFailed(lot_id=LOT, subject_id=SUBJECT, reason_code="expansion-failure"),
]


@pytest.mark.parametrize("seed", range(300))
def test_the_service_and_the_pipeline_agree_on_any_sequence_of_lot_events(seed):
    """Beyond what the decider would accept: any order, repeats included (a log written by an
    older version of the rules still folds the same way in both)."""
    rng = random.Random(seed)
    collected = lot_at("collected").lots[LOT]
    first = ApheresisCollected(lot_id=LOT, subject_id=SUBJECT, coi_id=COI, din=collected.din,
                               collection_site="MSK Apheresis Unit", volume_ml=250,
                               total_nucleated_cells=1.2e10, cd3_cells=6e9, weight_kg=70)
    payloads = [first, *rng.choices(LOT_EVENTS, k=rng.randint(1, 25))]
    news = [NewEvent(f"lot-{LOT}", p, at(n)) for n, p in enumerate(payloads)]
    service = fold_service(payloads, enrolled()).lots[LOT].stage
    assert pipeline_row(news)["stage"] == service


def test_stage_after_keeps_a_late_finding_off_the_physical_stage():
    late = LotOutOfSpecification(lot_id=LOT, subject_id=SUBJECT, failed_tests=("mycoplasma",),
                                 after_release=True)
    assert [stage_after(s, late) for s in ("qc-testing", "released", "cryopreserved",
                                            "shipped", "received-at-site", "thawed")] == [
        "out-of-specification", "out-of-specification", "cryopreserved", "shipped",
        "received-at-site", "thawed"]
