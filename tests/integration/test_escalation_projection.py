"""The dose-escalation projection through the Faust worker on a real broker: a scripted cohort
sequence (cohorts opened, patients infused, DLT evaluations) yields the 3+3 design's
escalate / stay / de-escalate recommendations (DOMAIN.md section 4), and the replay of the same
topics prints the identical decision history.

Events are written straight onto the three topics (tests/integration/raw_events.py): this
tests the projection, whatever the services' rules."""

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
from events.safety import DltEvaluationCompleted
from tests.integration.helpers import eventually
from tests.integration.raw_events import START, RawWriter

pytestmark = pytest.mark.kafka

AS_OF = "2027-01-01T00:00:00Z"


def test_scripted_cohorts_give_3_plus_3_decisions_live_and_on_replay(stack, settings):
    enrollment = RawWriter(settings, "enrollment")
    dosing = RawWriter(settings, "dosing")
    safety = RawWriter(settings, "safety")
    day = lambda n: START + timedelta(days=n)  # noqa: E731

    def open_cohort(cohort: str, cells: float, n: int):
        level = cohort.split("-")[0]
        enrollment.append(f"cohort-{cohort}-IP", CohortOpened(
            cohort_id=f"{cohort}-IP", dose_level=level, dose_cells_per_kg=cells,
            route="intraperitoneal", capacity=3), occurred_at=day(n), recorded_at=day(n))

    def treat(first: int, level: str, cells: float, n: int, dlts: int):
        for i in range(3):
            subject = f"MSK-{first + i:04d}"
            dosing.append(f"subject-{subject}", InfusionRecorded(
                subject_id=subject, lot_id=f"LOT-{first + i:04d}-A", cohort_id=f"{level}-IP",
                dose_level=level, target_cells_per_kg=cells, weight_kg=70,
                cells_infused=70 * cells, received_cells_per_kg=cells, counted_dose_level=level,
                route="intraperitoneal", infused_at=day(n + i)),
                occurred_at=day(n + i), recorded_at=day(n + i))
            safety.append(f"dlt-evaluation-{subject}", DltEvaluationCompleted(
                subject_id=subject, cohort_id=f"{level}-IP", dose_level=level,
                evaluated_at=day(n + 30), window_days=28, dlt=i < dlts,
                dlt_ae_ids=(f"AE-{first + i:04d}-01",) if i < dlts else ()),
                occurred_at=day(n + 30 + i / 10), recorded_at=day(n + 30 + i / 10))

    open_cohort("DL1", 1e6, 0)
    treat(1, "DL1", 1e6, 1, dlts=0)       # 0/3: escalate
    open_cohort("DL2", 3e6, 40)
    treat(4, "DL2", 3e6, 41, dlts=1)      # 1/3: stay, treat 3 more
    treat(7, "DL2", 3e6, 80, dlts=1)      # 2/6: DL2 exceeds the MTD, DL1 had 3: de-escalate
    open_cohort("DL1-B", 1e6, 120)
    treat(10, "DL1", 1e6, 121, dlts=0)    # 0/6 at DL1 below an exceeded DL2: stop, MTD DL1
    for writer in (enrollment, dosing, safety):
        writer.producer.flush()

    url = f"{stack.projections_url}/projections/dose-escalation?as_of={AS_OF}"

    def all_applied():
        doc = orjson.loads(get_bytes(url))
        return doc if len(doc["recommendations"]) == 12 else None

    doc = eventually(all_applied, timeout=60)
    after_each_cohort = [
        (r["current_level"], r["decision"], r["next_level"])
        for r in doc["recommendations"][2::3]
    ]
    assert after_each_cohort == [
        ("DL1", "escalate", "DL2"),
        ("DL2", "stay", "DL2"),
        ("DL2", "de-escalate", "DL1"),
        ("DL1", "stop", None),
    ]
    assert doc["recommendation"]["mtd_level"] == "DL1"
    assert doc["recommendation"]["counts"] == {
        "DL1": {"evaluable": 6, "dlts": 0}, "DL2": {"evaluable": 6, "dlts": 2},
    }

    replayed = subprocess.run(
        [sys.executable, "-m", "trialops", "replay", "dose-escalation", "--as-of", AS_OF],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120, check=True,
    ).stdout
    assert replayed == get_bytes(url)

    # and people read the same decision from the terminal
    shown = subprocess.run(
        [sys.executable, "-m", "trialops", "show", "escalation", "--url", stack.projections_url],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert f"Recommendation {doc['recommendation']['recommendation_id']}: stop (MTD DL1)" in shown
    status = subprocess.run(
        [sys.executable, "-m", "trialops", "status", "--url", stack.projections_url],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "Cohorts" in status and "Open DLT windows" in status
    assert "Manufacturing pipeline" in status
