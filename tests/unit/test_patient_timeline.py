"""Patient timeline (DESIGN.md section 5): everything that happened to one subject, in order,
with who recorded it; the order must not depend on how events of several topics interleave."""

from __future__ import annotations

import itertools
from uuid import UUID

from events.dosing import InfusionRecorded
from events.enrollment import CohortOpened, SubjectEnrolled, SubjectRegistered
from events.registry import read
from projections.base import fold, to_json
from projections.patient_timeline import make
from trial.config import load_trial

from .builders import at, sealed

PROJECTION = make(load_trial())

COORDINATOR = {"user_id": "crc-lee", "role": "site_coordinator"}


def recorded(payload, minute: int, n: int, actor=None, stream="subject-MSK-0001"):
    return read(
        sealed(
            payload,
            event_id=UUID(int=n),
            occurred_at=at(minute),
            recorded_at=at(minute + 1),
            stream_id=stream,
            **({"actor": actor} if actor else {}),
        )
    )


REGISTERED = recorded(SubjectRegistered(subject_id="MSK-0001", site_id="MSK"), 0, 1, COORDINATOR)
ENROLLED = recorded(SubjectEnrolled(subject_id="MSK-0001", cohort_id="DL1-IP", slot=1), 10, 2)
INFUSED = recorded(
    InfusionRecorded(
        subject_id="MSK-0001", lot_id="LOT-0001-A", cohort_id="DL1-IP", dose_level="DL1",
        target_cells_per_kg=1e6, weight_kg=70, cells_infused=7e7, received_cells_per_kg=1e6,
        counted_dose_level="DL1", route="intraperitoneal", infused_at=at(600),
    ),
    600, 3,
)
OTHER_SUBJECT = recorded(SubjectRegistered(subject_id="MSK-0002", site_id="MSK"), 5, 4,
                         stream="subject-MSK-0002")
COHORT = recorded(
    CohortOpened(cohort_id="DL1-IP", dose_level="DL1", dose_cells_per_kg=1e6,
                 route="intraperitoneal", capacity=3),
    0, 5, stream="cohort-DL1-IP",
)


def test_timeline_lists_a_subjects_events_in_business_time_with_who_recorded_them():
    document = PROJECTION.render(fold(PROJECTION, [REGISTERED, ENROLLED, INFUSED, COHORT]))
    [subject] = document["subjects"]
    assert subject["subject_id"] == "MSK-0001"
    assert [e["event_type"] for e in subject["entries"]] == [
        "SubjectRegistered", "SubjectEnrolled", "InfusionRecorded",
    ]
    assert subject["entries"][0]["recorded_by"] == COORDINATOR
    assert subject["entries"][2]["context"] == "dosing"
    assert "subject_id" not in subject["entries"][1]["details"]


def test_events_without_a_subject_are_not_on_any_timeline():
    assert fold(PROJECTION, [COHORT]) == {}


def test_timeline_is_the_same_whatever_order_the_topics_interleave_in():
    events = [REGISTERED, ENROLLED, INFUSED, OTHER_SUBJECT]
    documents = {
        to_json(PROJECTION.render(fold(PROJECTION, list(order))))
        for order in itertools.permutations(events)
    }
    assert len(documents) == 1
