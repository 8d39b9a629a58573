"""A lot out of specification after its infusion: a safety follow-up with notice to the
investigator (issue 11, item 3; decision 32).

Source: DOMAIN.md section 2.4: sterility and mycoplasma can be "negative to date" at release,
so a lot may be released conditionally and turn out of specification later: "before infusion
that blocks administration; after infusion it becomes a safety event with notice to the
investigator".

Given the subject MSK-0007 infused with LOT-0007-A on 2 March, When manufacturing records a
late failure of that lot, Then safety opens a follow-up that the investigator's notice and
assessment close, and the board shows it until then.
"""

from __future__ import annotations

import pytest

from events.manufacturing import ExceptionalReleaseApproved, LotOutOfSpecification
from events.safety import LateOosFollowUpRecorded
from projections.base import fold as fold_projection
from projections.catalog import build
from services.decider import NewEvent
from services.errors import NotFound, RuleViolated
from services.safety.commands import RecordLateOosFollowUp
from services.safety.late_oos import awaiting_follow_up

from .builders import history
from .test_safety_givens import (
    DECIDER,
    SUBJECT,
    TRIAL,
    day,
    given,
    infused,
    registered,
    report,
    run,
    treated,
)

LOT = "LOT-0007-A"
BOARD = build(TRIAL)["safety"]


def late_failure(test: str = "sterility", after_release: bool = True) -> LotOutOfSpecification:
    return LotOutOfSpecification(
        lot_id=LOT, subject_id=SUBJECT, failed_tests=(test,), after_release=after_release
    )


def exceptional_release() -> ExceptionalReleaseApproved:
    return ExceptionalReleaseApproved(
        lot_id=LOT, subject_id=SUBJECT, investigator_id="dr-ortega", sponsor_id="sp-lee"
    )


def follow_up(at=None, assessment="no-adverse-event", ae_ids=(), lot_id=LOT, **fields):
    values = dict(
        lot_id=lot_id,
        investigator_notified_at=day(7),
        assessment=assessment,
        ae_ids=ae_ids,
        summary="Subject seen on day 7: afebrile, no sign of infection",
        occurred_at=at or day(7, hours=2),
    )
    return RecordLateOosFollowUp(**{**values, **fields})


def open_lots(state) -> list[tuple[str, tuple[str, ...]]]:
    return [(lot.lot_id, lot.open_tests) for lot in awaiting_follow_up(state)]


def refused(state, command) -> RuleViolated | NotFound:
    with pytest.raises((RuleViolated, NotFound)) as caught:
        DECIDER.decide(command, state)
    error = caught.value
    assert isinstance(error, RuleViolated | NotFound)
    return error


# ---------------------------------------------------------------- the follow-up opens


def test_a_late_failure_of_an_infused_lot_opens_a_follow_up():
    assert open_lots(given(treated(), late_failure())) == [(LOT, ("sterility",))]


def test_the_follow_up_opens_whichever_topic_was_folded_first():
    # The manufacturing and dosing topics reach safety in no fixed order
    late_first = given(registered(), late_failure(), infused())
    assert open_lots(late_first) == [(LOT, ("sterility",))]


def test_a_failure_before_release_opens_nothing():
    assert open_lots(given(treated(), late_failure(after_release=False))) == []


def test_a_late_failure_of_a_lot_not_infused_opens_nothing():
    # Before infusion the failure blocks administration (dosing's rule): no safety event
    assert open_lots(given(registered(), late_failure())) == []


def test_a_late_failure_covered_by_an_exceptional_release_before_infusion_opens_nothing():
    # The investigator and the sponsor knew it when they released the lot: no new information
    assert open_lots(given(registered(), late_failure(), exceptional_release(), infused())) == []


def test_a_failure_after_the_exceptional_release_opens_a_follow_up():
    state = given(registered(), late_failure("sterility"), exceptional_release(), infused(),
                  late_failure("mycoplasma"))
    assert open_lots(state) == [(LOT, ("mycoplasma",))]


# ---------------------------------------------------------------- the investigator closes it


def test_the_investigators_notice_and_assessment_close_the_follow_up():
    events, state = run(given(treated(), late_failure()), follow_up())

    assert [new.payload for new in events] == [
        LateOosFollowUpRecorded(
            lot_id=LOT,
            subject_id=SUBJECT,
            failed_tests=("sterility",),
            investigator_notified_at=day(7),
            assessment="no-adverse-event",
            ae_ids=(),
            summary="Subject seen on day 7: afebrile, no sign of infection",
        )
    ]
    assert events[0].stream_id == f"late-oos-{LOT}"
    assert open_lots(state) == []


def test_an_adverse_event_that_follows_is_named_in_the_assessment():
    _events, state = run(
        given(treated(), late_failure()),
        report("AE-0007-02", term="Fever", grade=2, onset_at=day(6),
               sponsor_received_at=day(6, hours=4), occurred_at=day(6, hours=5)),
    )
    events, state = run(state, follow_up(assessment="adverse-event-reported",
                                         ae_ids=("AE-0007-02",)))
    assert events[0].payload.ae_ids == ("AE-0007-02",)
    assert open_lots(state) == []


@pytest.mark.parametrize(
    ("assessment", "ae_ids"),
    [("adverse-event-reported", ()), ("no-adverse-event", ("AE-0007-01",))],
)
def test_the_assessment_and_its_adverse_events_must_agree(assessment, ae_ids):
    _events, state = run(given(treated(), late_failure()), report())
    error = refused(state, follow_up(assessment=assessment, ae_ids=ae_ids))
    assert error.rule == "assessment-names-its-adverse-events"


def test_an_adverse_event_of_another_subject_is_refused():
    state = given(treated(), treated("MSK-0008"), late_failure())
    _events, state = run(state, report("AE-0008-01", subject_id="MSK-0008"))
    error = refused(state, follow_up(assessment="adverse-event-reported", ae_ids=("AE-0008-01",)))
    assert (error.rule, error.details["subject_id"]) == ("ae-of-the-lots-subject", SUBJECT)


def test_an_unreported_adverse_event_is_refused():
    error = refused(given(treated(), late_failure()),
                    follow_up(assessment="adverse-event-reported", ae_ids=("AE-0007-09",)))
    assert (error.rule, error.status) == ("ae-must-be-reported", 404)


def test_a_notice_dated_after_the_command_is_refused():
    error = refused(given(treated(), late_failure()), follow_up(investigator_notified_at=day(8)))
    assert error.rule == "time-not-in-the-future"


def test_without_an_open_follow_up_nothing_is_recorded():
    assert refused(given(treated()), follow_up()).rule == "late-oos-follow-up-needs-an-open-item"
    assert refused(given(), follow_up()).rule == "lot-must-be-known"
    _events, state = run(given(treated(), late_failure()), follow_up())
    assert refused(state, follow_up()).rule == "late-oos-follow-up-needs-an-open-item"


def test_a_later_failure_opens_a_new_follow_up():
    _events, state = run(given(treated(), late_failure("sterility")), follow_up())
    state = DECIDER.evolve(state, late_failure("mycoplasma"))
    assert open_lots(state) == [(LOT, ("mycoplasma",))]


# ---------------------------------------------------------------- on the board


def lot_event(payload) -> NewEvent:
    return NewEvent(f"lot-{LOT}", payload, day(6))


def test_the_board_shows_the_follow_up_until_the_investigator_records_it():
    infusion = NewEvent(f"infusion-{SUBJECT}", infused(), day(0))
    shown = BOARD.document(
        fold_projection(BOARD, history([infusion, lot_event(late_failure())])), day(7)
    )
    assert shown["late_oos_follow_ups"] == [
        {
            "lot_id": LOT,
            "subject_id": SUBJECT,
            "failed_tests": ["sterility"],
            "needs": "the investigator's notice and safety assessment",
        }
    ]

    events, _state = run(given(treated(), late_failure()), follow_up())
    done = BOARD.document(
        fold_projection(BOARD, history([infusion, lot_event(late_failure()), *events])), day(8)
    )
    assert done["late_oos_follow_ups"] == []
