"""Apheresis, chain of identity and chain of custody.

Source: DOMAIN.md section 2 item 2 (a chain-of-identity identifier issued at leukapheresis links
patient, bag, lot, product and infusion bag; every hand-off records who, where, when and the
temperature; at least two unique identifiers are checked at each hand-off), ISBT 128 (ICCBBA
ST-001, IG-033: the DIN's form) with its ISO 7064 mod 37-2 check character (JPAC Red Book,
annex 2: "G123498654321" checks "H").
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.enrollment import SubjectEnrolled, SubjectRegistered, SubjectWaitlisted
from events.manufacturing import ApheresisCollected, CustodyTransferred
from services.errors import RuleViolated
from services.manufacturing.identifiers import check_character, with_check_character
from services.manufacturing.state import fold

from .builders import at
from .test_manufacturing_givens import (
    APHERESIS_UNIT,
    COI,
    COURIER,
    DIN,
    LOT,
    SITE,
    SUBJECT,
    apheresis,
    decide,
    enrolled,
    lot_at,
    payloads,
    receive_apheresis,
    receive_at_site,
    run,
    ship,
    thaw,
    transfer,
)

OTHER_COI = with_check_character("W123425000099")
OTHER_DIN = with_check_character("A999925999999")

# ---------------------------------------------------------------- the identifiers' form


def test_the_check_character_is_iso_7064_mod_37_2():
    assert check_character("G123498654321") == "H"


@pytest.mark.parametrize(
    "coi_id",
    [
        "W123425000007T",  # wrong check character
        "W123425000070S",  # two digits transposed
        "W12342500007S",  # a digit missing
        "w123425000007S",  # lower case facility code
        "COI-MSK-0007-01",  # not ISBT 128 form
    ],
)
def test_a_malformed_or_mistyped_identifier_is_invalid(coi_id):
    with pytest.raises(ValidationError):
        apheresis(coi_id=coi_id)


# ---------------------------------------------------------------- apheresis


def test_apheresis_of_an_enrolled_subject_opens_the_lot_with_its_two_identifiers():
    events = decide(apheresis(), enrolled())

    assert [e.stream_id for e in events] == [f"lot-{LOT}"]
    assert payloads(events) == [
        ApheresisCollected(
            lot_id=LOT,
            subject_id=SUBJECT,
            coi_id=COI,
            din=DIN,
            collection_site=APHERESIS_UNIT,
            volume_ml=250.0,
            total_nucleated_cells=1.2e10,
            cd3_cells=6.0e9,
            weight_kg=70.0,
        )
    ]
    assert events[0].occurred_at == at(0)


def test_no_apheresis_for_a_subject_who_is_not_enrolled():
    with pytest.raises(RuleViolated) as refused:
        decide(apheresis(subject_id="MSK-0099"), enrolled())

    assert refused.value.rule == "subject-must-be-enrolled"
    assert refused.value.details == {"subject_id": "MSK-0099"}


def test_no_apheresis_for_a_subject_on_the_waiting_list():
    state = fold(
        [SubjectWaitlisted(subject_id="MSK-0099", cohort_id="DL1-IP", position=1)], enrolled()
    )

    with pytest.raises(RuleViolated, match="not enrolled"):
        decide(apheresis(subject_id="MSK-0099"), state)


def test_the_two_identifiers_must_differ():
    with pytest.raises(RuleViolated) as refused:
        decide(apheresis(din=COI), enrolled())

    assert refused.value.rule == "two-distinct-identifiers"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"coi_id": COI}, "coi_id"),
        ({"coi_id": DIN}, "coi_id"),
        ({"din": DIN}, "din"),
        ({"din": COI}, "din"),
    ],
)
def test_an_identifier_already_used_by_another_lot_is_refused(fields, field):
    # Given another subject's lot holds COI and DIN, and MSK-0007 enrolled too
    state, _ = run(enrolled("MSK-0100"), apheresis(subject_id="MSK-0100", lot_id="LOT-0100-A"))
    state = fold(
        [
            SubjectRegistered(subject_id=SUBJECT, site_id=SITE),
            SubjectEnrolled(subject_id=SUBJECT, cohort_id="DL1-IP", slot=2),
        ],
        state,
    )
    command = apheresis(**{"lot_id": "LOT-0007-B", "coi_id": OTHER_COI, "din": OTHER_DIN, **fields})

    with pytest.raises(RuleViolated) as refused:
        decide(command, state)

    assert refused.value.rule == "identifier-unique"
    assert refused.value.details["field"] == field


def test_a_lot_id_is_used_once():
    state = lot_at("collected")

    with pytest.raises(RuleViolated) as refused:
        decide(apheresis(coi_id=OTHER_COI, din=OTHER_DIN), state)

    assert refused.value.rule == "lot-id-unique"


def test_cd3_cells_cannot_exceed_the_nucleated_cells():
    with pytest.raises(ValidationError, match="cd3_cells"):
        apheresis(total_nucleated_cells=1e9, cd3_cells=2e9)


# ---------------------------------------------------------------- identifiers at every hand-off

HANDOFFS = {
    "record-custody-transfer": ("collected", transfer),
    "receive-apheresis": ("collected", receive_apheresis),
    "ship-lot": ("cryopreserved", ship),
    "receive-lot-at-site": ("shipped", receive_at_site),
    "thaw-lot": ("received-at-site", lambda s, **f: thaw(**f)),
}
MISMATCHES = [
    ({"coi_id": OTHER_COI}, ["coi_id"], f"the presented chain-of-identity id {OTHER_COI} does"),
    ({"din": OTHER_DIN}, ["din"], f"the presented DIN {OTHER_DIN} does"),
    (
        {"coi_id": OTHER_COI, "din": OTHER_DIN},
        ["coi_id", "din"],
        f"the presented chain-of-identity id {OTHER_COI} and DIN {OTHER_DIN} do",
    ),
    ({"coi_id": DIN, "din": COI}, ["coi_id", "din"], "do not match"),  # labels swapped
]


@pytest.mark.parametrize("handoff", sorted(HANDOFFS))
@pytest.mark.parametrize(("presented", "mismatched", "said"), MISMATCHES)
def test_a_hand_off_presenting_a_wrong_identifier_is_refused(handoff, presented, mismatched, said):
    stage, build = HANDOFFS[handoff]
    state = lot_at(stage)

    with pytest.raises(RuleViolated) as refused:
        decide(build(state, **presented), state)

    assert refused.value.rule == "chain-of-identity-mismatch"
    assert refused.value.details == {
        "lot_id": LOT,
        "mismatched": mismatched,
        "presented": {name: presented[name] for name in mismatched},
    }
    assert said in refused.value.message


def test_a_mismatch_never_reveals_the_lots_own_identifiers():
    state = lot_at("collected")

    with pytest.raises(RuleViolated) as refused:
        decide(transfer(state, coi_id=OTHER_COI, din=OTHER_DIN), state)

    assert COI not in refused.value.message
    assert DIN not in refused.value.message
    assert COI not in str(refused.value.details)


@pytest.mark.parametrize("handoff", sorted(HANDOFFS))
def test_a_hand_off_presenting_both_identifiers_is_accepted(handoff):
    stage, build = HANDOFFS[handoff]
    state = lot_at(stage)

    assert decide(build(state), state)


# ---------------------------------------------------------------- custody


def test_a_custody_transfer_records_who_from_to_where_when_and_temperature():
    state = lot_at("collected")

    state, events = run(
        state,
        transfer(
            state,
            COURIER,
            location="MSK Apheresis Unit, New York",
            temperature_c=4.5,
            occurred_at=at(15),
        ),
    )

    assert payloads(events) == [
        CustodyTransferred(
            lot_id=LOT,
            subject_id=SUBJECT,
            coi_id=COI,
            din=DIN,
            from_party=APHERESIS_UNIT,
            to_party=COURIER,
            location="MSK Apheresis Unit, New York",
            temperature_c=4.5,
        )
    ]
    assert events[0].occurred_at == at(15)
    assert state.lots[LOT].custodian == COURIER


def test_custody_passes_only_from_the_current_custodian():
    state = lot_at("collected")

    with pytest.raises(RuleViolated) as refused:
        decide(transfer(state, COURIER, from_party="Someone Else"), state)

    assert refused.value.rule == "custody-from-current-custodian"
    assert refused.value.details == {
        "lot_id": LOT,
        "custodian": APHERESIS_UNIT,
        "from_party": "Someone Else",
    }


def test_a_hand_off_to_the_same_party_is_not_a_transfer():
    state = lot_at("collected")

    with pytest.raises(RuleViolated) as refused:
        decide(transfer(state, APHERESIS_UNIT), state)

    assert refused.value.rule == "custody-to-another-party"


@pytest.mark.parametrize("temperature_c", [float("nan"), float("inf"), -300.0, 80.0])
def test_a_hand_off_temperature_must_be_a_real_reading(temperature_c):
    with pytest.raises(ValidationError):
        transfer(lot_at("collected"), temperature_c=temperature_c)


def test_the_product_is_shipped_to_its_subjects_site():
    state = lot_at("cryopreserved")

    with pytest.raises(RuleViolated) as refused:
        decide(ship(state, destination_site="SITE-02"), state)

    assert refused.value.rule == "ship-to-subject-site"
    assert refused.value.details["subject_site"] == SITE


def test_the_product_is_received_at_the_site_it_was_shipped_to():
    state = lot_at("shipped")

    with pytest.raises(RuleViolated) as refused:
        decide(receive_at_site(state, site_id="SITE-02"), state)

    assert refused.value.rule == "receive-at-destination"
