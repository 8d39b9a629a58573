"""Enrollment decider: the skeleton's rules, still true with screening in front of them.

A cohort is opened once; a subject is registered once under a pseudonymous code; only an
eligible subject who holds no slot may be enrolled, into an open cohort with a free slot. A
full cohort refuses the command or, when asked, puts the subject at the end of the trial-wide
waiting list (first come, first served). Errors name the rule and the values (STYLE.md:
"cohort DL2-IP is full: 3 of 3 slots taken"); NotFound maps to 404, RuleViolated to 409.
Screening, cohort decisions and slots have their own files (test_enrollment_*.py).
"""

from __future__ import annotations

import copy
from datetime import datetime

import pytest
from pydantic import ValidationError

from events.enrollment import CohortOpened, SubjectEnrolled, SubjectRegistered, SubjectWaitlisted
from services.decider import NewEvent
from services.enrollment.decider import (
    COMMANDS,
    Command,
    EnrollSubject,
    OpenCohort,
    RegisterSubject,
    evolve,
    fold,
    initial_state,
    make_decider,
)
from services.errors import NotFound, RuleViolated
from services.http import describe_validation
from trial.config import SHIPPED, load_trial

from .builders import MONDAY_9AM, SITE_ID, at, cohort_opened, eligible_subject, subject_enrolled
from .builders import subject_registered as registered
from .builders import subject_waitlisted as waitlisted

TRIAL = load_trial(SHIPPED)
decide = make_decider(TRIAL).decide


def given(*facts: NewEvent | list[NewEvent]):
    flat = [f for fact in facts for f in (fact if isinstance(fact, list) else [fact])]
    return fold([fact.payload for fact in flat])


def eligible(*subject_ids: str) -> list[NewEvent]:
    return [fact for s in subject_ids for fact in eligible_subject(s)]


def open_cohort(cohort_id="DL1-IP", **fields) -> OpenCohort:
    values = {"cohort_id": cohort_id, "dose_level": "DL1", "occurred_at": MONDAY_9AM}
    return OpenCohort(**{**values, **fields})


def register(subject_id: str, minute: int = 0) -> RegisterSubject:
    return RegisterSubject(subject_id=subject_id, site_id=SITE_ID, occurred_at=at(minute))


def enroll(subject_id: str, cohort_id="DL1-IP", *, waitlist_if_full=False, minute=0):
    return EnrollSubject(
        subject_id=subject_id,
        cohort_id=cohort_id,
        waitlist_if_full=waitlist_if_full,
        occurred_at=at(minute),
    )


def run(state, commands):
    """Decide and evolve each command in turn, as the service does; return all new events."""
    produced = []
    for command in commands:
        events = decide(command, state)
        for new in events:
            state = evolve(state, new.payload)
        produced.extend(events)
    return produced, state


def subjects(n: int) -> list[str]:
    return [f"MSK-{i:04d}" for i in range(1, n + 1)]


def cohort_of(capacity: int, *enrolled: str, cohort_id="DL1-IP"):
    """A state with one open cohort and the given subjects eligible and enrolled in order."""
    facts = [cohort_opened(cohort_id, capacity)]
    for slot, subject_id in enumerate(enrolled, start=1):
        facts += [*eligible_subject(subject_id), subject_enrolled(subject_id, cohort_id, slot)]
    return given(*facts)


# ---------------------------------------------------------------- opening a cohort


def test_opening_a_cohort_records_it_on_the_cohort_stream():
    # Given no cohort; When the review opens DL1-IP at the design's start level
    events = decide(open_cohort("DL1-IP"), initial_state)

    # Then one CohortOpened is appended to stream "cohort-DL1-IP", with the trial file's dose
    # and route for DL1 and the 3+3 cohort size
    assert events == [
        NewEvent(
            "cohort-DL1-IP",
            CohortOpened(
                cohort_id="DL1-IP",
                dose_level="DL1",
                dose_cells_per_kg=1e6,
                route="intraperitoneal",
                capacity=3,
            ),
            MONDAY_9AM,
        )
    ]


def test_a_cohort_is_opened_only_once():
    state = given(cohort_opened("DL1-IP"))

    with pytest.raises(RuleViolated) as refused:
        decide(open_cohort("DL1-IP"), state)

    assert refused.value.rule == "cohort-opened-once"
    assert refused.value.status == 409
    assert "DL1-IP" in refused.value.message
    assert refused.value.details == {"cohort_id": "DL1-IP"}


def test_a_second_cohort_may_be_opened_beside_the_first():
    state = given(cohort_opened("DL1-IP"))

    (event,) = decide(
        open_cohort("DL2-IP", dose_level="DL2", recommendation_id="REC-0001"), state
    )

    assert event.stream_id == "cohort-DL2-IP"
    assert event.payload.cohort_id == "DL2-IP"


# ---------------------------------------------------------------- registering a subject


def test_registering_a_subject_records_it_on_the_subject_stream():
    events = decide(register("MSK-0007", minute=5), initial_state)

    assert events == [
        NewEvent(
            "subject-MSK-0007",
            SubjectRegistered(subject_id="MSK-0007", site_id=SITE_ID),
            at(5),
        )
    ]


def test_a_subject_is_registered_only_once():
    state = given(registered("MSK-0007"))

    with pytest.raises(RuleViolated) as refused:
        decide(register("MSK-0007"), state)

    assert refused.value.rule == "subject-registered-once"
    assert refused.value.status == 409
    assert "MSK-0007" in refused.value.message
    assert refused.value.details == {"subject_id": "MSK-0007"}


# ---------------------------------------------------------------- enrolling


def test_an_unregistered_subject_cannot_be_enrolled():
    state = given(cohort_opened("DL1-IP"))

    with pytest.raises(NotFound) as refused:
        decide(enroll("MSK-0099", "DL1-IP"), state)

    assert refused.value.rule == "subject-must-be-registered"
    assert refused.value.status == 404
    assert "MSK-0099" in refused.value.message
    assert refused.value.details == {"subject_id": "MSK-0099"}


def test_a_subject_cannot_be_enrolled_into_a_cohort_that_is_not_open():
    state = given(cohort_opened("DL1-IP"), eligible("MSK-0001"))

    with pytest.raises(NotFound) as refused:
        decide(enroll("MSK-0001", "DL3-IV"), state)

    assert refused.value.rule == "cohort-must-be-open"
    assert refused.value.status == 404
    assert "DL3-IV" in refused.value.message
    assert refused.value.details == {"cohort_id": "DL3-IV"}


def test_first_subject_takes_slot_one_on_their_own_stream():
    state = given(cohort_opened("DL1-IP", capacity=3), eligible("MSK-0001"))

    events = decide(enroll("MSK-0001", "DL1-IP", minute=30), state)

    assert events == [
        NewEvent(
            "subject-MSK-0001",
            SubjectEnrolled(subject_id="MSK-0001", cohort_id="DL1-IP", slot=1),
            at(30),
        )
    ]


@pytest.mark.parametrize("capacity", [1, 3, 6])
def test_slots_are_numbered_one_to_capacity_in_arrival_order(capacity):
    arrivals = subjects(capacity)
    state = given(cohort_opened("DL1-IP", capacity), eligible(*arrivals))

    events, _ = run(state, [enroll(s, minute=m) for m, s in enumerate(arrivals)])

    assert [(e.payload.subject_id, e.payload.slot) for e in events] == [
        (s, slot) for slot, s in enumerate(arrivals, start=1)
    ]
    assert all(isinstance(e.payload, SubjectEnrolled) for e in events)


def test_fourth_subject_is_refused_when_cohort_of_three_is_full():
    # Given cohort DL1-IP of three with three subjects enrolled, and a fourth eligible
    state = cohort_of(3, "MSK-0001", "MSK-0002", "MSK-0003")
    state = fold([f.payload for f in eligible_subject("MSK-0004")], state)

    # When the fourth is enrolled without asking for the waiting list
    with pytest.raises(RuleViolated) as refused:
        decide(enroll("MSK-0004", "DL1-IP"), state)

    # Then the command is refused, naming the cohort and the counts
    assert refused.value.rule == "cohort-capacity"
    assert refused.value.status == 409
    assert refused.value.message == "cohort DL1-IP is full: 3 of 3 slots taken"
    assert str(refused.value) == "cohort DL1-IP is full: 3 of 3 slots taken"
    assert refused.value.details == {"cohort_id": "DL1-IP", "taken": 3, "capacity": 3}


@pytest.mark.parametrize(
    ("cohort_id", "capacity", "message"),
    [
        ("DL1-IV", 1, "cohort DL1-IV is full: 1 of 1 slots taken"),
        ("DL2-IP", 3, "cohort DL2-IP is full: 3 of 3 slots taken"),
        ("DL3-IP", 6, "cohort DL3-IP is full: 6 of 6 slots taken"),
    ],
)
def test_full_cohort_refusal_names_the_cohort_and_its_counts(cohort_id, capacity, message):
    state = cohort_of(capacity, *subjects(capacity), cohort_id=cohort_id)
    state = fold([f.payload for f in eligible_subject("MSK-0100")], state)

    with pytest.raises(RuleViolated, match=f"^{message}$") as refused:
        decide(enroll("MSK-0100", cohort_id), state)

    assert refused.value.details == {
        "cohort_id": cohort_id,
        "taken": capacity,
        "capacity": capacity,
    }


# ---------------------------------------------------------------- the waiting list


def test_full_cohort_waitlists_subjects_first_come_first_served():
    # Given cohort DL1-IP of one, already taken, and three more subjects eligible
    late = ["MSK-0002", "MSK-0003", "MSK-0004"]
    state = cohort_of(1, "MSK-0001")
    state = fold([f.payload for f in eligible(*late)], state)

    # When they ask, in that order, to be enrolled or else waitlisted
    events, state = run(
        state, [enroll(s, waitlist_if_full=True, minute=m) for m, s in enumerate(late)]
    )

    # Then they are on the waiting list at positions 1, 2, 3, each on their own stream
    assert events == [
        NewEvent(
            f"subject-{s}",
            SubjectWaitlisted(subject_id=s, cohort_id="DL1-IP", position=position),
            at(position - 1),
        )
        for position, s in enumerate(late, start=1)
    ]
    assert state.waiting == tuple(late)


def test_waitlist_if_full_takes_a_free_slot_when_there_is_one():
    state = given(cohort_opened("DL1-IP", 3), eligible("MSK-0001"))

    (event,) = decide(enroll("MSK-0001", waitlist_if_full=True), state)

    assert event.payload == SubjectEnrolled(subject_id="MSK-0001", cohort_id="DL1-IP", slot=1)


def test_cohort_of_three_fills_then_waitlists_the_fourth_and_fifth():
    # Given cohort DL1-IP of three and five subjects eligible
    arrivals = subjects(5)
    state = given(cohort_opened("DL1-IP", 3), eligible(*arrivals))

    # When all five ask to be enrolled or else waitlisted
    events, _ = run(state, [enroll(s, waitlist_if_full=True) for s in arrivals])

    # Then three take slots 1-3 and two wait at positions 1-2
    assert [e.payload for e in events] == [
        SubjectEnrolled(subject_id="MSK-0001", cohort_id="DL1-IP", slot=1),
        SubjectEnrolled(subject_id="MSK-0002", cohort_id="DL1-IP", slot=2),
        SubjectEnrolled(subject_id="MSK-0003", cohort_id="DL1-IP", slot=3),
        SubjectWaitlisted(subject_id="MSK-0004", cohort_id="DL1-IP", position=1),
        SubjectWaitlisted(subject_id="MSK-0005", cohort_id="DL1-IP", position=2),
    ]


# ---------------------------------------------------------------- one slot, one waiting list


@pytest.mark.parametrize("cohort_id", ["DL1-IP", "DL2-IP"], ids=["same cohort", "other cohort"])
def test_a_subject_holding_a_slot_cannot_be_enrolled_again(cohort_id):
    state = given(
        cohort_opened("DL1-IP"),
        cohort_opened("DL2-IP", dose_level="DL2"),
        eligible("MSK-0001"),
        subject_enrolled("MSK-0001", "DL1-IP", 1),
    )

    with pytest.raises(RuleViolated) as refused:
        decide(enroll("MSK-0001", cohort_id, waitlist_if_full=True), state)

    assert refused.value.rule == "one-slot-per-subject"
    assert refused.value.status == 409
    assert refused.value.details == {"subject_id": "MSK-0001", "cohort_id": "DL1-IP"}
    assert "MSK-0001" in refused.value.message
    assert "DL1-IP" in refused.value.message


def waiting_for_a_full_cohort():
    """MSK-0002 waits, DL1-IP (one slot) being full; DL2-IP has free slots."""
    return given(
        cohort_opened("DL1-IP", 1),
        cohort_opened("DL2-IP", 3, dose_level="DL2"),
        eligible("MSK-0001"),
        subject_enrolled("MSK-0001", "DL1-IP", 1),
        eligible("MSK-0002"),
        waitlisted("MSK-0002", "DL1-IP", 1),
    )


def test_a_waitlisted_subject_cannot_be_waitlisted_again():
    with pytest.raises(RuleViolated) as refused:
        decide(enroll("MSK-0002", "DL1-IP", waitlist_if_full=True), waiting_for_a_full_cohort())

    assert refused.value.rule == "one-waiting-list-per-subject"
    assert refused.value.status == 409
    assert refused.value.details == {"subject_id": "MSK-0002", "position": 1}


def test_a_waitlisted_subject_is_still_refused_a_full_cohort():
    with pytest.raises(RuleViolated) as refused:
        decide(enroll("MSK-0002", "DL1-IP"), waiting_for_a_full_cohort())

    assert refused.value.rule == "cohort-capacity"


@pytest.mark.parametrize("waitlist_if_full", [True, False])
def test_the_waiting_list_is_the_trials_so_a_waiting_subject_takes_a_slot_elsewhere(
    waitlist_if_full,
):
    (event,) = decide(
        enroll("MSK-0002", "DL2-IP", waitlist_if_full=waitlist_if_full),
        waiting_for_a_full_cohort(),
    )

    assert event.payload == SubjectEnrolled(subject_id="MSK-0002", cohort_id="DL2-IP", slot=1)


# ---------------------------------------------------------------- purity


def test_decide_is_pure_same_input_same_output_and_state_untouched():
    state = given(cohort_opened("DL1-IP", 2), eligible("MSK-0001", "MSK-0002"))
    state = evolve(state, subject_enrolled("MSK-0001", "DL1-IP", 1).payload)
    before = copy.deepcopy(state)
    command = enroll("MSK-0002", minute=15)

    first, second = decide(command, state), decide(command, state)

    assert first == second
    assert state == before


def test_a_refused_command_leaves_the_state_untouched():
    state = cohort_of(1, "MSK-0001")
    before = copy.deepcopy(state)

    with pytest.raises(RuleViolated):
        decide(enroll("MSK-0001"), state)

    assert state == before


def test_evolve_returns_a_new_state_and_leaves_the_old_one_as_it_was():
    state = given(cohort_opened("DL1-IP", 3), eligible("MSK-0001"))
    before = copy.deepcopy(state)

    after = evolve(state, SubjectEnrolled(subject_id="MSK-0001", cohort_id="DL1-IP", slot=1))

    assert state == before
    assert after.cohorts["DL1-IP"].enrolled == ("MSK-0001",)
    assert after.subjects["MSK-0001"].cohort_id == "DL1-IP"


def test_decide_refuses_a_command_it_does_not_handle():
    class InfuseSubject(Command):
        subject_id: str

    with pytest.raises(TypeError, match="InfuseSubject"):
        decide(InfuseSubject(subject_id="MSK-0001", occurred_at=MONDAY_9AM), initial_state)


def test_commands_are_named_in_the_imperative():
    assert {name: command.__name__ for name, command in COMMANDS.items()} == {
        "register-subject": "RegisterSubject",
        "record-prescreening": "RecordPrescreening",
        "record-consent": "RecordConsent",
        "assess-eligibility": "AssessEligibility",
        "record-screen-failure": "RecordScreenFailure",
        "record-prior-therapy": "RecordPriorTherapy",
        "open-cohort": "OpenCohort",
        "close-cohort": "CloseCohort",
        "enroll-subject": "EnrollSubject",
        "withdraw-subject": "WithdrawSubject",
        "reconfirm-eligibility": "ReconfirmEligibility",
    }


def test_every_command_is_one_the_trial_file_gives_roles_to():
    assert all(TRIAL.roles_for(name) for name in COMMANDS)


# ---------------------------------------------------------------- command validation

VALID = {
    OpenCohort: {
        "cohort_id": "DL1-IP",
        "dose_level": "DL1",
        "dose_cells_per_kg": 1e6,
        "route": "intraperitoneal",
        "capacity": 3,
        "occurred_at": "2025-03-03T09:00:00Z",
    },
    RegisterSubject: {
        "subject_id": "MSK-0007",
        "site_id": SITE_ID,
        "occurred_at": "2025-03-03T09:00:00Z",
    },
    EnrollSubject: {
        "subject_id": "MSK-0007",
        "cohort_id": "DL1-IP",
        "occurred_at": "2025-03-03T09:00:00Z",
    },
}


@pytest.mark.parametrize("command", VALID)
def test_the_valid_bodies_used_below_are_accepted(command):
    command.model_validate(VALID[command])


# Rule names are pydantic's error types, as the HTTP layer reports them (describe_validation).
INVALID = [
    (RegisterSubject, "subject_id", "John Smith", "string_pattern_mismatch"),
    (RegisterSubject, "subject_id", "msk-0007", "string_pattern_mismatch"),
    (RegisterSubject, "subject_id", "MSK-0007\n", "string_pattern_mismatch"),
    (RegisterSubject, "subject_id", "19570412", "string_pattern_mismatch"),
    (RegisterSubject, "subject_id", "MSK-12", "string_pattern_mismatch"),
    (RegisterSubject, "site_id", "", "string_too_short"),
    (EnrollSubject, "subject_id", "Smith, John", "string_pattern_mismatch"),
    (EnrollSubject, "cohort_id", "-DL1", "string_pattern_mismatch"),
    (OpenCohort, "capacity", 0, "greater_than_equal"),
    (OpenCohort, "capacity", 19, "less_than_equal"),
    (OpenCohort, "route", "oral", "literal_error"),
    (OpenCohort, "route", "Intravenous", "literal_error"),
    (OpenCohort, "dose_cells_per_kg", 0, "greater_than"),
    (OpenCohort, "dose_level", "", "string_too_short"),
    (OpenCohort, "occurred_at", "2025-03-03T09:00:00", "timezone_aware"),
    (EnrollSubject, "occurred_at", datetime(2025, 3, 3, 9, 0), "timezone_aware"),
    (RegisterSubject, "patient_name", "John Smith", "extra_forbidden"),
]


@pytest.mark.parametrize(
    ("command", "field", "value", "rule"),
    INVALID,
    ids=[f"{c.__name__}.{f}={v!r}" for c, f, v, _ in INVALID],
)
def test_invalid_command_is_refused_naming_the_field_and_rule(command, field, value, rule):
    with pytest.raises(ValidationError) as refused:
        command.model_validate({**VALID[command], field: value})

    assert [(e["field"], e["rule"]) for e in describe_validation(refused.value)] == [(field, rule)]


@pytest.mark.parametrize("capacity", [1, 18])
def test_capacity_bounds_are_inclusive(capacity):
    assert (
        OpenCohort.model_validate({**VALID[OpenCohort], "capacity": capacity}).capacity == capacity
    )


@pytest.mark.parametrize("route", ["intraperitoneal", "intravenous"])
def test_both_routes_of_the_protocol_are_accepted(route):
    assert OpenCohort.model_validate({**VALID[OpenCohort], "route": route}).route == route


def test_a_missing_field_is_reported_by_name():
    body = {k: v for k, v in VALID[EnrollSubject].items() if k != "cohort_id"}

    with pytest.raises(ValidationError) as refused:
        EnrollSubject.model_validate(body)

    assert describe_validation(refused.value) == [
        {"field": "cohort_id", "rule": "missing", "message": "Field required"}
    ]


def test_a_body_that_is_not_an_object_is_reported_against_the_body():
    with pytest.raises(ValidationError) as refused:
        EnrollSubject.model_validate(["MSK-0007", "DL1-IP"])

    (error,) = describe_validation(refused.value)
    assert error["field"] == "(body)"
    assert error["rule"] == "model_type"


def test_commands_are_frozen():
    command = enroll("MSK-0001")

    with pytest.raises(ValidationError):
        command.cohort_id = "DL2-IP"


# ---------------------------------------------------------------- finite numbers only

# orjson writes infinity as null, so an infinite dose sealed into an event would make that event
# unreadable forever: both the command and the event refuse it.


@pytest.mark.parametrize(
    "dose", ["inf", "Infinity", float("inf"), float("nan")],
    ids=["text inf", "text Infinity", "float inf", "float nan"],
)
def test_an_infinite_dose_is_refused_when_a_cohort_is_opened(dose):
    with pytest.raises(ValidationError):
        OpenCohort.model_validate({**VALID[OpenCohort], "dose_cells_per_kg": dose})


def test_a_cohort_opened_event_cannot_carry_an_infinite_dose():
    with pytest.raises(ValidationError):
        CohortOpened(
            cohort_id="DL1-IP", dose_level="DL1", dose_cells_per_kg=float("inf"),
            route="intraperitoneal", capacity=3,
        )
