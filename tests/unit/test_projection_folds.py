"""The dose-escalation, manufacturing-pipeline and safety projections as pure folds.

Sources: 3+3 rules (DOMAIN.md section 4); DLT evaluability (DOMAIN.md section 3); expedited
reporting deadlines (21 CFR 312.32(c): 7 calendar days from the sponsor's receipt for an
unexpected fatal or life-threatening suspected adverse reaction, plus 8 for the complete report).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from uuid import UUID

from events.dosing import BedsideCoiVerified, InfusionRecorded
from events.enrollment import CohortOpened
from events.manufacturing import (
    ApheresisCollected,
    LotReleased,
    LotThawed,
    QcResultRecorded,
)
from events.registry import read
from events.safety import AdverseEventReported, DltEvaluationCompleted, ExpeditedReportSubmitted
from projections.base import fold, to_json
from projections.catalog import build
from trial.config import load_trial

from .builders import sealed

TRIAL = load_trial()
PROJECTIONS = build(TRIAL)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def rec(payload, day: float, actor=None, stream="s"):
    n = next(_ids)
    at = T0 + timedelta(days=day)
    return read(sealed(payload, event_id=UUID(int=n), occurred_at=at, recorded_at=at,
                       stream_id=stream, trial_id=TRIAL.trial_id,
                       **({"actor": actor} if actor else {})))


def opened(level: str, day: float, recommendation_id=None):
    cells = TRIAL.dose_level(level).cells_per_kg
    return rec(CohortOpened(cohort_id=f"{level}-IP", dose_level=level, dose_cells_per_kg=cells,
                            route="intraperitoneal", capacity=3,
                            recommendation_id=recommendation_id), day)


def infused(subject: str, level: str, day: float):
    return rec(InfusionRecorded(
        subject_id=subject, lot_id=f"LOT-{subject[-4:]}-A", cohort_id=f"{level}-IP",
        dose_level=level, target_cells_per_kg=TRIAL.dose_level(level).cells_per_kg,
        weight_kg=70, cells_infused=70 * TRIAL.dose_level(level).cells_per_kg,
        received_cells_per_kg=TRIAL.dose_level(level).cells_per_kg, counted_dose_level=level,
        route="intraperitoneal", infused_at=T0 + timedelta(days=day)), day)


def evaluated(subject: str, level: str, day: float, dlt: bool):
    return rec(DltEvaluationCompleted(
        subject_id=subject, cohort_id=f"{level}-IP", dose_level=level,
        evaluated_at=T0 + timedelta(days=day), window_days=28, dlt=dlt,
        dlt_ae_ids=(f"AE-{subject[-4:]}-01",) if dlt else ()), day)


def cohort(level: str, first: int, day: float, dlts: int):
    """Three subjects treated at ``level`` from ``day``, the first ``dlts`` of them with a DLT."""
    events = []
    for i in range(3):
        subject = f"MSK-{first + i:04d}"
        events += [infused(subject, level, day + i), evaluated(subject, level, day + 30, i < dlts)]
    return events


def escalation(events):
    p = PROJECTIONS["dose-escalation"]
    return p.render(fold(p, events))


def test_3_plus_3_sequence_escalates_stays_and_de_escalates_with_its_evidence():
    events = [
        opened("DL1", 0), *cohort("DL1", 1, 1, dlts=0),       # 0/3 -> escalate to DL2
        opened("DL2", 40), *cohort("DL2", 4, 41, dlts=1),     # 1/3 -> stay (expand)
        *cohort("DL2", 7, 80, dlts=1),                        # 2/6 -> de-escalate
    ]
    doc = escalation(events)
    decisions = [(h["current_level"], h["decision"], h["next_level"])
                 for h in doc["recommendations"]]
    # one recommendation per evaluation; the ones after each complete cohort:
    assert decisions[2] == ("DL1", "escalate", "DL2")
    assert decisions[5] == ("DL2", "stay", "DL2")
    assert decisions[8] == ("DL2", "de-escalate", "DL1")
    assert doc["recommendation"]["counts"] == {
        "DL1": {"evaluable": 3, "dlts": 0}, "DL2": {"evaluable": 6, "dlts": 2},
    }
    assert len(doc["recommendation"]["evidence"]) == 9
    dl2 = next(lvl for lvl in doc["levels"] if lvl["dose_level"] == "DL2")
    assert (dl2["treated"], dl2["evaluable"], dl2["dlts"]) == (6, 6, 2)


def test_a_review_decision_shows_whether_it_followed_a_recommendation():
    first = [opened("DL1", 0), *cohort("DL1", 1, 1, dlts=0)]
    rec_id = escalation(first)["recommendation"]["recommendation_id"]
    doc = escalation([*first, opened("DL2", 40, recommendation_id=rec_id)])
    assert doc["decisions"][-1]["followed"] == rec_id
    assert doc["current_level"] == "DL2"


def test_the_escalation_document_does_not_depend_on_arrival_order():
    events = [opened("DL1", 0), *cohort("DL1", 1, 1, dlts=1)]
    docs = {to_json(escalation(list(order))) for order in itertools.permutations(events[:4])}
    assert len(docs) == 1


def test_manufacturing_pipeline_follows_a_lot_to_infusion_with_vein_to_vein_time():
    lot, subject = "LOT-0001-A", "MSK-0001"
    events = [
        rec(ApheresisCollected(lot_id=lot, subject_id=subject, coi_id="W123425000007S",
                               din="A9999251234569", collection_site="MSK", volume_ml=200,
                               total_nucleated_cells=1e10, cd3_cells=5e9, weight_kg=70), 0),
        rec(QcResultRecorded(lot_id=lot, subject_id=subject, test="viability", value=85,
                             outcome=None), 20),
        rec(LotReleased(lot_id=lot, subject_id=subject, coi_id="W123425000007S",
                        total_car_t_cells=7e7, conditional=True), 25),
        rec(LotThawed(lot_id=lot, subject_id=subject), 34.9),
        rec(BedsideCoiVerified(subject_id=subject, lot_id=lot, coi_id="W123425000007S",
                               verified_by="dr-a", verified_at=T0 + timedelta(days=35)), 35),
        rec(BedsideCoiVerified(subject_id=subject, lot_id=lot, coi_id="W123425000007S",
                               verified_by="crc-b", verified_at=T0 + timedelta(days=35)), 35),
        infused(subject, "DL1", 35.5),
    ]
    p = PROJECTIONS["manufacturing-pipeline"]
    doc = p.render(fold(p, events))
    [row] = doc["lots"]
    assert row["stage"] == "infused"
    assert row["conditional_release"] is True
    assert row["chain_of_identity"]["bedside_verifiers"] == 2
    assert row["vein_to_vein_days"] == 35.5
    assert row["chain_of_identity"]["status"] == "complete"


def ae(ae_id: str, day: float, **fields):
    values = dict(ae_id=ae_id, subject_id="MSK-0001", term="Pericarditis", grade=4,
                  onset_at=T0 + timedelta(days=day), serious_criteria=("life-threatening",),
                  attribution="probable", expected=False,
                  sponsor_received_at=T0 + timedelta(days=day), special_interest="serositis",
                  haematological=False, conditioning_lab_effect=False, ctcae_version="5.0")
    return rec(AdverseEventReported(**{**values, **fields}), day)


def test_safety_clock_is_due_then_overdue_then_submitted():
    p = PROJECTIONS["safety"]
    events = [ae("AE-0001-01", 3)]  # received 2026-03-05: 7-day report due 2026-03-12
    # Days are the sponsor's (New York): noon UTC is the same date there
    due = p.document(fold(p, events), datetime(2026, 3, 10, 12, tzinfo=UTC))
    seven = next(r for r in due["expedited_reports"] if r["report"] == "7-day")
    assert (seven["due_on"], seven["status"], seven["days_left"]) == ("2026-03-12", "due", 2)
    complete = next(r for r in due["expedited_reports"] if r["report"] == "7-day-complete")
    assert complete["due_on"] == "2026-03-20"
    late = p.document(fold(p, events), datetime(2026, 3, 13, 12, tzinfo=UTC))
    assert late["overdue_reports"] == 1
    submitted = [*events, rec(ExpeditedReportSubmitted(
        ae_id="AE-0001-01", subject_id="MSK-0001", report="7-day",
        submitted_at=T0 + timedelta(days=9), due_on="2026-03-12", reference="IND-1"), 9)]
    doc = p.document(fold(p, submitted), datetime(2026, 3, 13, tzinfo=UTC))
    seven = next(r for r in doc["expedited_reports"] if r["report"] == "7-day")
    assert (seven["status"], seven["late"]) == ("submitted", False)
    # 00:30 UTC on 13 March is 12 March, 20:30 EDT, in New York: not yet overdue there
    evening = p.document(fold(p, events), datetime(2026, 3, 13, 0, 30, tzinfo=UTC))
    assert evening["overdue_reports"] == 0
    assert doc["adverse_events"]["of_special_interest"] == 1
    assert doc["adverse_events"]["by_worst_grade"] == {"4": 1}


def test_open_dlt_windows_close_with_the_evaluation():
    p = PROJECTIONS["safety"]
    events = [infused("MSK-0002", "DL1", 0)]
    doc = p.document(fold(p, events), T0 + timedelta(days=10))
    [window] = doc["open_dlt_windows"]
    assert (window["subject_id"], window["days_left"]) == ("MSK-0002", 18)
    # Infused on 2 March (04:00 in New York): day 28 is 30 March, over at midnight EDT
    assert window["window_last_day"] == "2026-03-30"
    assert window["window_ends_at"] == "2026-03-31T00:00:00-04:00"
    done = [*events, evaluated("MSK-0002", "DL1", 28, dlt=False)]
    doc = p.document(fold(p, done), T0 + timedelta(days=29))
    assert doc["open_dlt_windows"] == []
    assert doc["dlts_per_cohort"] == {"DL1-IP": {"dose_level": "DL1", "evaluable": 1, "dlts": 0}}
