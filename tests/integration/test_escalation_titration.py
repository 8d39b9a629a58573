"""Across contexts on a real broker: a grade 2 toxicity the safety context records ends the
accelerated titration the dose-escalation projection recommends, and a short dose the dosing
context records counts at the dose received; live and on replay alike.

Sources: accelerated titration ends at the first toxicity of grade >= 2 at least possibly
related with onset in the DLT window (DOMAIN.md section 4; Simon et al., J Natl Cancer Inst
1997;89:1138-1147); a patient counts at the infusion's ``counted_dose_level`` (decision 27).
Events are written straight onto the topics (tests/integration/raw_events.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import orjson
import pytest

from clients.http import get_bytes
from events.dosing import InfusionRecorded
from events.enrollment import CohortOpened
from events.safety import AdverseEventReported, DltEvaluationCompleted
from tests.integration.helpers import eventually
from tests.integration.raw_events import START, RawWriter
from trial.config import SHIPPED

pytestmark = pytest.mark.kafka

AS_OF = "2027-01-01T00:00:00Z"
CELLS = {"DL1": 1e6, "DL2": 3e6}


@pytest.fixture
def titrating_trial(tmp_path, monkeypatch):
    """The shipped trial with accelerated titration at DL1 and DL2, for every process."""
    data = orjson.loads(SHIPPED.read_bytes())
    data["escalation"]["accelerated_titration_levels"] = ["DL1", "DL2"]
    path = tmp_path / "titrating-trial.json"
    path.write_bytes(orjson.dumps(data))
    monkeypatch.setenv("TRIALOPS_TRIAL_FILE", str(path))
    return path


def test_a_grade_2_toxicity_ends_titration_and_a_short_dose_counts_lower(
    titrating_trial, stack, settings
):
    enrollment = RawWriter(settings, "enrollment")
    dosing = RawWriter(settings, "dosing")
    safety = RawWriter(settings, "safety")
    day = lambda n: START + timedelta(days=n)  # noqa: E731

    def open_cohort(level: str, n: int):
        enrollment.append(f"cohort-{level}-IP", CohortOpened(
            cohort_id=f"{level}-IP", dose_level=level, dose_cells_per_kg=CELLS[level],
            route="intraperitoneal", capacity=1), occurred_at=day(n), recorded_at=day(n))

    def infuse(subject: str, level: str, n: int, counted: str | None, received: float):
        dosing.append(f"subject-{subject}", InfusionRecorded(
            subject_id=subject, lot_id=f"LOT-{subject[-4:]}-A", cohort_id=f"{level}-IP",
            dose_level=level, target_cells_per_kg=CELLS[level], weight_kg=70,
            cells_infused=70 * received, received_cells_per_kg=received,
            counted_dose_level=counted, route="intraperitoneal", infused_at=day(n)),
            occurred_at=day(n), recorded_at=day(n))

    def evaluate(subject: str, level: str, n: int, dlt: bool):
        safety.append(f"dlt-evaluation-{subject}", DltEvaluationCompleted(
            subject_id=subject, cohort_id=f"{level}-IP", dose_level=level,
            evaluated_at=day(n), window_days=28, dlt=dlt,
            dlt_ae_ids=(f"AE-{subject[-4:]}-01",) if dlt else ()),
            occurred_at=day(n), recorded_at=day(n))

    open_cohort("DL1", 0)
    infuse("MSK-0001", "DL1", 1, "DL1", 1e6)
    evaluate("MSK-0001", "DL1", 30, dlt=False)           # one patient, no toxicity: escalate
    open_cohort("DL2", 31)
    infuse("MSK-0002", "DL2", 32, "DL2", 3e6)
    safety.append("ae-AE-0002-01", AdverseEventReported(
        ae_id="AE-0002-01", subject_id="MSK-0002", term="Nausea", grade=2, ctcae_version="5.0",
        onset_at=day(36), serious_criteria=(), attribution="possible", expected=True,
        sponsor_received_at=day(36), special_interest=None, haematological=False,
        conditioning_lab_effect=False), occurred_at=day(36), recorded_at=day(36))
    evaluate("MSK-0002", "DL2", 61, dlt=False)           # grade 2 in the window: titration ends
    infuse("MSK-0003", "DL2", 62, "DL1", 1.2e6)          # a short lot: counts at DL1
    evaluate("MSK-0003", "DL2", 91, dlt=True)
    for writer in (enrollment, dosing, safety):
        writer.producer.flush()

    url = f"{stack.projections_url}/projections/dose-escalation?as_of={AS_OF}"

    def all_applied():
        doc = orjson.loads(get_bytes(url))
        return doc if len(doc["recommendations"]) == 3 else None

    doc = eventually(all_applied, timeout=60)
    first, second, third = doc["recommendations"]
    assert (first["decision"], first["next_level"]) == ("escalate", "DL2")
    assert first["rule"].startswith("accelerated titration")
    assert (second["decision"], second["next_level"]) == ("stay", "DL2")
    assert "accelerated titration ended at a grade >= 2 toxicity (at DL2)" in second["rule"]
    assert third["counts"] == {
        "DL1": {"evaluable": 2, "dlts": 1}, "DL2": {"evaluable": 1, "dlts": 0},
    }

    replayed = subprocess.run(
        [sys.executable, "-m", "trialops", "replay", "dose-escalation", "--as-of", AS_OF],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120, check=True,
    ).stdout
    assert replayed == get_bytes(url)
