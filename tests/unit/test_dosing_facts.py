"""The facts (and commands) the dosing tests start from, and the state dosing builds from them.

Dosing follows enrollment and manufacturing read-only (DESIGN.md 2, services/runtime.py): its
``evolve`` folds their contract events (CohortOpened, SubjectEnrolled, EligibilityReconfirmed,
SubjectWithdrawn; LotReleased, LotOutOfSpecification, ExceptionalReleaseApproved, LotThawed)
with its own. Lot states follow DOMAIN.md 2.3-2.4: released (conditionally while sterility or
mycoplasma is "negative to date") or out of specification; an out-of-specification lot may be
given only on an exceptional release; a late failure after release blocks administration.
The two topics are read independently, so the state must not depend on how they interleave.
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from events.dosing import BedsideCoiVerified, ConditioningDayRecorded, InfusionRecorded
from events.enrollment import (
    CohortOpened,
    EligibilityReconfirmed,
    SubjectEnrolled,
    SubjectRegistered,
    SubjectWithdrawn,
)
from events.envelope import Actor
from events.manufacturing import (
    ExceptionalReleaseApproved,
    LotOutOfSpecification,
    LotReleased,
    LotThawed,
)
from events.registry import EventPayload
from events.safety import AdverseEventReported
from services.dosing.decider import RecordConditioningDay, RecordInfusion, make_decider
from services.dosing.state import fold, initial_state
from services.errors import DomainError, RuleViolated
from trial.config import load_trial

TRIAL = load_trial()
"""The shipped trial file (NCT06623396): fludarabine 30 and cyclophosphamide 300 mg/m^2/day for
3 days, infused dose within 20% of cells/kg x weight."""
DECIDER = make_decider(TRIAL)

SUBJECT = "MSK-0007"
LOT = "LOT-0007-A"
COI = "COI-MSK-0007-01"
OTHER_SUBJECT = "MSK-0008"
OTHER_LOT = "LOT-0008-A"
OTHER_COI = "COI-MSK-0008-01"
NURSE = Actor(user_id="nurse-lee", role="site_coordinator")
DOCTOR = Actor(user_id="dr-ortega", role="investigator")
INFUSION_DAY = datetime(2025, 4, 7, 10, 0, tzinfo=UTC)


def on_day(day: int, minutes: int = 0) -> datetime:
    """Business time ``day`` days (and ``minutes``) from the infusion at 10:00 on day 0."""
    return INFUSION_DAY + timedelta(days=day, minutes=minutes)


def conditioning_time(day: int) -> datetime:
    """Conditioning day 1, 2, 3 is given on days -5, -4, -3 at 10:00."""
    return on_day(day - 6)


CHECK_TIMES = {"nurse-lee": on_day(0, -30), "dr-ortega": on_day(0, -20)}
"""The bedside checks, half an hour and twenty minutes before the infusion."""


# ---------------------------------------------------------------- enrollment facts


def cohort_opened(
    cohort_id="DL1-IP", dose_level="DL1", cells_per_kg=1e6, route="intraperitoneal"
) -> CohortOpened:
    return CohortOpened(
        cohort_id=cohort_id,
        dose_level=dose_level,
        dose_cells_per_kg=cells_per_kg,
        route=route,
        capacity=3,
    )


def enrolled(subject_id=SUBJECT, cohort_id="DL1-IP") -> SubjectEnrolled:
    return SubjectEnrolled(subject_id=subject_id, cohort_id=cohort_id, slot=1)


def reconfirmed(subject_id=SUBJECT, lot_id=LOT) -> EligibilityReconfirmed:
    return EligibilityReconfirmed(subject_id=subject_id, lot_id=lot_id)


def withdrawn(subject_id=SUBJECT) -> SubjectWithdrawn:
    return SubjectWithdrawn(subject_id=subject_id, reason_code="consent-withdrawn")


# ---------------------------------------------------------------- manufacturing facts


def released(lot_id=LOT, subject_id=SUBJECT, coi_id=COI, *, conditional=False) -> LotReleased:
    return LotReleased(
        lot_id=lot_id,
        subject_id=subject_id,
        coi_id=coi_id,
        total_car_t_cells=2.1e9,
        conditional=conditional,
    )


def out_of_specification(
    lot_id=LOT, subject_id=SUBJECT, failed=("viability",), *, after_release=False
) -> LotOutOfSpecification:
    return LotOutOfSpecification(
        lot_id=lot_id, subject_id=subject_id, failed_tests=failed, after_release=after_release
    )


def exceptionally_released(lot_id=LOT, subject_id=SUBJECT) -> ExceptionalReleaseApproved:
    return ExceptionalReleaseApproved(
        lot_id=lot_id, subject_id=subject_id, investigator_id="dr-ortega", sponsor_id="sp-1"
    )


def thawed(lot_id=LOT, subject_id=SUBJECT) -> LotThawed:
    return LotThawed(lot_id=lot_id, subject_id=subject_id)


# ---------------------------------------------------------------- dosing facts


def conditioning_day(day: int, subject_id=SUBJECT, lot_id=LOT) -> ConditioningDayRecorded:
    """180 cm and 80 kg: BSA 2.0 m^2, so fludarabine 60 mg and cyclophosphamide 600 mg."""
    return ConditioningDayRecorded(
        subject_id=subject_id,
        lot_id=lot_id,
        day=day,
        height_cm=180.0,
        weight_kg=80.0,
        fludarabine_mg=60.0,
        cyclophosphamide_mg=600.0,
        given_at=conditioning_time(day),
    )


def checked(
    by: Actor, subject_id=SUBJECT, lot_id=LOT, coi_id=COI, at: datetime | None = None
) -> BedsideCoiVerified:
    return BedsideCoiVerified(
        subject_id=subject_id,
        lot_id=lot_id,
        coi_id=coi_id,
        verified_by=by.user_id,
        verified_at=at or CHECK_TIMES.get(by.user_id, on_day(0, -10)),
    )


def infused(subject_id=SUBJECT, lot_id=LOT) -> InfusionRecorded:
    return InfusionRecorded(
        subject_id=subject_id,
        lot_id=lot_id,
        cohort_id="DL1-IP",
        dose_level="DL1",
        target_cells_per_kg=1e6,
        weight_kg=70.0,
        cells_infused=7e7,
        received_cells_per_kg=1e6,
        counted_dose_level="DL1",
        route="intraperitoneal",
        infused_at=INFUSION_DAY,
    )


ENROLLED = [cohort_opened(), enrolled()]
PRODUCT_AVAILABLE = [*ENROLLED, released(), reconfirmed()]
"""Ready for conditioning day 1: enrolled, lot released, eligibility re-confirmed for it."""
CONDITIONED = [*PRODUCT_AVAILABLE, *(conditioning_day(d) for d in (1, 2, 3))]
READY_TO_INFUSE = [*CONDITIONED, thawed(), checked(NURSE), checked(DOCTOR)]
"""Every precondition of the infusion holds."""


def given(*facts: EventPayload):
    return fold(list(facts))


def without(facts: list[EventPayload], *dropped: EventPayload) -> list[EventPayload]:
    left = [fact for fact in facts if fact not in dropped]
    assert len(left) == len(facts) - len(dropped), "a dropped fact was not in the list"
    return left


# ---------------------------------------------------------------- commands and refusals


def record_day(day: int, *, lot_id=LOT, subject_id=SUBJECT, **fields) -> RecordConditioningDay:
    """Conditioning day ``day`` as the facts above give it: 180 cm, 80 kg, 60 and 600 mg."""
    values = {
        "subject_id": subject_id,
        "lot_id": lot_id,
        "day": day,
        "height_cm": 180.0,
        "weight_kg": 80.0,
        "fludarabine_mg": 60.0,
        "cyclophosphamide_mg": 600.0,
        "occurred_at": conditioning_time(day),
    }
    return RecordConditioningDay(**{**values, **fields})


def infuse(*, lot_id=LOT, weight_kg=70.0, cells_infused=7e7, **fields) -> RecordInfusion:
    """7 x 10^7 cells for MSK-0007 at 70 kg, intraperitoneally, at 10:00 on day 0."""
    values = {
        "subject_id": SUBJECT,
        "lot_id": lot_id,
        "weight_kg": weight_kg,
        "cells_infused": cells_infused,
        "route": "intraperitoneal",
        "occurred_at": INFUSION_DAY,
    }
    return RecordInfusion(**{**values, **fields})


def refused(command, state, error: type[DomainError] = RuleViolated, decider=DECIDER):
    """Decide a command that must be refused with ``error``: nothing emitted, state untouched."""
    before = copy.deepcopy(state)
    with pytest.raises(error) as refusal:
        decider.decide(command, state)
    assert state == before
    return refusal.value


# ---------------------------------------------------------------- the state these facts build


def test_the_ready_state_knows_cohort_subject_and_lot():
    state = given(*READY_TO_INFUSE)

    assert state.cohorts["DL1-IP"].cells_per_kg == 1e6
    assert state.cohorts["DL1-IP"].route == "intraperitoneal"
    subject = state.subjects[SUBJECT]
    assert subject.cohort_id == "DL1-IP"
    assert subject.reconfirmed_for_lots == (LOT,)
    assert subject.conditioning_days == (1, 2, 3)
    assert subject.conditioning_lot == LOT
    assert subject.checked_by(LOT) == ("nurse-lee", "dr-ortega")
    assert subject.conditioning[-1].given_at == conditioning_time(3)
    assert not subject.withdrawn and subject.infused_lot is None
    lot = state.lots[LOT]
    assert (lot.subject_id, lot.coi_id, lot.release, lot.thawed) == (
        SUBJECT,
        COI,
        "released",
        True,
    )


LOT_HISTORIES = [
    ("nothing recorded", [], "not-released", False),
    ("released", [released()], "released", True),
    ("released conditionally", [released(conditional=True)], "conditionally-released", True),
    ("out of specification at QC", [out_of_specification()], "out-of-specification", False),
    (
        "out of specification, then exceptionally released",
        [out_of_specification(), exceptionally_released()],
        "exceptionally-released",
        True,
    ),
    (
        "released conditionally, then a late positive sterility",
        [
            released(conditional=True),
            out_of_specification(failed=("sterility",), after_release=True),
        ],
        "out-of-specification",
        False,
    ),
    (
        "late positive sterility, then exceptionally released",
        [
            released(conditional=True),
            out_of_specification(failed=("sterility",), after_release=True),
            exceptionally_released(),
        ],
        "exceptionally-released",
        True,
    ),
    (
        "exceptionally released, then another late failure",
        [
            out_of_specification(),
            exceptionally_released(),
            out_of_specification(failed=("mycoplasma",), after_release=True),
        ],
        "out-of-specification",
        False,
    ),
]


@pytest.mark.parametrize(
    ("history", "release", "available"),
    [case[1:] for case in LOT_HISTORIES],
    ids=[case[0] for case in LOT_HISTORIES],
)
def test_a_lot_may_be_given_only_released_or_exceptionally_released(history, release, available):
    lot = given(*history).lot(LOT)

    assert lot.release == release
    assert lot.available is available


def test_a_thaw_does_not_change_the_release_state():
    lot = given(released(conditional=True), thawed()).lot(LOT)

    assert (lot.release, lot.thawed) == ("conditionally-released", True)


def test_the_failed_tests_and_their_timing_are_kept_for_the_refusal():
    lot = given(
        released(conditional=True),
        out_of_specification(failed=("sterility", "mycoplasma"), after_release=True),
    ).lot(LOT)

    assert lot.failed_tests == ("sterility", "mycoplasma")
    assert lot.failed_after_release is True


def test_facts_of_other_contexts_that_dosing_does_not_use_change_nothing():
    state = given(*READY_TO_INFUSE)

    after = fold(
        [
            SubjectRegistered(subject_id="MSK-0009", site_id="SITE-01"),
            AdverseEventReported.model_validate(
                AdverseEventReported.model_json_schema()["examples"][0]
            ),
        ],
        state,
    )

    assert after == state


def interleavings(first: list, second: list):
    """Every merge of two sequences that keeps each one's own order (two topics read apart)."""
    n = len(first) + len(second)
    for positions in itertools.combinations(range(n), len(first)):
        a, b = iter(first), iter(second)
        yield [next(a) if i in positions else next(b) for i in range(n)]


def test_the_state_does_not_depend_on_how_enrollment_and_manufacturing_interleave():
    from_enrollment = [cohort_opened(), enrolled(), reconfirmed(), withdrawn()]
    from_manufacturing = [
        released(conditional=True),
        out_of_specification(failed=("sterility",), after_release=True),
        thawed(),
    ]
    states = {repr(given(*order)) for order in interleavings(from_enrollment, from_manufacturing)}

    assert len(states) == 1


def test_upstream_history_folded_before_dosing_own_facts_gives_the_same_state():
    # On start-up the runtime folds every upstream fact first, then dosing's own topic.
    live = [*PRODUCT_AVAILABLE, conditioning_day(1), thawed(), checked(NURSE)]
    upstream_first = [*PRODUCT_AVAILABLE, thawed(), conditioning_day(1), checked(NURSE)]

    assert given(*live) == given(*upstream_first)


def test_evolve_leaves_the_old_state_as_it_was():
    before = given(*PRODUCT_AVAILABLE)
    snapshot = repr(before)

    fold([conditioning_day(1), thawed()], before)

    assert repr(before) == snapshot
    assert initial_state.subjects == {} and initial_state.lots == {}
