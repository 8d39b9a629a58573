"""The deciders' states are values that share their structure (issue 12): ``evolve`` returns a
new state and leaves the one it was given exactly as it was, a state folded from events equals
one a test builds from plain dicts and sets, and its maps list their entries in the order they
first appeared, as the dicts they replaced did.

Source: the Decider pattern of /work/shared/DESIGN.md section 2 (``evolve(state, event) ->
state``, pure) and DOMAIN.md section 2.1 (a subject is registered, then enrolled into a cohort
slot).
"""

from __future__ import annotations

import pickle

from services.enrollment.state import Cohort, EnrollmentState, Subject, evolve, fold
from services.persistent import PMap, PQueue, PSet, add, drop, put

from .builders import (
    cohort_opened,
    subject_enrolled,
    subject_registered,
    subject_waitlisted,
    subject_withdrawn,
)


def _payloads(*events):
    return [event.payload for event in events]


def test_enrolling_a_subject_leaves_the_state_before_it_as_it_was():
    before = fold(_payloads(cohort_opened("DL1-IP", 3), subject_registered("MSK-001"),
                            subject_registered("MSK-002")))

    after = evolve(before, subject_enrolled("MSK-001", "DL1-IP", 1).payload)

    assert before.subjects["MSK-001"].slot is None
    assert before.cohorts["DL1-IP"].slots == ()
    assert after.subjects["MSK-001"].slot == 1
    assert after.cohorts["DL1-IP"].slots == ((1, "MSK-001"),)
    # the subject the event did not concern is the same object in both states: shared
    assert after.subjects["MSK-002"] is before.subjects["MSK-002"]


def test_a_state_folded_from_events_equals_one_built_from_plain_dicts():
    folded = fold(_payloads(cohort_opened("DL1-IP", 3), subject_registered("MSK-001"),
                            subject_enrolled("MSK-001", "DL1-IP", 1)))

    built = EnrollmentState(
        cohorts={"DL1-IP": Cohort("DL1-IP", "DL1", 3, slots=((1, "MSK-001"),))},
        subjects={"MSK-001": Subject("MSK-001", cohort_id="DL1-IP", slot=1)},
    )

    assert folded == built
    assert built == folded


def test_a_state_a_test_starts_from_plain_dicts_evolves_like_a_folded_one():
    start = EnrollmentState(cohorts={"DL1-IP": Cohort("DL1-IP", "DL1", 3)})

    after = evolve(start, subject_registered("MSK-001").payload)

    assert after.subjects == {"MSK-001": Subject("MSK-001")}
    assert start.subjects == {}


def test_cohorts_are_listed_in_the_order_they_were_opened_even_after_a_change():
    state = fold(_payloads(cohort_opened("DL2-IP", 3), cohort_opened("DL1-IP", 3),
                           cohort_opened("DL3-IP", 3), subject_registered("MSK-001"),
                           subject_enrolled("MSK-001", "DL1-IP", 1)))

    assert list(state.cohorts) == ["DL2-IP", "DL1-IP", "DL3-IP"]


def test_a_persistent_map_behaves_like_the_dict_it_replaces():
    plain = {"MSK-002": 2, "MSK-001": 1}
    mapped = put(put(PMap(), "MSK-002", 2), "MSK-001", 1)

    assert mapped == plain and plain == mapped
    assert list(mapped.items()) == list(plain.items())
    assert put(mapped, "MSK-002", 9) == {"MSK-002": 9, "MSK-001": 1}
    assert list(put(mapped, "MSK-002", 9)) == ["MSK-002", "MSK-001"]
    assert drop(mapped, "MSK-002") == {"MSK-001": 1}
    assert mapped == plain  # unchanged by the copies above
    assert mapped != {"MSK-001": 1} and mapped.get("MSK-003") is None
    assert pickle.loads(pickle.dumps(mapped)) == mapped


def test_a_persistent_set_behaves_like_the_frozenset_it_replaces():
    infused = add(frozenset({"MSK-001"}), "MSK-002")

    assert isinstance(infused, PSet)
    assert infused == frozenset({"MSK-001", "MSK-002"}) == infused
    assert "MSK-002" in infused and "MSK-003" not in infused
    assert hash(infused) == hash(frozenset({"MSK-001", "MSK-002"}))
    assert infused.remove("MSK-001") == {"MSK-002"}


def test_the_waiting_list_keeps_first_come_order_as_subjects_join_and_leave():
    state = fold(_payloads(cohort_opened("DL1-IP", 1), subject_registered("MSK-001"),
                           subject_enrolled("MSK-001", "DL1-IP", 1)))
    for subject in ("MSK-002", "MSK-003", "MSK-004"):
        state = fold(_payloads(subject_registered(subject),
                               subject_waitlisted(subject, "DL1-IP", len(state.waiting) + 1)),
                     state)

    left = fold(_payloads(subject_withdrawn("MSK-003")), state)

    assert state.waiting == ("MSK-002", "MSK-003", "MSK-004")
    assert left.waiting == ("MSK-002", "MSK-004") == tuple(left.waiting)
    assert left.waiting.index("MSK-004") == 1 and left.waiting[:1] == ("MSK-002",)
    assert "MSK-003" not in left.waiting


def test_a_persistent_queue_neither_repeats_nor_moves_a_subject_already_in_it():
    queue = PQueue(["MSK-002", "MSK-004"])

    assert queue.append("MSK-002") == ["MSK-002", "MSK-004"]
    assert queue.append("MSK-005") == ("MSK-002", "MSK-004", "MSK-005")
    assert queue.remove("MSK-009") is queue
    assert queue == ("MSK-002", "MSK-004")  # unchanged by the copies above
