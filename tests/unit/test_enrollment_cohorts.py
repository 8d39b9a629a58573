"""Cohorts: the dose-escalation review opens, expands and closes them.

Sources: DESIGN.md section 5 and DOMAIN.md section 4 (the design recommends, the review
decides, citing the recommendation or the reason for departing from it; 3+3: 3 patients at a
dose, "add 3 more" on 1/3 DLT, a lower dose expanded to 6 after de-escalation); DOMAIN.md
section 1 (four escalating levels and one fallback level, at most 18 treated patients). Dose
levels, route and cohort size are the trial file's (trials/nct06623396.json).
"""

from __future__ import annotations

import pytest

from events.enrollment import CohortClosed, CohortExpanded, CohortOpened, SubjectEnrolled
from services.decider import NewEvent
from services.enrollment.decider import (
    CloseCohort,
    EnrollSubject,
    ExpandCohort,
    OpenCohort,
    evolve,
    fold,
    initial_state,
    make_decider,
)
from services.errors import NotFound, RuleViolated
from trial.config import SHIPPED, load_trial

from .builders import (
    MONDAY_9AM,
    cohort_closed,
    cohort_expanded,
    cohort_opened,
    eligible_subject,
    slot_released,
    subject_enrolled,
)

TRIAL = load_trial(SHIPPED)
decide = make_decider(TRIAL).decide


def given(*facts: NewEvent):
    return fold([fact.payload for fact in facts])


def open_cohort(cohort_id="DL1-IP", dose_level="DL1", **fields) -> OpenCohort:
    return OpenCohort(cohort_id=cohort_id, dose_level=dose_level, occurred_at=MONDAY_9AM, **fields)


def expand(cohort_id="DL1-IP", additional_slots=3, **fields) -> ExpandCohort:
    return ExpandCohort(
        cohort_id=cohort_id,
        additional_slots=additional_slots,
        occurred_at=MONDAY_9AM,
        **fields,
    )


def close(cohort_id="DL1-IP", reason="3 of 3 evaluable, 0 DLT: escalate") -> CloseCohort:
    return CloseCohort(cohort_id=cohort_id, reason=reason, occurred_at=MONDAY_9AM)


def full_cohort(cohort_id="DL1-IP", n=3):
    facts = [cohort_opened(cohort_id, n)]
    for slot in range(1, n + 1):
        subject_id = f"MSK-{slot:04d}"
        facts += [*eligible_subject(subject_id), subject_enrolled(subject_id, cohort_id, slot)]
    return given(*facts)


# ---------------------------------------------------------------- opening


# The trial file's levels (DOMAIN.md section 1: up to 3 x 10^7 cells/kg, one fallback level).
LEVELS = [("DL-1", 3e5), ("DL1", 1e6), ("DL2", 3e6), ("DL3", 1e7), ("DL4", 3e7)]


@pytest.mark.parametrize(("level", "cells_per_kg"), LEVELS)
def test_a_cohort_takes_its_dose_and_route_from_the_trial_file(level, cells_per_kg):
    (event,) = decide(open_cohort(f"{level}-IP", level, recommendation_id="REC-7"), initial_state)

    assert event == NewEvent(
        f"cohort-{level}-IP",
        CohortOpened(
            cohort_id=f"{level}-IP",
            dose_level=level,
            dose_cells_per_kg=cells_per_kg,
            route="intraperitoneal",
            capacity=3,
            recommendation_id="REC-7",
        ),
        MONDAY_9AM,
    )


def test_the_first_cohort_at_the_start_level_follows_the_protocol_without_a_citation():
    (event,) = decide(open_cohort("DL1-IP", "DL1"), initial_state)

    assert (event.payload.recommendation_id, event.payload.departure_reason) == (None, None)


@pytest.mark.parametrize(
    ("state", "level"),
    [(initial_state, "DL2"), (given(cohort_opened("DL1-IP")), "DL2")],
    ids=["first cohort above the start level", "any later cohort"],
)
def test_any_other_opening_cites_the_recommendation_or_the_reason_to_depart(state, level):
    with pytest.raises(RuleViolated) as refused:
        decide(open_cohort("DL2-IP", level), state)

    assert refused.value.rule == "decision-cites-recommendation"
    assert "recommendation_id" in refused.value.message


def test_a_departure_from_the_recommendation_is_recorded_with_its_reason():
    state = given(cohort_opened("DL1-IP"))
    reason = "recommendation was escalate; the review stays at DL1 pending late toxicity"

    (event,) = decide(
        open_cohort("DL1-IP-B", "DL1", recommendation_id="REC-2", reason=reason), state
    )

    assert event.payload.recommendation_id == "REC-2"
    assert event.payload.departure_reason == reason


def test_a_dose_level_not_in_the_trial_file_is_refused():
    with pytest.raises(NotFound) as refused:
        decide(open_cohort("DL5-IP", "DL5", recommendation_id="REC-1"), initial_state)

    assert refused.value.rule == "dose-level-from-trial-file"
    assert refused.value.status == 404
    assert refused.value.message == (
        "dose level DL5 is not in the trial file; levels: DL-1, DL1, DL2, DL3, DL4"
    )


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"dose_cells_per_kg": 1e6}, "dose-from-trial-file"),
        ({"route": "intravenous"}, "route-from-trial-file"),
        ({"capacity": 1}, "cohort-size-from-design"),
        ({"capacity": 6}, "cohort-size-from-design"),
    ],
    ids=["DL2 at DL1's dose", "intravenous", "a cohort of 1", "a cohort of 6"],
)
def test_dose_route_and_size_that_differ_from_the_trial_file_are_refused(fields, rule):
    with pytest.raises(RuleViolated) as refused:
        decide(open_cohort("DL2-IP", "DL2", recommendation_id="REC-1", **fields), initial_state)

    assert refused.value.rule == rule


def test_dose_route_and_size_that_match_the_trial_file_may_be_repeated():
    command = open_cohort(
        "DL2-IP",
        "DL2",
        dose_cells_per_kg=3e6,
        route="intraperitoneal",
        capacity=3,
        recommendation_id="REC-1",
    )

    (event,) = decide(command, initial_state)

    assert event.payload.capacity == 3


def test_an_accelerated_titration_level_opens_for_one_subject():
    escalation = TRIAL.escalation.model_copy(update={"accelerated_titration_levels": ("DL1",)})
    trial = TRIAL.model_copy(update={"escalation": escalation})

    (event,) = make_decider(trial).decide(open_cohort("DL1-IP", "DL1"), initial_state)

    assert event.payload.capacity == 1


def test_slots_never_exceed_the_trials_18_treated_patients():
    # Given 15 slots planned (DL1 and DL2 expanded to 6, DL3 open for 3), DL4 opens for 3
    state = given(
        cohort_opened("DL1-IP", 6), cohort_opened("DL2-IP", 6), cohort_opened("DL3-IP", 3)
    )
    (opened,) = decide(open_cohort("DL4-IP", "DL4", recommendation_id="R"), state)
    state = evolve(state, opened.payload)

    # When one more cohort of 3 is opened Then 21 > 18 is refused
    with pytest.raises(RuleViolated) as refused:
        decide(open_cohort("DL3-IP-B", "DL3", recommendation_id="R"), state)

    assert refused.value.rule == "trial-max-patients"
    assert refused.value.message == (
        "opening DL3-IP-B for 3 would plan 21 slots; the trial treats at most 18 patients "
        "(18 already planned or held)"
    )


def test_a_closed_cohort_counts_only_the_slots_it_holds():
    # Given DL1 (6 planned) closed with 1 slot held, and two cohorts of 6 open: 13 committed
    state = given(
        cohort_opened("DL1-IP", 6),
        *eligible_subject("MSK-0001"),
        subject_enrolled("MSK-0001", "DL1-IP", 1),
        cohort_closed("DL1-IP"),
        cohort_opened("DL2-IP", 6),
        cohort_opened("DL3-IP", 6),
    )

    (event,) = decide(open_cohort("DL4-IP", "DL4", recommendation_id="R"), state)

    assert state.committed_slots() == 13
    assert event.payload.capacity == 3


# ---------------------------------------------------------------- expanding


def test_three_plus_three_adds_three_more_at_the_same_dose():
    state = full_cohort("DL1-IP", 3)

    (event,) = decide(expand("DL1-IP", 3, recommendation_id="REC-DL1-1of3"), state)

    assert event == NewEvent(
        "cohort-DL1-IP",
        CohortExpanded(cohort_id="DL1-IP", additional_slots=3, recommendation_id="REC-DL1-1of3"),
        MONDAY_9AM,
    )
    after = evolve(state, event.payload)
    assert (after.cohorts["DL1-IP"].capacity, after.cohorts["DL1-IP"].free_slot()) == (6, 4)


def test_expanding_a_closed_lower_dose_opens_it_again():
    # 3+3 de-escalation: "expand the lower dose to 6 if it had 3"
    state = evolve(full_cohort("DL1-IP", 3), cohort_closed("DL1-IP").payload)

    (event,) = decide(expand("DL1-IP", 3, recommendation_id="REC-DE-ESCALATE"), state)

    after = evolve(state, event.payload)
    assert after.cohorts["DL1-IP"].open
    assert after.cohorts["DL1-IP"].capacity == 6


def test_an_expansion_cites_the_recommendation_or_the_reason_to_depart():
    with pytest.raises(RuleViolated) as refused:
        decide(expand("DL1-IP", 3), full_cohort())

    assert refused.value.rule == "decision-cites-recommendation"


def test_a_cohort_never_opened_cannot_be_expanded_or_closed():
    for command in (expand("DL9-IP", recommendation_id="R"), close("DL9-IP")):
        with pytest.raises(NotFound) as refused:
            decide(command, initial_state)
        assert refused.value.rule == "cohort-must-be-open"
        assert refused.value.message == "cohort DL9-IP was never opened"


def test_an_expansion_past_the_trials_maximum_is_refused():
    state = given(cohort_opened("DL1-IP", 6), cohort_opened("DL2-IP", 6), cohort_opened("DL3-IP"))

    with pytest.raises(RuleViolated) as refused:
        decide(expand("DL3-IP", 4, recommendation_id="R"), state)

    assert refused.value.rule == "trial-max-patients"
    assert refused.value.details == {"committed": 15, "requested": 4, "max_patients": 18}


# ---------------------------------------------------------------- closing


def test_closing_a_cohort_records_the_reason():
    (event,) = decide(close("DL1-IP", "2 of 3 DLT: dose exceeds the MTD"), full_cohort())

    assert event.payload == CohortClosed(
        cohort_id="DL1-IP", reason="2 of 3 DLT: dose exceeds the MTD"
    )


def test_a_cohort_is_closed_once():
    state = given(cohort_opened("DL1-IP"), cohort_closed("DL1-IP"))

    with pytest.raises(RuleViolated) as refused:
        decide(close("DL1-IP"), state)

    assert refused.value.rule == "cohort-closed-once"


def test_no_one_is_enrolled_into_a_closed_cohort_even_with_free_slots():
    state = given(cohort_opened("DL1-IP"), cohort_closed("DL1-IP"), *eligible_subject("MSK-0001"))

    with pytest.raises(RuleViolated) as refused:
        decide(
            EnrollSubject(subject_id="MSK-0001", cohort_id="DL1-IP", occurred_at=MONDAY_9AM), state
        )

    assert refused.value.rule == "cohort-must-be-open"
    assert refused.value.status == 409
    assert refused.value.message == "cohort DL1-IP is closed"


def test_a_closed_cohort_id_is_not_opened_again():
    state = given(cohort_opened("DL1-IP"), cohort_closed("DL1-IP"))

    with pytest.raises(RuleViolated) as refused:
        decide(open_cohort("DL1-IP", "DL1", recommendation_id="R"), state)

    assert refused.value.rule == "cohort-opened-once"


def test_a_released_slot_is_filled_before_the_slots_an_expansion_added():
    # Given DL1-IP full, then MSK-0002's slot released and three slots added
    state = full_cohort("DL1-IP", 3)
    state = fold(
        [
            f.payload
            for f in (
                slot_released("MSK-0002", "DL1-IP", 2),
                cohort_expanded("DL1-IP", 3),
                *eligible_subject("MSK-0009"),
            )
        ],
        state,
    )

    (event,) = decide(
        EnrollSubject(subject_id="MSK-0009", cohort_id="DL1-IP", occurred_at=MONDAY_9AM), state
    )

    # The released slot 2 is filled before the new slots 4-6
    assert event.payload == SubjectEnrolled(subject_id="MSK-0009", cohort_id="DL1-IP", slot=2)
