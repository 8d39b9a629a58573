"""The clinical detail the operations board shows (issue 15): the AE list with its DLT and report
status, timeline rows with their values, the subjects in screening, the lots' OOS and
exceptional-release status and a failed lot's chain of identity, and the target DLT rate only
for a design that has one.

Sources: DOMAIN.md section 1 (MSLN IHC >= 25% of tumour cells), section 2 item 3 (an OOS lot is
infused only on an exceptional release; a failed lot leads to re-collection or withdrawal),
section 3 (a grade >= 3 CRS may be a DLT and waits for the investigator's adjudication; 21 CFR
312.32(c) deadlines: 7 calendar days from the sponsor's receipt, 8 more for the complete report,
15 from the determination), section 4 (3+3 counts DLTs out of 3 or 6; BOIN aims at a target
rate phi, 0.30 here). The dates of the fatal case are the ones test_safety_board.py computes by
hand from 21 CFR 312.32(c) in the sponsor's calendar.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

from events.dosing import InfusionRecorded
from events.enrollment import (
    ConsentRecorded,
    CriterionResult,
    EligibilityAssessed,
    PrescreeningRecorded,
    SubjectEnrolled,
    SubjectRegistered,
    SubjectScreenFailed,
    SubjectWaitlisted,
    SubjectWithdrawn,
)
from events.manufacturing import (
    ApheresisCollected,
    ExceptionalReleaseApproved,
    LotHarvested,
    LotOutOfSpecification,
    ManufacturingFailed,
    ManufacturingStarted,
    QcResultRecorded,
)
from events.registry import read
from events.safety import CrsFindings, CrsGraded
from projections.base import fold, keys
from projections.catalog import build
from projections.escalation.engine import target_rate
from projections.paging import page_document
from projections.timeline_values import summary as line_of
from services.decider import NewEvent
from services.enrollment.eligibility import msln_ihc
from trial.config import EscalationDesign

from .builders import history, sealed
from .test_safety_givens import (
    AE,
    SUBJECT,
    TRIAL,
    adjudicate,
    day,
    determine,
    enrolled,
    given,
    grade_crs,
    infused,
    registered,
    regrade,
    report,
    run,
)

PROJECTIONS = build(TRIAL)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def rec(payload, hours: float = 0, stream: str = "s"):
    n = next(_ids)
    at = T0 + timedelta(hours=hours)
    return read(sealed(payload, event_id=UUID(int=n), occurred_at=at, recorded_at=at,
                       stream_id=stream, trial_id=TRIAL.trial_id))


# ------------------------------------------------------------------------------ the AE list


def safety_board(new_events: list[NewEvent], as_of: datetime) -> dict:
    board = PROJECTIONS["safety"]
    return board.document(fold(board, history(new_events)), as_of)


def infusion_event() -> NewEvent:
    payload: InfusionRecorded = infused()
    return NewEvent(f"infusion-{SUBJECT}", payload, payload.infused_at)


def ae_row(doc: dict) -> dict:
    [row] = [a for a in doc["adverse_events"]["list"] if a["ae_id"] == AE]
    return row


def fatal_case():
    """Grade 3 CRS reported on day 1, death due to CRS on day 2, determination on day 3."""
    state = given(registered(), enrolled(), infused())
    events, state = run(
        state,
        report(grade=3, serious_criteria=(), expected=False, attribution="probable"),
        grade_crs(day(2), death=True),
        determine(day(3)),
    )
    return [infusion_event(), *events], state


def test_an_ae_row_shows_each_expedited_report_with_its_due_date_and_status():
    events, _ = fatal_case()
    due = [("7-day", "2026-03-10"), ("7-day-complete", "2026-03-18"), ("15-day", "2026-03-20")]

    before = ae_row(safety_board(events, day(5)))
    after = ae_row(safety_board(events, day(20)))

    assert [(r["report"], r["due_on"], r["status"]) for r in before["reports"]] == [
        (name, on, "due") for name, on in due
    ]
    assert [(r["report"], r["due_on"], r["status"]) for r in after["reports"]] == [
        (name, on, "overdue") for name, on in due
    ]
    assert (after["term"], after["grade"], after["attribution"]) == (
        "Cytokine release syndrome", 5, "probable",
    )
    assert "death" in after["serious_criteria"]


def test_a_grade_3_crs_waits_for_its_adjudication_then_shows_the_verdict():
    state = given(registered(), enrolled(), infused())
    reported, state = run(state, report(grade=3, attribution="probable"))
    # grade 3 since day 1, not improved to <= 2 within 72 hours: the rule can say DLT on day 5
    adjudicated, state = run(state, adjudicate(day(5), verdict="dlt"))
    regraded, state = run(state, regrade(day(6), grade=4))
    base = [infusion_event(), *reported]

    # DOMAIN.md section 3: grade 3 CRS is a DLT when not improved to <= 2 within 72 hours, so
    # until 72 h after its onset (day 1) the rule has no verdict and nobody can adjudicate it
    waiting = ae_row(safety_board(base, day(2)))
    assert (waiting["dlt_status"], waiting["dlt_rule_verdict_after"]) == (
        "awaiting-rule", (day(1) + timedelta(hours=72)).isoformat()
    )
    assert ae_row(safety_board(base, day(4, hours=1)))["dlt_status"] == "adjudication-due"
    assert ae_row(safety_board([*base, *adjudicated], day(5)))["dlt_status"] == "dlt"
    # new information after the adjudication: it must be adjudicated again
    assert (
        ae_row(safety_board([*base, *adjudicated, *regraded], day(7)))["dlt_status"]
        == "re-adjudication-due"
    )


def test_a_grade_2_ae_is_no_dlt_candidate():
    state = given(registered(), enrolled(), infused())
    reported, _ = run(state, report(grade=2, attribution="probable"))

    assert ae_row(safety_board([infusion_event(), *reported], day(2)))["dlt_status"] is None


def test_an_ae_row_on_a_page_is_the_row_of_the_whole_document():
    events, _ = fatal_case()
    board = PROJECTIONS["safety"]
    states = fold(board, history(events))

    page = page_document(board, states.keys(), states.get, lambda: states, None, 10, day(20))

    assert page["adverse_events"]["list"] == board.document(states, day(20))[
        "adverse_events"
    ]["list"]


# ------------------------------------------------------------------------ timeline values


def summary(event, trial=TRIAL, lot_targets=None):
    """The row's line as the trial file's timeline writes it."""
    return line_of(event, trial, lot_targets)


# QC verdicts: DOMAIN.md section 2 item 4 and the trial file's release specification:
# viability >= 70%, vector copy number < 5 copies per transduced cell, sterility negative
# ("negative to date" allows a conditional release: pending), cell dose within 20% of the
# target fixed when manufacturing started.


def qc(test: str, value: float | None = None, outcome: str | None = None) -> QcResultRecorded:
    return QcResultRecorded(lot_id="LOT-0001-A", subject_id="MSK-0001", test=test,  # type: ignore[arg-type]
                            value=value, outcome=outcome)  # type: ignore[arg-type]


def test_a_qc_row_says_the_test_its_value_and_its_verdict_against_the_release_specification():
    assert summary(qc("viability", 82.5)) == "viability 82.5: pass (viability 82.5% >= 70%)"
    # a value at the minimum passes
    assert summary(qc("viability", 70)) == "viability 70: pass (viability 70% >= 70%)"
    assert summary(qc("viability", 65)) == "viability 65: fail (viability 65% < 70%)"
    assert summary(qc("vector_copy_number", 5)).startswith("vector_copy_number 5: fail")
    assert summary(qc("vector_copy_number", 4.9)).startswith("vector_copy_number 4.9: pass")
    assert summary(qc("sterility", outcome="negative-to-date")) == (
        "sterility negative-to-date: pending (sterility negative to date)"
    )


def test_the_qc_verdict_follows_the_trial_files_release_minimum_not_a_fixed_one():
    stricter = TRIAL.model_copy(update={"release": TRIAL.release.model_copy(
        update={"viability_min_percent": 80})})

    assert summary(qc("viability", 75), stricter) == "viability 75: fail (viability 75% < 80%)"


def test_a_cell_dose_row_is_judged_against_its_lots_target_in_the_timeline():
    # target 7e7 CAR T cells, tolerance 20%: 5e7 is 28.6% short, 6e7 14.3% short
    timeline = PROJECTIONS["patient-timeline"]
    started = ManufacturingStarted(lot_id="LOT-0001-A", subject_id="MSK-0001",
                                   target_car_t_cells=7e7, target_basis="cohort-dose-x-weight")

    doc = timeline.render(fold(timeline, [
        rec(started, 0), rec(qc("cell_dose", 5e7), 1), rec(qc("cell_dose", 6e7), 2)]))

    lines = [entry["summary"] for entry in doc["subjects"][0]["entries"]]
    assert lines[1].startswith("cell_dose 5e+07: fail (cell dose 5e+07 CAR T cells is -28.6% "
                               "of the target 7e+07")
    assert lines[2].startswith("cell_dose 6e+07: pass")
    assert "lot_targets" not in doc["subjects"][0]  # kept for the lines, not shown
    assert summary(qc("cell_dose", 5e7)) == (
        "cell_dose 5e+07: no target recorded for LOT-0001-A to judge it against"
    )


def test_a_consent_signed_on_a_new_york_evening_shows_that_day_not_the_utc_one():
    # the trial counts calendar days in the sponsor's zone, New York (EST, UTC-5, in early
    # March 2026): 02:30 UTC on 3 March is 21:30 on 2 March there; 09:00 +09:00 on 3 March is
    # 19:00 on 2 March
    evening_utc = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)
    written_in_tokyo = datetime(2026, 3, 3, 9, 0, tzinfo=timezone(timedelta(hours=9)))

    for signed_at in (evening_utc, written_in_tokyo):
        line = summary(ConsentRecorded(subject_id="MSK-0002", form_version="ICF-v1",
                                       signed_at=signed_at))
        assert line == "consent form ICF-v1 signed 2026-03-02", signed_at


def test_an_msln_result_below_25_percent_makes_the_assessment_not_eligible():
    # the trial file keeps the abstract's threshold: MSLN-positive in at least 25% of cells
    below = msln_ihc(20, TRIAL.eligibility)
    at_threshold = msln_ihc(25, TRIAL.eligibility)
    ecog = CriterionResult(criterion="ecog", met=True, requirement="ECOG <= 1", evidence="ECOG 0")

    failed = summary(EligibilityAssessed(subject_id="MSK-0001", criteria=(below, ecog)))
    passed = summary(EligibilityAssessed(subject_id="MSK-0001", criteria=(at_threshold, ecog)))

    assert failed is not None and failed.startswith("not eligible")
    assert "msln-ihc" in failed and "1 of 2" in failed
    assert passed == "eligible: 2 of 2 criteria met"


def test_an_infusion_row_says_the_dose_level_the_cells_and_the_dose_per_kg():
    # 7e7 cells into a 70 kg patient is 1e6 cells/kg
    line = summary(infused())

    assert line is not None
    assert line.startswith("DL1: 7.00e+07 CAR T cells")
    assert "1.00e+06/kg received" in line and "70 kg" in line


def test_a_crs_row_says_its_astct_grade():
    findings = CrsFindings(temperature_c=39.0, fever_masked=False, hypotension="one-vasopressor",
                           hypoxia="none", death=False)
    graded = CrsGraded(ae_id=AE, subject_id=SUBJECT, observed_at=day(1), observation=findings,
                       grade=3, determined_by=("hypotension",))

    assert summary(graded) == f"CRS ASTCT grade 3 ({AE})"


def test_the_timeline_entry_carries_the_line():
    timeline = PROJECTIONS["patient-timeline"]
    qc = QcResultRecorded(lot_id="LOT-0001-A", subject_id="MSK-0001", test="viability",
                          value=82.5, outcome=None)

    doc = timeline.render(fold(timeline, [rec(qc)]))

    assert doc["subjects"][0]["entries"][0]["summary"] == (
        "viability 82.5: pass (viability 82.5% >= 70%)"
    )


# ------------------------------------------------------------------- subjects in screening


def occupancy(recorded) -> dict:
    projection = PROJECTIONS["cohort-occupancy"]
    return projection.render(fold(projection, recorded))


def test_subjects_not_enrolled_show_where_they_stand_in_screening():
    s = "subject-"
    events = [
        rec(SubjectRegistered(subject_id="MSK-0001", site_id="MSK"), 0, s + "1"),
        rec(PrescreeningRecorded(subject_id="MSK-0001", msln_ihc_percent=60), 1, s + "1"),
        rec(SubjectRegistered(subject_id="MSK-0002", site_id="MSK"), 0, s + "2"),
        rec(ConsentRecorded(subject_id="MSK-0002", form_version="ICF-v1", signed_at=T0), 1,
            s + "2"),
        rec(EligibilityAssessed(subject_id="MSK-0002", criteria=(
            msln_ihc(20, TRIAL.eligibility),)), 2, s + "2"),
        rec(SubjectScreenFailed(subject_id="MSK-0002", stage="screening",
                                reason_code="criteria-not-met",
                                failed_criteria=(msln_ihc(20, TRIAL.eligibility),)), 2, s + "2"),
        rec(SubjectRegistered(subject_id="MSK-0003", site_id="MSK"), 0, s + "3"),
        rec(SubjectWaitlisted(subject_id="MSK-0003", cohort_id="DL1-IP", position=1), 3, s + "3"),
        rec(SubjectRegistered(subject_id="MSK-0004", site_id="MSK"), 0, s + "4"),
        rec(SubjectEnrolled(subject_id="MSK-0004", cohort_id="DL1-IP", slot=1), 3, s + "4"),
        rec(SubjectWithdrawn(subject_id="MSK-0004", reason_code="consent-withdrawn"), 4, s + "4"),
    ]

    screening = occupancy(events)["screening"]

    assert screening == [
        {"subject_id": "MSK-0001", "status": "prescreened", "detail": "MSLN IHC 60%"},
        {"subject_id": "MSK-0002", "status": "screen-failed",
         "detail": "criteria-not-met at screening: msln-ihc"},
        {"subject_id": "MSK-0003", "status": "waitlisted", "detail": "for DL1-IP"},
    ]


def test_an_eligible_subject_is_in_screening_until_enrolled():
    ecog = CriterionResult(criterion="ecog", met=True, requirement="ECOG <= 1", evidence="ECOG 0")
    assessed = [
        rec(SubjectRegistered(subject_id="MSK-0005", site_id="MSK"), 0, "subject-5"),
        rec(EligibilityAssessed(subject_id="MSK-0005", criteria=(
            msln_ihc(25, TRIAL.eligibility), ecog)), 1, "subject-5"),
    ]
    enrolled_now = rec(SubjectEnrolled(subject_id="MSK-0005", cohort_id="DL1-IP", slot=1), 2,
                       "subject-5")

    assert occupancy(assessed)["screening"] == [
        {"subject_id": "MSK-0005", "status": "eligible", "detail": None}
    ]
    assert occupancy([*assessed, enrolled_now])["screening"] == []
    assert "screening:MSK-0005" in keys(PROJECTIONS["cohort-occupancy"], enrolled_now)


# ------------------------------------------------------------------------------------ lots


def lot_row(*payloads) -> dict:
    pipeline = PROJECTIONS["manufacturing-pipeline"]
    [row] = pipeline.render(fold(pipeline, [rec(p, i, "lot") for i, p in enumerate(payloads)]))[
        "lots"
    ]
    return row


LOT, COI, DIN = "LOT-0001-A", "W123425000007S", "A9999251234569"
COLLECTED = ApheresisCollected(lot_id=LOT, subject_id="MSK-0001", coi_id=COI, din=DIN,
                               collection_site="MSK", volume_ml=200, total_nucleated_cells=1e10,
                               cd3_cells=5e9, weight_kg=70)


def test_a_failed_lots_chain_of_identity_is_ended_not_in_progress():
    row = lot_row(COLLECTED, ManufacturingFailed(lot_id=LOT, subject_id="MSK-0001",
                                                 reason_code="insufficient-expansion"))

    assert row["stage"] == "failed"
    assert row["chain_of_identity"]["status"] == "ended: manufacturing failed"
    assert lot_row(COLLECTED)["chain_of_identity"]["status"] == "in progress"


def test_an_oos_lot_shows_its_failed_tests_and_its_exceptional_release():
    qc = QcResultRecorded(lot_id=LOT, subject_id="MSK-0001", test="viability", value=55,
                          outcome=None)
    oos = LotOutOfSpecification(lot_id=LOT, subject_id="MSK-0001", failed_tests=("viability",),
                                after_release=False)
    released = ExceptionalReleaseApproved(lot_id=LOT, subject_id="MSK-0001",
                                          investigator_id="dr-a", sponsor_id="sp-b")

    harvested = LotHarvested(lot_id=LOT, subject_id="MSK-0001", total_viable_cells=1e9)
    before = lot_row(COLLECTED, harvested, qc, oos)
    after = lot_row(COLLECTED, harvested, qc, oos, released)

    assert (before["stage"], before["out_of_specification"]) == (
        "out-of-specification", ["viability"],
    )
    assert before["exceptional_release"] is False
    assert after["exceptional_release"] is True


# ------------------------------------------------------------------ the target DLT rate


def test_only_boin_has_a_target_dlt_rate():
    three_plus_three = EscalationDesign(design="3+3", target_dlt_rate=0.30, min_patients=4,
                                        max_patients=18, start_level="DL1")
    boin = EscalationDesign(design="boin", target_dlt_rate=0.30, min_patients=4,
                            max_patients=18, start_level="DL1")

    assert target_rate(three_plus_three) is None
    assert target_rate(boin) == 0.30


def test_the_trials_3_plus_3_escalation_document_draws_no_target():
    escalation = PROJECTIONS["dose-escalation"]
    assert TRIAL.escalation.design == "3+3"

    assert escalation.render({})["design"]["target_dlt_rate"] is None
