"""Exceptional release of an out-of-specification lot.

Source: DOMAIN.md section 2 item 3: an out-of-specification lot may be infused only on an
exceptional-release decision by the investigator and the sponsor, documented. Here: two
decisions, one by the investigator and one by the sponsor, by two different people, in either
order, each with its rationale; ExceptionalReleaseApproved follows when both have approved.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.envelope import Actor
from events.manufacturing import (
    ExceptionalReleaseApproved,
    ExceptionalReleaseDecided,
    LotOutOfSpecification,
)
from services.errors import Forbidden, RuleViolated
from services.manufacturing.commands import DecideExceptionalRelease

from .test_manufacturing_givens import (
    INVESTIGATOR,
    LOT,
    SPONSOR,
    SUBJECT,
    cryopreserve,
    decide,
    exceptional,
    lot_at,
    payloads,
    qc,
    receive_at_site,
    run,
    ship,
    thaw,
)

RATIONALE = "No alternative therapy; benefit judged to outweigh the deviation"


def decided(actor: Actor, approved: bool = True) -> ExceptionalReleaseDecided:
    return ExceptionalReleaseDecided(
        lot_id=LOT,
        subject_id=SUBJECT,
        decided_by=actor.user_id,
        role="sponsor" if actor.role == "sponsor" else "investigator",
        approved=approved,
        rationale=RATIONALE,
    )


APPROVED = ExceptionalReleaseApproved(
    lot_id=LOT, subject_id=SUBJECT, investigator_id="dr-ortega", sponsor_id="sponsor-mm-1"
)


@pytest.mark.parametrize(("first", "second"), [(INVESTIGATOR, SPONSOR), (SPONSOR, INVESTIGATOR)])
def test_investigator_and_sponsor_approve_in_either_order(first, second):
    # Given a lot out of specification (viability 65%)
    state = lot_at("out-of-specification")

    # When one approves, then the other
    state, after_first = run(state, exceptional(first))
    state, after_second = run(state, exceptional(second))

    # Then the first decision alone releases nothing; the second completes the release
    assert payloads(after_first) == [decided(first)]
    assert payloads(after_second) == [decided(second), APPROVED]
    assert {e.stream_id for e in after_first + after_second} == {f"lot-{LOT}"}
    assert state.lots[LOT].usable is True


def test_an_exceptionally_released_lot_goes_on_to_the_patient():
    state, _ = run(lot_at("out-of-specification"), exceptional(INVESTIGATOR), exceptional(SPONSOR))

    state, _ = run(state, cryopreserve())
    state, _ = run(state, ship(state))
    state, _ = run(state, receive_at_site(state))
    state, _ = run(state, thaw())

    assert state.lots[LOT].stage == "thawed"


def test_the_investigators_approval_alone_does_not_release_the_lot():
    state, _ = run(lot_at("out-of-specification"), exceptional(INVESTIGATOR))

    with pytest.raises(RuleViolated) as refused:
        decide(cryopreserve(), state)

    assert refused.value.rule == "lot-must-be-released"
    assert refused.value.details == {
        "lot_id": LOT,
        "current": "out-of-specification",
        "requested": "cryopreserved",
        "failed_tests": ["viability"],
        "missing_approvals": ["sponsor"],
    }
    assert "(missing: sponsor)" in refused.value.message


def test_the_same_person_cannot_decide_as_investigator_and_as_sponsor():
    state, _ = run(lot_at("out-of-specification"), exceptional(INVESTIGATOR))
    same_person_as_sponsor = Actor(user_id="dr-ortega", role="sponsor")

    with pytest.raises(RuleViolated) as refused:
        decide(exceptional(same_person_as_sponsor), state)

    assert refused.value.rule == "two-different-people"
    assert refused.value.details == {"lot_id": LOT, "user_id": "dr-ortega"}


@pytest.mark.parametrize("second", [INVESTIGATOR, Actor(user_id="dr-lee", role="investigator")])
def test_each_role_decides_once(second):
    state, _ = run(lot_at("out-of-specification"), exceptional(INVESTIGATOR))

    with pytest.raises(RuleViolated) as refused:
        decide(exceptional(second), state)

    assert refused.value.rule == "one-decision-per-role"
    assert refused.value.details == {"lot_id": LOT, "role": "investigator"}


@pytest.mark.parametrize("role", ["manufacturing_qa", "site_coordinator", "safety_officer"])
def test_only_the_investigator_and_the_sponsor_decide(role):
    state = lot_at("out-of-specification")

    with pytest.raises(Forbidden) as refused:
        decide(exceptional(Actor(user_id="someone", role=role)), state)

    assert refused.value.rule == "exceptional-release-by-investigator-and-sponsor"
    assert refused.value.status == 403


def test_a_declined_decision_leaves_the_lot_out_of_specification():
    state, events = run(
        lot_at("out-of-specification"), exceptional(INVESTIGATOR), exceptional(SPONSOR, False)
    )

    assert payloads(events) == [decided(INVESTIGATOR), decided(SPONSOR, approved=False)]
    assert state.lots[LOT].usable is False
    with pytest.raises(RuleViolated, match=r"missing: sponsor"):
        decide(cryopreserve(), state)


def test_a_decision_must_be_documented():
    undocumented = {**exceptional(INVESTIGATOR).model_dump(), "rationale": "ok"}

    with pytest.raises(ValidationError, match="rationale"):
        DecideExceptionalRelease.model_validate(undocumented)


@pytest.mark.parametrize("stage", ["qc-testing", "released", "cryopreserved", "failed"])
def test_only_an_out_of_specification_lot_is_released_exceptionally(stage):
    state = lot_at(stage)

    with pytest.raises(RuleViolated) as refused:
        decide(exceptional(INVESTIGATOR), state)

    assert refused.value.rule == "lot-state-transition"
    assert refused.value.details["requested"] == "exceptionally-released"


def test_an_approved_release_is_not_decided_again():
    state, _ = run(lot_at("out-of-specification"), exceptional(INVESTIGATOR), exceptional(SPONSOR))

    with pytest.raises(RuleViolated) as refused:
        decide(exceptional(Actor(user_id="dr-lee", role="investigator")), state)

    assert refused.value.rule == "exceptional-release-already-approved"


def test_a_new_failure_after_approval_needs_new_decisions():
    # Given an exceptionally released lot, cryopreserved, with sterility still negative to date
    state, _ = run(lot_at("out-of-specification"), exceptional(INVESTIGATOR), exceptional(SPONSOR))
    state, _ = run(state, cryopreserve())

    # When sterility turns positive
    state, events = run(state, qc("sterility", outcome="positive"))

    # Then the lot is out of specification after release, and the approvals no longer hold
    assert payloads(events)[1] == LotOutOfSpecification(
        lot_id=LOT, subject_id=SUBJECT, failed_tests=("sterility",), after_release=True
    )
    with pytest.raises(RuleViolated) as refused:
        decide(ship(state), state)
    assert refused.value.details["failed_tests"] == ["viability", "sterility"]
    assert refused.value.details["missing_approvals"] == ["investigator", "sponsor"]

    # And the same two people may decide again on the new finding
    state, events = run(state, exceptional(SPONSOR), exceptional(INVESTIGATOR))
    assert payloads(events)[-1] == APPROVED
