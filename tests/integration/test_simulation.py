"""A short simulated trial (6 patients treated) on the real broker, through the command services
and the Faust worker: the projections show what the plan made happen (the design's
recommendations and the review's decisions citing them, the failed and the out-of-
specification lots, CRS and ICANS of several grades, the DLTs, the expedited report), and the
event log verifies clean."""

from __future__ import annotations

import pytest

from audit.verify import verify
from clients.journey_steps import lot_id_of
from clients.simulate import Simulation, WorkerView, plan
from clients.simulate_steps import CRS_TERM, ICANS_TERM
from trial.config import load_trial

pytestmark = pytest.mark.kafka

PATIENTS, SEED = 6, 7


def test_a_simulated_trial_shows_in_every_projection(stack, settings):
    trial = load_trial()
    steps = plan(PATIENTS, SEED, trial)
    lines: list[str] = []
    simulation = Simulation(stack.service_url, stack.projections_url, trial=trial, say=lines.append)
    report = simulation.run(steps, patients=PATIENTS, seed=SEED)
    view = WorkerView(stack.projections_url, trial)

    def document(name: str) -> dict:
        return view.document(name, simulation.positions)

    def of(action: str):
        return [s for s in steps if s.action == action]

    # ------------------------------------------------------------ dose escalation
    escalation = document("dose-escalation")
    history = escalation["recommendations"]
    assert {"escalate", "stay", "de-escalate"} <= {r["decision"] for r in history}
    after = {r["after_evaluation_of"]: r for r in history}
    followed = []
    for review in of("review"):
        rec = after[review.args["after_evaluation_of"]]
        assert (rec["decision"], rec["next_level"]) == (
            review.args["expect"],
            review.args["next_level"],
        )
        followed.append(rec["recommendation_id"])
    assert escalation["recommendation"]["recommendation_id"] == followed[-1]
    # every decision of the review, in order; each opening or expansion after the first
    # follows the recommendation its review read
    planned = [s for s in steps if s.action in ("open-cohort", "expand-cohort", "close-cohort")]
    decided = escalation["decisions"]
    assert [(d["kind"], d["cohort_id"]) for d in decided] == [
        (s.action.removesuffix("-cohort"), s.args["cohort_id"]) for s in planned
    ]
    opened = [d for d in decided if d["kind"] in ("open", "expand")]
    assert opened[0]["followed"] is None  # the protocol's start level needs no citation
    assert [d["followed"] for d in opened[1:]] == followed
    levels = {lvl["dose_level"]: lvl for lvl in escalation["levels"]}
    assert (levels["DL1"]["evaluable"], levels["DL1"]["dlts"]) == (3, 0)
    assert (levels["DL2"]["evaluable"], levels["DL2"]["dlts"]) == (3, 2)
    assert sum(lvl["treated"] for lvl in levels.values()) == PATIENTS == report.treated

    # ------------------------------------------------------------ cohorts
    cohorts = {c["cohort_id"]: c for c in document("cohort-occupancy")["cohorts"]}
    assert (cohorts["DL2-IP"]["status"], cohorts["DL2-IP"]["slots_taken"]) == ("closed", 3)
    dl1 = cohorts["DL1-IP"]  # expanded by the last review: 3 new slots open
    assert (dl1["status"], dl1["slots_planned"], dl1["slots_taken"]) == ("open", 6, 3)
    early = [s.subject_id for s in of("withdraw") if s.args["reason_code"] == "consent-withdrawn"]
    assert early and not set(early) & {s for c in cohorts.values() for s in c["enrolled"]}

    # ------------------------------------------------------------ manufacturing
    lots = {lot["lot_id"]: lot for lot in document("manufacturing-pipeline")["lots"]}
    (failure,) = of("manufacturing-failure")
    assert lots[lot_id_of(failure.subject_id, "A")]["stage"] == "failed"
    assert lots[lot_id_of(failure.subject_id, "B")]["stage"] == "infused"
    out_of_spec = [lot for lot in lots.values() if lot["out_of_specification"]]
    assert [lot["out_of_specification"] for lot in out_of_spec] == [["viability"]]
    assert out_of_spec[0]["stage"] == "infused"  # after the exceptional release
    assert "exceptionally-released" in [s["stage"] for s in out_of_spec[0]["stages"]]
    assert len(lots) == report.lots == PATIENTS + 1
    infused = [lot for lot in lots.values() if lot["stage"] == "infused"]
    assert len(infused) == PATIENTS
    assert {lot["chain_of_identity"]["status"] for lot in infused} == {"complete"}

    # ------------------------------------------------------------ safety
    safety = document("safety")
    aes = safety["adverse_events"]["list"]
    assert safety["adverse_events"]["total"] == len(of("report-ae"))
    crs = {ae["worst_grade"] for ae in aes if ae["term"] == CRS_TERM}
    icans = {ae["worst_grade"] for ae in aes if ae["term"] == ICANS_TERM}
    assert {1, 2, 3} <= crs and {1, 2, 4} <= icans
    assert len([ae for ae in aes if ae["dlt"] == "dlt"]) == 2 == report.dlts
    (submitted,) = of("submit-expedited-report")
    (expedited,) = safety["expedited_reports"]
    assert (expedited["ae_id"], expedited["report"], expedited["status"]) == (
        submitted.args["ae_id"],
        "15-day",
        "submitted",
    )
    assert expedited["late"] is False and expedited["due_on"] == submitted.args["due_on"]
    assert safety["overdue_reports"] == 0 and safety["open_dlt_windows"] == []
    assert safety["enrollment_paused"] is False

    # ------------------------------------------------------------ the log and the output
    audit = verify(settings)
    assert audit.ok, audit.as_dict()["problems"]
    assert any(line.startswith("[day ") and "infused at DL1" in line for line in lines)
    summary = report.summary()
    assert f"treated {PATIENTS}" in summary and "final recommendation: de-escalate" in summary
