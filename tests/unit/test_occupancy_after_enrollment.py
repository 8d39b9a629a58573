"""Cohort occupancy's screening list after enrollment (review finding 7 of issue 15).

Source: DOMAIN.md section 2 item 1 (pre-screening -> consent -> screening -> eligibility ->
enrolled into a cohort slot): an enrolled subject is past screening. The enrollment service
accepts a consent to an amended form after enrollment (a re-consent), which is no return to
screening."""

from __future__ import annotations

from datetime import timedelta

from events.enrollment import ConsentRecorded, SubjectEnrolled, SubjectRegistered, SubjectWithdrawn
from projections.base import fold

from .test_board_detail import PROJECTIONS, T0, rec


def screening(events) -> list[dict]:
    projection = PROJECTIONS["cohort-occupancy"]
    return projection.render(fold(projection, events))["screening"]


def enrolled_subject() -> list:
    return [
        rec(SubjectRegistered(subject_id="MSK-0001", site_id="MSK"), 0, "subject-MSK-0001"),
        rec(ConsentRecorded(subject_id="MSK-0001", form_version="ICF-v1", signed_at=T0), 1,
            "subject-MSK-0001"),
        rec(SubjectEnrolled(subject_id="MSK-0001", cohort_id="DL1-IP", slot=1), 2,
            "subject-MSK-0001"),
    ]


def test_a_re_consent_after_enrollment_does_not_put_the_subject_back_in_screening():
    reconsent = rec(ConsentRecorded(subject_id="MSK-0001", form_version="v2-amended",
                                    signed_at=T0 + timedelta(days=30)), 720, "subject-MSK-0001")
    assert screening([*enrolled_subject(), reconsent]) == []


def test_a_withdrawal_after_enrollment_and_a_re_consent_keep_the_subject_out_of_screening():
    later = [
        rec(SubjectWithdrawn(subject_id="MSK-0001", reason_code="consent-withdrawn"), 800,
            "subject-MSK-0001"),
        rec(ConsentRecorded(subject_id="MSK-0001", form_version="v2-amended",
                            signed_at=T0 + timedelta(days=40)), 960, "subject-MSK-0001"),
    ]
    assert screening([*enrolled_subject(), *later]) == []


def test_a_subject_who_consented_but_is_not_enrolled_stays_in_screening():
    assert screening(enrolled_subject()[:2]) == [
        {"subject_id": "MSK-0001", "status": "consented", "detail": None}
    ]
