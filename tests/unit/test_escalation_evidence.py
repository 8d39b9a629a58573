"""What a dose-escalation recommendation is made from, driven through recorded events.

Sources:
- Accelerated titration: single-patient cohorts at the trial's accelerated levels until the
  first toxicity of grade >= 2 (the trial's ``accelerated_titration_stop_grade``, default 2)
  at least possibly related (the DLT rule's ``min_attribution``), with onset in the 28-day DLT
  window; then cohorts of 3 by the trial's design for the rest of the trial (DOMAIN.md
  sections 3-4; Simon et al., J Natl Cancer Inst 1997;89:1138-1147).
- The dose received: a patient counts at the infusion's ``counted_dose_level`` when it recorded
  one, at no level when it is null, else at the cohort's level (issue 11 item 2).
- The minimum sample: "a minimum of 4 and a maximum of 18 treated patients" (DOMAIN.md section
  1); 3+3 rules (DOMAIN.md section 4).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from uuid import UUID

from events.dosing import InfusionRecorded
from events.enrollment import CohortOpened
from events.registry import Recorded, read
from events.safety import (
    AdverseEventRegraded,
    AdverseEventReported,
    Assessment,
    CrsFindings,
    CrsGraded,
    DltEvaluationCompleted,
)
from projections import dose_escalation
from projections.base import fold
from projections.escalation.engine import LevelOutcomes, recommend
from trial.config import EscalationDesign, load_trial

from .builders import sealed

TRIAL = load_trial()
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEVELS = ["DL-1", "DL1", "DL2", "DL3", "DL4"]
_ids = itertools.count(1)


def titrating(levels=("DL-1", "DL1", "DL2")):
    """The trial file's 3+3 trial, starting at DL-1 with accelerated titration at ``levels``."""
    escalation = TRIAL.escalation.model_copy(
        update={"start_level": "DL-1", "accelerated_titration_levels": levels}
    )
    return TRIAL.model_copy(update={"escalation": escalation})


def rec(payload, day: float, **extra_payload) -> Recorded:
    at = T0 + timedelta(days=day)
    envelope = sealed(payload, event_id=UUID(int=next(_ids)), occurred_at=at, recorded_at=at,
                      stream_id="s", trial_id=TRIAL.trial_id)
    if not extra_payload:
        return read(envelope)
    # A field the dosing context writes and this test does not wait for.
    written = envelope.model_copy(update={"payload": {**envelope.payload, **extra_payload}})
    return Recorded(written, payload)


def opened(level: str, day: float):
    cells = TRIAL.dose_level(level).cells_per_kg
    return rec(CohortOpened(cohort_id=f"{level}-IP", dose_level=level, dose_cells_per_kg=cells,
                            route="intraperitoneal", capacity=3, recommendation_id="REC-1"), day)


def infused(subject: str, level: str, day: float, **counted):
    """``counted`` is ``counted_dose_level=...`` for an infusion that recorded it: a field of the
    model once the dosing context has it, written into the payload until then."""
    cells = TRIAL.dose_level(level).cells_per_kg
    in_model = "counted_dose_level" in InfusionRecorded.model_fields
    payload = InfusionRecorded(
        subject_id=subject, lot_id=f"LOT-{subject[-4:]}-A", cohort_id=f"{level}-IP",
        dose_level=level, target_cells_per_kg=cells, weight_kg=70, cells_infused=70 * cells,
        route="intraperitoneal", infused_at=T0 + timedelta(days=day),
        **(counted if in_model else {}))
    return rec(payload, day, **({} if in_model else counted))


def evaluated(subject: str, level: str, day: float, dlt: bool = False):
    return rec(DltEvaluationCompleted(
        subject_id=subject, cohort_id=f"{level}-IP", dose_level=level,
        evaluated_at=T0 + timedelta(days=day), window_days=28, dlt=dlt,
        dlt_ae_ids=(f"AE-{subject[-4:]}-01",) if dlt else ()), day)


def adverse_event(subject: str, day: float, grade: int, attribution="possible",
                  term="Nausea", n=1):
    onset = T0 + timedelta(days=day)
    return rec(AdverseEventReported(
        ae_id=f"AE-{subject[-4:]}-{n:02d}", subject_id=subject, term=term, grade=grade,
        ctcae_version="5.0", onset_at=onset, serious_criteria=(), attribution=attribution,
        expected=True, sponsor_received_at=onset, special_interest=None, haematological=False,
        conditioning_lab_effect=False), day)


def treated_without_dlt(subject: str, level: str, day: float):
    return [infused(subject, level, day), evaluated(subject, level, day + 29)]


def document(trial, events):
    p = dose_escalation.make(trial)
    return p.render(fold(p, events))


def last(trial, events):
    return document(trial, events)["recommendation"]


# ---------------------------------------------------------------- accelerated titration


def test_one_patient_without_toxicity_escalates_an_accelerated_level():
    rec_ = last(titrating(), treated_without_dlt("MSK-0001", "DL-1", 0))
    assert (rec_["decision"], rec_["next_level"]) == ("escalate", "DL1")
    assert rec_["rule"].startswith("accelerated titration")


def test_a_possibly_related_grade_2_toxicity_in_the_window_ends_accelerated_titration():
    events = [infused("MSK-0001", "DL-1", 0), adverse_event("MSK-0001", 5, grade=2),
              evaluated("MSK-0001", "DL-1", 29)]
    rec_ = last(titrating(), events)
    assert (rec_["decision"], rec_["next_level"]) == ("stay", "DL-1")
    assert "accelerated titration ended at a grade >= 2 toxicity (at DL-1)" in rec_["rule"]
    # the toxicity's report is part of the evidence the recommendation was made from
    assert str(events[1].envelope.event_id) in rec_["evidence"]


def test_a_grade_2_toxicity_unlikely_related_does_not_end_accelerated_titration():
    events = [infused("MSK-0001", "DL-1", 0),
              adverse_event("MSK-0001", 5, grade=2, attribution="unlikely"),
              evaluated("MSK-0001", "DL-1", 29)]
    assert last(titrating(), events)["decision"] == "escalate"


def test_a_grade_1_toxicity_does_not_end_accelerated_titration():
    events = [infused("MSK-0001", "DL-1", 0), adverse_event("MSK-0001", 5, grade=1),
              evaluated("MSK-0001", "DL-1", 29)]
    assert last(titrating(), events)["decision"] == "escalate"


def test_a_grade_2_toxicity_with_onset_after_the_28_day_window_does_not_count():
    events = [infused("MSK-0001", "DL-1", 0), adverse_event("MSK-0001", 29.5, grade=2),
              evaluated("MSK-0001", "DL-1", 30)]
    assert last(titrating(), events)["decision"] == "escalate"


def test_crs_observed_at_grade_2_after_a_grade_1_report_ends_accelerated_titration():
    subject = "MSK-0001"
    report = adverse_event(subject, 2, grade=1, term="Cytokine release syndrome")
    observation = CrsFindings(temperature_c=39.2, fever_masked=False, hypotension="no-vasopressor",
                              hypoxia="none", death=False)
    crs = rec(CrsGraded(ae_id=f"AE-{subject[-4:]}-01", subject_id=subject,
                        observed_at=T0 + timedelta(days=3), observation=observation, grade=2,
                        determined_by=("hypotension",)), 3)
    events = [infused(subject, "DL-1", 0), report, crs, evaluated(subject, "DL-1", 29)]
    assert last(titrating(), events)["decision"] == "stay"
    assert last(titrating(), [*events[:2], events[3]])["decision"] == "escalate"


def test_a_grade_2_report_corrected_to_grade_1_does_not_end_accelerated_titration():
    subject = "MSK-0001"
    report = adverse_event(subject, 5, grade=2)
    before = Assessment(grade=2, serious_criteria=(), attribution="possible", expected=True)
    after = Assessment(grade=1, serious_criteria=(), attribution="possible", expected=True)
    corrected = rec(AdverseEventRegraded(ae_id=f"AE-{subject[-4:]}-01", subject_id=subject,
                                         effective_at=T0 + timedelta(days=5), previous=before,
                                         new=after), 6)
    events = [infused(subject, "DL-1", 0), report, corrected, evaluated(subject, "DL-1", 29)]
    assert last(titrating(), events)["decision"] == "escalate"


def test_a_toxicity_reported_after_the_evaluation_is_not_in_that_recommendation():
    # onset on day 27, inside the window, but recorded on day 31, after the day-29 evaluation:
    # the recommendation made on day 29 could not have known it
    late = rec(adverse_event("MSK-0001", 27, grade=2).payload, 31)
    events = [infused("MSK-0001", "DL-1", 0), evaluated("MSK-0001", "DL-1", 29), late]
    assert document(titrating(), events)["recommendation"]["decision"] == "escalate"


def test_accelerated_titration_once_ended_stays_ended_at_the_levels_above():
    events = [
        infused("MSK-0001", "DL-1", 0), adverse_event("MSK-0001", 5, grade=2),
        evaluated("MSK-0001", "DL-1", 29),
        *treated_without_dlt("MSK-0002", "DL-1", 30), *treated_without_dlt("MSK-0003", "DL-1", 31),
        opened("DL1", 61),  # 0 of 3 at DL-1: the 3+3 escalates
        *treated_without_dlt("MSK-0004", "DL1", 62),
    ]
    rec_ = last(titrating(), events)
    # DL1 is an accelerated level, but one patient no longer moves the trial up
    assert (rec_["current_level"], rec_["decision"], rec_["next_level"]) == ("DL1", "stay", "DL1")


def test_the_document_shows_the_titration_and_minimum_it_applies():
    design = document(titrating(), [])["design"]
    assert design["accelerated_titration_levels"] == ["DL-1", "DL1", "DL2"]
    assert (design["accelerated_titration_stop_grade"], design["min_patients"]) == (2, 4)


def test_without_accelerated_levels_a_grade_2_toxicity_changes_nothing():
    events = [infused("MSK-0001", "DL1", 0), adverse_event("MSK-0001", 5, grade=2),
              evaluated("MSK-0001", "DL1", 29)]
    rec_ = last(TRIAL, events)
    assert rec_["rule"] == "3+3: 1 of 3 patients evaluable: complete the cohort"
    assert len(rec_["evidence"]) == 1


# ---------------------------------------------------------------- the dose received


def test_a_patient_counts_at_the_counted_dose_level_the_infusion_recorded():
    events = [
        opened("DL1", 0),
        *treated_without_dlt("MSK-0001", "DL1", 1), *treated_without_dlt("MSK-0002", "DL1", 2),
        infused("MSK-0003", "DL1", 3, counted_dose_level="DL-1"),
        evaluated("MSK-0003", "DL1", 32, dlt=True),
    ]
    doc = document(TRIAL, events)
    assert doc["recommendation"]["counts"] == {
        "DL-1": {"evaluable": 1, "dlts": 1}, "DL1": {"evaluable": 2, "dlts": 0},
    }
    treated = {lvl["dose_level"]: lvl["treated"] for lvl in doc["levels"]}
    assert (treated["DL-1"], treated["DL1"]) == (1, 2)


def test_a_null_counted_dose_level_counts_the_patient_at_no_level_and_says_so():
    events = [
        opened("DL1", 0),
        *treated_without_dlt("MSK-0001", "DL1", 1),
        infused("MSK-0002", "DL1", 2, counted_dose_level=None),
        evaluated("MSK-0002", "DL1", 31, dlt=True),
    ]
    rec_ = last(TRIAL, events)
    assert rec_["counts"] == {"DL1": {"evaluable": 1, "dlts": 0}}
    [note] = rec_["not_counted"]
    assert note.startswith("MSK-0002 ") and "counts at no dose level" in note
    assert "counted_dose_level null" in note


def test_without_the_field_a_patient_counts_at_the_cohorts_level():
    events = [opened("DL1", 0), infused("MSK-0001", "DL1", 1),
              evaluated("MSK-0001", "DL1", 30, dlt=True)]
    rec_ = last(TRIAL, events)
    assert rec_["counts"] == {"DL1": {"evaluable": 1, "dlts": 1}}
    assert rec_["not_counted"] == []


# ---------------------------------------------------------------- minimum patients

THREE_PLUS_THREE_MIN_8 = EscalationDesign(
    design="3+3", cohort_size=3, min_patients=8, max_patients=18, start_level="DL1"
)


def test_no_mtd_is_declared_before_the_minimum_of_treated_evaluable_patients():
    # 3+3 would end with DL4 as MTD after 1 of 6 at the highest dose; 6 < 8: continue at DL4
    rec_ = recommend(THREE_PLUS_THREE_MIN_8, LEVELS, {"DL4": LevelOutcomes(6, 1)}, "DL4")
    assert (rec_.decision, rec_.next_level, rec_.mtd_level) == ("stay", "DL4", None)
    assert rec_.rule.startswith("minimum of 8 treated and evaluable patients not reached (6)")


def test_the_mtd_is_declared_once_the_minimum_is_reached():
    data = {"DL3": LevelOutcomes(3, 0), "DL4": LevelOutcomes(6, 1)}
    rec_ = recommend(THREE_PLUS_THREE_MIN_8, LEVELS, data, "DL4")
    assert (rec_.decision, rec_.mtd_level) == ("stop", "DL4")


def test_the_minimum_never_holds_back_a_stop_for_toxicity_at_the_lowest_dose():
    rec_ = recommend(THREE_PLUS_THREE_MIN_8, LEVELS, {"DL-1": LevelOutcomes(3, 2)}, "DL-1")
    assert (rec_.decision, rec_.mtd_level) == ("stop", None)
