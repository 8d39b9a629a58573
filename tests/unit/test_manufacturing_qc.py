"""QC release testing against the trial file's release specification.

Source: DOMAIN.md section 2 item 4 (release tests; sterility and mycoplasma may be "negative to
date" at release, so a lot may be released conditionally and turn out of specification later),
with the limits of the shipped trial file (viability >= 70%, CAR expression >= 10%, vector copy
number < 5 per transduced cell, endotoxin below 5 EU/mL, cell dose within 20% of the target);
FDA guidance for industry, Investigating Out-of-Specification Test Results (2006): a result is
not retested into compliance. Each limit is tried at, just below and just above its value.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.manufacturing import LotOutOfSpecification, LotReleased, QcResultRecorded
from services.errors import RuleViolated
from services.manufacturing.qc import REQUIRED_TESTS, Result, judge

from .test_manufacturing_givens import (
    COI,
    LOT,
    SPEC,
    SUBJECT,
    TARGET_CELLS,
    cryopreserve,
    decide,
    disposition,
    lot_at,
    payloads,
    qc,
    receive_at_site,
    run,
    ship,
    thaw,
)


def test_these_tables_read_the_shipped_specification():
    assert SPEC.viability_min_percent == 70
    assert SPEC.car_expression_min_percent == 10
    assert SPEC.vector_copy_number_max == 5
    assert SPEC.endotoxin_max_eu_per_ml == 5
    assert SPEC.cell_dose_tolerance_percent == 20
    assert TARGET_CELLS == 1e6 * 70  # DL1 cells/kg x weight at collection


# ---------------------------------------------------------------- each test against its limit

MEASURED_TABLE = [
    # viability >= 70 %
    ("viability", 69.9, "fail"),
    ("viability", 70.0, "pass"),
    ("viability", 70.1, "pass"),
    # CAR expression >= 10 %
    ("car_expression", 9.9, "fail"),
    ("car_expression", 10.0, "pass"),
    ("car_expression", 10.1, "pass"),
    # vector copy number < 5 per transduced cell
    ("vector_copy_number", 4.99, "pass"),
    ("vector_copy_number", 5.0, "fail"),
    ("vector_copy_number", 5.01, "fail"),
    # endotoxin below 5 EU/mL
    ("endotoxin", 4.99, "pass"),
    ("endotoxin", 5.0, "fail"),
    ("endotoxin", 5.01, "fail"),
    # cell dose within 20 % of 7e7: from 5.6e7 to 8.4e7, both ends included
    ("cell_dose", 5.6e7 - 1, "fail"),
    ("cell_dose", 5.6e7, "pass"),
    ("cell_dose", 5.6e7 + 1, "pass"),
    ("cell_dose", 7.0e7, "pass"),
    ("cell_dose", 8.4e7 - 1, "pass"),
    ("cell_dose", 8.4e7, "pass"),
    ("cell_dose", 8.4e7 + 1, "fail"),
]

OUTCOME_TABLE = [
    ("sterility", "negative", "pass"),
    ("sterility", "negative-to-date", "pending"),
    ("sterility", "positive", "fail"),
    ("mycoplasma", "negative", "pass"),
    ("mycoplasma", "negative-to-date", "pending"),
    ("mycoplasma", "positive", "fail"),
    ("replication_competent_retrovirus", "negative", "pass"),
    ("replication_competent_retrovirus", "positive", "fail"),
    ("identity", "confirmed", "pass"),
    ("identity", "not-confirmed", "fail"),
]


@pytest.mark.parametrize(("test", "value", "status"), MEASURED_TABLE)
def test_measured_result_against_its_limit(test, value, status):
    verdict = judge(test, Result(value, None), SPEC, TARGET_CELLS)

    assert verdict.status == status


@pytest.mark.parametrize(("test", "outcome", "status"), OUTCOME_TABLE)
def test_qualitative_result_against_its_specification(test, outcome, status):
    verdict = judge(test, Result(None, outcome), SPEC, TARGET_CELLS)

    assert verdict.status == status


def test_a_verdict_states_the_value_and_the_limit():
    assert judge("viability", Result(69.9, None), SPEC, TARGET_CELLS).finding == (
        "viability 69.9% < 70%"
    )
    assert judge("vector_copy_number", Result(5.0, None), SPEC, TARGET_CELLS).finding == (
        "vector copy number 5 >= 5 copies per transduced cell"
    )
    assert judge("cell_dose", Result(8.5e7, None), SPEC, TARGET_CELLS).finding == (
        "cell dose 8.5e+07 CAR T cells is +21.4% of the target 7e+07 (tolerance 20%)"
    )


@pytest.mark.parametrize(("test", "value", "status"), MEASURED_TABLE)
def test_disposition_follows_each_measured_limit(test, value, status):
    # Given a lot whose other results are all within specification
    state = lot_at("qc-testing", **{test: (value, None)})

    # When QA dispositions it
    (event,) = payloads(decide(disposition(), state))

    # Then it is released, or out of specification naming the failed test
    if status == "pass":
        assert isinstance(event, LotReleased)
    else:
        assert event == LotOutOfSpecification(
            lot_id=LOT, subject_id=SUBJECT, failed_tests=(test,), after_release=False
        )


@pytest.mark.parametrize(("test", "outcome", "status"), OUTCOME_TABLE)
def test_disposition_follows_each_qualitative_specification(test, outcome, status):
    overrides = {"sterility": (None, "negative"), test: (None, outcome)}
    state = lot_at("qc-testing", **overrides)

    (event,) = payloads(decide(disposition(), state))

    if status == "fail":
        assert isinstance(event, LotOutOfSpecification)
        assert event.failed_tests == (test,)
    else:
        assert event == LotReleased(
            lot_id=LOT,
            subject_id=SUBJECT,
            coi_id=COI,
            total_car_t_cells=7.2e7,
            conditional=status == "pending",
        )


def test_every_failed_test_is_named_in_the_order_of_the_specification():
    state = lot_at(
        "qc-testing",
        endotoxin=(6.0, None),
        viability=(65.0, None),
        identity=(None, "not-confirmed"),
    )

    (event,) = payloads(decide(disposition(), state))

    assert event.failed_tests == ("viability", "endotoxin", "identity")


# ---------------------------------------------------------------- the shape of a result


@pytest.mark.parametrize(
    ("test", "value", "outcome"),
    [
        ("viability", 100.1, None),
        ("viability", -0.1, None),
        ("car_expression", 101.0, None),
        ("vector_copy_number", -1.0, None),
        ("endotoxin", -0.5, None),
        ("cell_dose", 0.0, None),
        ("viability", None, "negative"),
        ("viability", None, None),
        ("sterility", 0.0, None),
        ("sterility", None, "confirmed"),
        ("replication_competent_retrovirus", None, "negative-to-date"),
        ("identity", None, "negative"),
        ("identity", None, None),
    ],
)
def test_a_result_out_of_range_or_of_the_wrong_kind_is_invalid(test, value, outcome):
    with pytest.raises(ValidationError):
        qc(test, value, outcome)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_value_is_invalid(value):
    with pytest.raises(ValidationError):
        qc("cell_dose", value)


# ---------------------------------------------------------------- disposition needs every test


def test_disposition_names_every_missing_test():
    state = lot_at("qc-testing", identity=None, sterility=None, cell_dose=None)

    with pytest.raises(RuleViolated) as refused:
        decide(disposition(), state)

    assert refused.value.rule == "all-release-tests-required"
    assert refused.value.details == {
        "lot_id": LOT,
        "missing": ["sterility", "identity", "cell_dose"],
    }
    assert refused.value.message == (
        f"lot {LOT} cannot be dispositioned: no result yet for sterility, identity, cell_dose"
    )


def test_nine_release_tests_are_required():
    assert REQUIRED_TESTS == (
        "viability",
        "car_expression",
        "vector_copy_number",
        "endotoxin",
        "sterility",
        "mycoplasma",
        "replication_competent_retrovirus",
        "identity",
        "cell_dose",
    )


def test_a_final_result_is_not_retested_into_compliance():
    state = lot_at("qc-testing", viability=(65.0, None))

    with pytest.raises(RuleViolated) as refused:
        decide(qc("viability", 75.0), state)

    assert refused.value.rule == "qc-result-recorded-once"
    assert refused.value.details == {"lot_id": LOT, "test": "viability"}


def test_a_negative_to_date_result_may_be_updated_before_disposition():
    state = lot_at("qc-testing")

    state, events = run(
        state, qc("sterility", outcome="negative-to-date"), qc("sterility", outcome="negative")
    )

    assert [e.payload.outcome for e in events] == ["negative-to-date", "negative"]
    assert isinstance(payloads(decide(disposition(), state))[0], LotReleased)
    assert payloads(decide(disposition(), state))[0].conditional is False


# ---------------------------------------------------------------- conditional release, late results


def test_negative_to_date_sterility_releases_the_lot_conditionally():
    state = lot_at("qc-testing")

    (event,) = payloads(decide(disposition(), state))

    assert event == LotReleased(
        lot_id=LOT, subject_id=SUBJECT, coi_id=COI, total_car_t_cells=7.2e7, conditional=True
    )


@pytest.mark.parametrize(
    "stage", ["released", "cryopreserved", "shipped", "received-at-site", "thawed"]
)
def test_late_positive_sterility_puts_a_released_lot_out_of_specification(stage):
    # Given a lot released while sterility was negative to date, now at this stage
    state = lot_at(stage)

    # When the 14-day culture turns positive
    state, events = run(state, qc("sterility", outcome="positive"))

    # Then the result is recorded and the lot is out of specification after release
    assert payloads(events) == [
        QcResultRecorded(
            lot_id=LOT, subject_id=SUBJECT, test="sterility", value=None, outcome="positive"
        ),
        LotOutOfSpecification(
            lot_id=LOT, subject_id=SUBJECT, failed_tests=("sterility",), after_release=True
        ),
    ]
    assert state.lots[LOT].usable is False


@pytest.mark.parametrize(
    ("stage", "next_step"),
    [
        ("released", lambda s: cryopreserve()),
        ("cryopreserved", ship),
        ("received-at-site", lambda s: thaw()),
    ],
)
def test_late_positive_sterility_blocks_the_way_to_the_patient(stage, next_step):
    state, _ = run(lot_at(stage), qc("sterility", outcome="positive"))

    with pytest.raises(RuleViolated) as refused:
        decide(next_step(state), state)

    assert refused.value.rule == "lot-must-be-released"
    assert refused.value.details["failed_tests"] == ["sterility"]
    assert refused.value.details["missing_approvals"] == ["investigator", "sponsor"]


def test_a_lot_in_transit_when_sterility_turns_positive_may_still_arrive_at_the_site():
    state, _ = run(lot_at("shipped"), qc("sterility", outcome="positive"))

    state, _ = run(state, receive_at_site(state))

    assert state.lots[LOT].stage == "received-at-site"
    with pytest.raises(RuleViolated, match="out of specification"):
        decide(thaw(), state)


def test_late_negative_sterility_confirms_the_release_without_a_new_disposition():
    state, events = run(lot_at("cryopreserved"), qc("sterility", outcome="negative"))

    assert [type(p) for p in payloads(events)] == [QcResultRecorded]
    assert state.lots[LOT].usable is True
    assert state.lots[LOT].pending_tests == ()


def test_late_positive_mycoplasma_on_a_lot_already_out_of_specification_is_not_after_release():
    state = lot_at("out-of-specification", mycoplasma=(None, "negative-to-date"))

    events = decide(qc("mycoplasma", outcome="positive"), state)

    assert payloads(events)[1] == LotOutOfSpecification(
        lot_id=LOT, subject_id=SUBJECT, failed_tests=("mycoplasma",), after_release=False
    )


def test_after_disposition_only_a_pending_result_may_be_completed():
    state = lot_at("released")

    with pytest.raises(RuleViolated) as refused:
        decide(qc("endotoxin", 0.1), state)

    assert refused.value.rule == "qc-result-recorded-once"
