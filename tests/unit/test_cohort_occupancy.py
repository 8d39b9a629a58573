"""Cohort occupancy: a pure fold of enrollment events into, per cohort, slots planned, taken
and free, who holds them, and the trial-wide waiting list in arrival order
(projections/cohort_occupancy.py). A withdrawal before infusion frees its slot (SlotReleased),
an expansion adds slots, a closed cohort has none free. The live view and the replay share one
serialisation, so it must be deterministic."""

from __future__ import annotations

import orjson

from projections.base import fold, to_json
from projections.cohort_occupancy import PROJECTION, key_of

from .builders import (
    cohort_closed,
    cohort_expanded,
    cohort_opened,
    history,
    slot_released,
    subject_enrolled,
    subject_registered,
    subject_screen_failed,
    subject_waitlisted,
    subject_withdrawn,
)


def occupancy(recorded) -> dict:
    return PROJECTION.render(fold(PROJECTION, recorded))


def by_id(document: dict) -> dict[str, dict]:
    return {cohort["cohort_id"]: cohort for cohort in document["cohorts"]}


def enrolled_in_order(cohort_id: str, subject_ids: list[str]):
    for slot, subject_id in enumerate(subject_ids, start=1):
        yield subject_registered(subject_id)
        yield subject_enrolled(subject_id, cohort_id, slot)


def test_full_cohort_of_three_with_two_waiting():
    # Given DL1-IP for three subjects, filled by MSK-0001..3, and MSK-0004..5 waitlisted
    recorded = history(
        [
            cohort_opened("DL1-IP", 3),
            *enrolled_in_order("DL1-IP", ["MSK-0001", "MSK-0002", "MSK-0003"]),
            subject_registered("MSK-0004"),
            subject_waitlisted("MSK-0004", "DL1-IP", 1),
            subject_registered("MSK-0005"),
            subject_waitlisted("MSK-0005", "DL1-IP", 2),
        ]
    )

    # When the projection folds them
    document = occupancy(recorded)

    # Then DL1-IP shows 3 planned, 3 taken, 0 free, 2 waiting, in arrival order
    assert document == {
        "projection": "cohort-occupancy",
        "cohorts": [
            {
                "cohort_id": "DL1-IP",
                "status": "open",
                "dose_level": "DL1",
                "dose_cells_per_kg": 1e6,
                "route": "intraperitoneal",
                "slots_planned": 3,
                "slots_taken": 3,
                "slots_free": 0,
                "enrolled": ["MSK-0001", "MSK-0002", "MSK-0003"],
                "waiting": 2,
                "waiting_list": ["MSK-0004", "MSK-0005"],
            }
        ],
        "waiting_list": [
            {"position": 1, "subject_id": "MSK-0004", "asked_for": "DL1-IP"},
            {"position": 2, "subject_id": "MSK-0005", "asked_for": "DL1-IP"},
        ],
        "screening": [
            {"subject_id": "MSK-0004", "status": "waitlisted", "detail": "for DL1-IP"},
            {"subject_id": "MSK-0005", "status": "waitlisted", "detail": "for DL1-IP"},
        ],
    }


def test_counts_per_cohort_are_kept_apart():
    # Given DL1-IP (3) with one subject, DL2-IV (6) with four, DL3-IP (3) just opened
    recorded = history(
        [
            cohort_opened("DL1-IP", 3),
            cohort_opened("DL2-IV", 6, dose_level="DL2", route="intravenous"),
            cohort_opened("DL3-IP", 3, dose_level="DL3"),
            *enrolled_in_order("DL1-IP", ["MSK-0001"]),
            *enrolled_in_order("DL2-IV", ["MSK-0011", "MSK-0012", "MSK-0013", "MSK-0014"]),
        ]
    )

    cohorts = by_id(occupancy(recorded))

    counts = {
        cohort_id: (c["slots_planned"], c["slots_taken"], c["slots_free"], c["waiting"])
        for cohort_id, c in cohorts.items()
    }
    assert counts == {"DL1-IP": (3, 1, 2, 0), "DL2-IV": (6, 4, 2, 0), "DL3-IP": (3, 0, 3, 0)}
    assert cohorts["DL2-IV"]["route"] == "intravenous"
    assert cohorts["DL2-IV"]["dose_level"] == "DL2"


def test_a_registered_subject_is_in_screening_and_in_no_cohort():
    (registration,) = history([subject_registered("MSK-0001")])

    assert key_of(registration) == ("screening:MSK-0001",)
    assert occupancy([registration]) == {
        "projection": "cohort-occupancy",
        "cohorts": [],
        "waiting_list": [],
        "screening": [{"subject_id": "MSK-0001", "status": "registered", "detail": None}],
    }


def test_state_is_kept_per_cohort_and_per_waiting_subject_so_no_value_grows_with_the_trial():
    recorded = history(
        [
            cohort_opened("DL2-IP", 3),
            subject_registered("MSK-0001"),
            subject_enrolled("MSK-0001", "DL2-IP", 1),
            subject_registered("MSK-0002"),
            subject_waitlisted("MSK-0002", "DL2-IP", 1),
        ]
    )

    assert [key_of(r) for r in recorded] == [
        ("cohort:DL2-IP",),
        ("screening:MSK-0001",),
        ("cohort:DL2-IP", "waiting:MSK-0001", "screening:MSK-0001"),
        ("screening:MSK-0002",),
        ("waiting:MSK-0002", "screening:MSK-0002"),
    ]


def test_cohorts_are_rendered_in_cohort_id_order_whatever_the_opening_order():
    recorded = history(
        [cohort_opened("DL3-IP"), cohort_opened("DL1-IP"), cohort_opened("DL2-IV", 6)]
    )

    ids = [c["cohort_id"] for c in occupancy(recorded)["cohorts"]]

    assert ids == ["DL1-IP", "DL2-IV", "DL3-IP"]


def test_folding_in_two_batches_equals_folding_all_at_once():
    # The live worker folds event by event; the replay folds the whole topic.
    recorded = history(
        [
            cohort_opened("DL1-IP", 3),
            *enrolled_in_order("DL1-IP", ["MSK-0001", "MSK-0002"]),
        ]
    )

    states = fold(PROJECTION, recorded[:2])
    states = fold(PROJECTION, recorded[2:], states)

    assert states == fold(PROJECTION, recorded)


def test_an_enrollment_seen_before_its_cohort_opened_is_not_counted_as_free():
    # Nothing planned yet: free slots never go negative.
    recorded = history([subject_registered("MSK-0001"), subject_enrolled("MSK-0001", "DL1-IP", 1)])

    (cohort,) = occupancy(recorded)["cohorts"]

    assert (cohort["status"], cohort["slots_planned"], cohort["slots_taken"]) == ("unknown", 0, 1)
    assert cohort["slots_free"] == 0


def test_to_json_is_the_same_bytes_whatever_the_insertion_order():
    one = {"projection": "cohort-occupancy", "cohorts": [{"b": 1, "a": 2}]}
    other = {"cohorts": [{"a": 2, "b": 1}], "projection": "cohort-occupancy"}

    assert to_json(one) == to_json(other)


def test_to_json_ends_with_a_newline_and_parses_back_to_the_document():
    document = occupancy(history([cohort_opened("DL1-IP", 3)]))

    data = to_json(document)

    assert data.endswith(b"\n")
    assert not data.endswith(b"\n\n")
    assert orjson.loads(data) == document


def test_replaying_the_same_events_renders_the_same_bytes():
    events = [cohort_opened("DL1-IP", 1), *enrolled_in_order("DL1-IP", ["MSK-0001"])]

    assert to_json(occupancy(history(events))) == to_json(occupancy(history(events)))


# ---------------------------------------------------------------- slots released, added, closed


def counts(document: dict, cohort_id: str = "DL1-IP") -> tuple:
    c = by_id(document)[cohort_id]
    return c["status"], c["slots_planned"], c["slots_taken"], c["slots_free"], c["enrolled"]


def test_a_withdrawal_before_infusion_frees_the_slot():
    recorded = history(
        [
            cohort_opened("DL1-IP", 3),
            *enrolled_in_order("DL1-IP", ["MSK-0001", "MSK-0002", "MSK-0003"]),
            subject_withdrawn("MSK-0002"),
            slot_released("MSK-0002", "DL1-IP", 2),
        ]
    )

    assert counts(occupancy(recorded)) == ("open", 3, 2, 1, ["MSK-0001", "MSK-0003"])


def test_a_withdrawal_after_infusion_keeps_the_slot():
    # The service records no SlotReleased when the subject was infused.
    recorded = history(
        [
            cohort_opened("DL1-IP", 3),
            *enrolled_in_order("DL1-IP", ["MSK-0001"]),
            subject_withdrawn("MSK-0001", "disease-progression"),
        ]
    )

    assert counts(occupancy(recorded)) == ("open", 3, 1, 2, ["MSK-0001"])


def test_a_released_slot_filled_again_lists_holders_in_slot_order():
    recorded = history(
        [
            cohort_opened("DL1-IP", 3),
            *enrolled_in_order("DL1-IP", ["MSK-0001", "MSK-0002", "MSK-0003"]),
            subject_withdrawn("MSK-0002"),
            slot_released("MSK-0002", "DL1-IP", 2),
            subject_registered("MSK-0009"),
            subject_enrolled("MSK-0009", "DL1-IP", 2),
        ]
    )

    assert counts(occupancy(recorded))[-1] == ["MSK-0001", "MSK-0009", "MSK-0003"]


def test_an_expansion_adds_slots_and_reopens_a_closed_cohort():
    recorded = history(
        [
            cohort_opened("DL1-IP", 3),
            *enrolled_in_order("DL1-IP", ["MSK-0001", "MSK-0002", "MSK-0003"]),
            cohort_closed("DL1-IP"),
            cohort_expanded("DL1-IP", 3),
        ]
    )

    assert counts(occupancy(recorded))[:4] == ("open", 6, 3, 3)


def test_a_closed_cohort_has_no_free_slot():
    recorded = history(
        [cohort_opened("DL1-IP", 3), *enrolled_in_order("DL1-IP", ["MSK-0001"]), cohort_closed()]
    )

    assert counts(occupancy(recorded)) == ("closed", 3, 1, 0, ["MSK-0001"])


def test_the_waiting_list_is_one_for_the_trial_in_arrival_order():
    # Given MSK-0004 waited for DL1-IP, MSK-0005 for DL2-IP, MSK-0006 for DL1-IP
    recorded = history(
        [
            cohort_opened("DL1-IP", 1),
            cohort_opened("DL2-IP", 1, dose_level="DL2"),
            *enrolled_in_order("DL1-IP", ["MSK-0001"]),
            subject_registered("MSK-0002"),
            subject_enrolled("MSK-0002", "DL2-IP", 1),
            subject_waitlisted("MSK-0004", "DL1-IP", 1),
            subject_waitlisted("MSK-0005", "DL2-IP", 2),
            subject_waitlisted("MSK-0006", "DL1-IP", 3),
        ]
    )

    document = occupancy(recorded)

    assert [(w["position"], w["subject_id"]) for w in document["waiting_list"]] == [
        (1, "MSK-0004"),
        (2, "MSK-0005"),
        (3, "MSK-0006"),
    ]
    assert by_id(document)["DL1-IP"]["waiting_list"] == ["MSK-0004", "MSK-0006"]
    assert by_id(document)["DL2-IP"]["waiting"] == 1


def test_subjects_leave_the_waiting_list_when_enrolled_withdrawn_or_screen_failed():
    recorded = history(
        [
            cohort_opened("DL1-IP", 1),
            *enrolled_in_order("DL1-IP", ["MSK-0001"]),
            subject_waitlisted("MSK-0004", "DL1-IP", 1),
            subject_waitlisted("MSK-0005", "DL1-IP", 2),
            subject_waitlisted("MSK-0006", "DL1-IP", 3),
            subject_waitlisted("MSK-0007", "DL1-IP", 4),
            cohort_expanded("DL1-IP", 1),
            subject_enrolled("MSK-0004", "DL1-IP", 2),
            subject_withdrawn("MSK-0005"),
            subject_screen_failed("MSK-0006"),
        ]
    )

    document = occupancy(recorded)

    assert [w["subject_id"] for w in document["waiting_list"]] == ["MSK-0007"]
    assert document["waiting_list"][0]["position"] == 1
    assert counts(document)[-1] == ["MSK-0001", "MSK-0004"]
