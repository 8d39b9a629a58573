"""The simulator's plan: deterministic for a seed, containing every situation the scenario
must show, and valid: run in process through the real deciders (no Kafka, no HTTP server), with
the worker's own folds giving the recommendation (no copy of the design's rules here), every
step is accepted and every review finds the recommendation the plan was built for."""

from __future__ import annotations

from datetime import date

import pytest

from clients.simulate import PlanError, Simulation, SimulationError, plan
from clients.simulate_plan import design_path
from clients.simulate_steps import TRIAL_START, Step
from projections.base import fold
from projections.catalog import build
from trial.config import load_trial

from .in_process import URL, InProcess


class DesignView:
    """The worker's documents as far as the simulation reads them: the projections' own folds
    (``projections.catalog``), the dose-escalation design's evidence included
    (``projections.escalation.evidence``), over the events the deciders accepted."""

    def __init__(self, api: InProcess):
        self.api = api
        self.projections = build(api.trial)

    def document(self, name: str, positions) -> dict:
        projection = self.projections[name]
        recorded = [r for c, r in self.api.recorded() if c in projection.contexts]
        as_of = recorded[-1].envelope.occurred_at if recorded else TRIAL_START
        return projection.document(fold(projection, recorded), as_of)


def history(api: InProcess) -> list[str]:
    """The design's decision after each DLT evaluation, as the worker's history lists them."""
    document = DesignView(api).document("dose-escalation", {})
    return [r["decision"] for r in document["recommendations"]]


def run_in_process(patients: int, seed: int):
    api = InProcess()
    lines: list[str] = []
    simulation = Simulation(
        URL, URL, trial=api.trial, say=lines.append, transport=api, view=DesignView(api)
    )
    report = simulation.run(plan(patients, seed, api.trial), patients=patients, seed=seed)
    return api, report, lines


def of(steps: list[Step], action: str) -> list[Step]:
    return [s for s in steps if s.action == action]


# ---------------------------------------------------------------- determinism and limits


def test_the_same_seed_gives_the_same_trial():
    assert plan(18, 7) == plan(18, 7)
    assert plan(6, 7) == plan(6, 7)
    assert plan(18, 8) != plan(18, 7)
    # same subjects, outcomes and business times, not only the same number of steps
    first, again = plan(9, 11), plan(9, 11)
    assert [(s.at, s.action, s.subject_id, s.args) for s in first] == [
        (s.at, s.action, s.subject_id, s.args) for s in again
    ]


def test_business_times_run_forward_on_the_simulated_calendar():
    steps = plan(18, 7)
    assert steps[0].at >= TRIAL_START
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    # a whole 18-patient trial takes months of business time, never the wall clock
    assert 300 < steps[-1].day < 700


@pytest.mark.parametrize("patients", [6, 9, 12, 15, 18])
def test_the_number_treated_is_the_number_asked_within_the_trial_maximum(patients):
    steps = plan(patients, 7)
    assert len(of(steps, "infuse")) == patients <= load_trial().escalation.max_patients
    assert len({s.subject_id for s in of(steps, "infuse")}) == patients


@pytest.mark.parametrize("patients", [0, 3, 5, 7, 19, 21])
def test_patients_outside_the_design_are_refused(patients):
    with pytest.raises(PlanError, match="number of patients to treat"):
        plan(patients, 7)


# ---------------------------------------------------------------- the situations


@pytest.mark.parametrize("patients", [6, 18])
def test_the_plan_contains_every_required_situation(patients):
    steps = plan(patients, 7)
    trial = load_trial()
    # screen failures: MSLN below the threshold at pre-screening, ECOG 3 at screening
    msln = [s for s in of(steps, "prescreen") if s.args["msln_ihc_percent"] < 25]
    assert msln
    assert [s for s in of(steps, "assess-eligibility") if s.args.get("ecog") == 3]
    # one manufacturing failure, then a re-collection (lot B) of the same subject
    (failure,) = of(steps, "manufacturing-failure")
    again = [s for s in of(steps, "apheresis") if s.args["lot"] == "B"]
    assert [s.subject_id for s in again] == [failure.subject_id]
    assert again[0].at > failure.at
    # one out-of-specification lot, exceptionally released by investigator and sponsor
    low = [
        s
        for s in of(steps, "qc")
        if s.args["test"] == "viability" and s.args["result"] < trial.release.viability_min_percent
    ]
    assert len(low) == 1
    decisions = [s for s in of(steps, "exceptional-release") if s.subject_id == low[0].subject_id]
    assert sorted(s.args["role"] for s in decisions) == ["investigator", "sponsor"]
    assert any(s.action == "infuse" and s.subject_id == low[0].subject_id for s in steps)
    # CRS and ICANS of several grades, from ASTCT observations
    assert {1, 2, 3} <= {s.args["grade"] for s in of(steps, "grade-crs")}
    assert {1, 2, 4} <= {s.args["grade"] for s in of(steps, "grade-icans")}
    # DLTs, adjudicated by the investigator
    dlts = [s for s in of(steps, "adjudicate-dlt") if s.args["verdict"] == "dlt"]
    assert len(dlts) == sum(b.dlts for b in design_path(patients, ["DL1", "DL2", "DL3", "DL4"]))
    assert [s for s in of(steps, "adjudicate-dlt") if s.args["verdict"] == "not-dlt"]
    # a serious, unexpected, suspected adverse reaction and its 15-day report, in time
    (susar,) = [s for s in of(steps, "report-ae") if s.args.get("expected") is False]
    assert susar.args["serious_criteria"] and susar.args["attribution"] == "possible"
    (determined,) = of(steps, "determine-expedited-report")
    (submitted,) = of(steps, "submit-expedited-report")
    assert susar.args["ae_id"] == determined.args["ae_id"] == submitted.args["ae_id"]
    assert susar.at <= determined.at < submitted.at
    days = trial.reporting.serious_unexpected_days
    assert submitted.at.date() <= date.fromordinal(determined.at.date().toordinal() + days)
    assert submitted.args["report"] == "15-day"
    # withdrawals: one before apheresis (the slot is released), one after treatment
    withdrawn = {s.subject_id: s.args["reason_code"] for s in of(steps, "withdraw")}
    infused = {s.subject_id for s in of(steps, "infuse")}
    assert {r for s, r in withdrawn.items() if s not in infused} == {"consent-withdrawn"}
    assert {r for s, r in withdrawn.items() if s in infused} == {"disease-progression"}
    # the review meets escalate and de-escalate (and stay from 9 patients on: with 6 the
    # design's stay is its interim "complete the cohort", see the in-process run below)
    expected = {s.args["expect"] for s in of(steps, "review")}
    assert {"escalate", "de-escalate"} <= expected
    assert "stay" in expected or patients == 6
    assert of(steps, "open-cohort")[0].args["cite"] is False
    assert all(s.args["cite"] for s in of(steps, "open-cohort")[1:])


def test_eighteen_patients_end_with_the_mtd():
    reviews = of(plan(18, 7), "review")
    assert [r.args["expect"] for r in reviews] == [
        "escalate",
        "escalate",
        "escalate",
        "stay",
        "de-escalate",
        "stop",
    ]
    assert reviews[-1].args["mtd_level"] == "DL3"


# ---------------------------------------------------------------- valid against the rules


@pytest.mark.parametrize(("patients", "seed"), [(6, 7), (9, 3), (12, 5), (15, 1), (18, 7)])
def test_every_step_is_accepted_and_every_review_finds_the_planned_recommendation(patients, seed):
    api, report, lines = run_in_process(patients, seed)

    assert report.treated == patients
    assert report.commands == len([s for s in plan(patients, seed) if s.action != "review"])
    assert len(report.failed_lots) == len(report.out_of_specification) == 1
    assert report.reports_submitted and report.dlts >= 2
    levels = {lvl["dose_level"]: lvl for lvl in report.escalation["levels"]}
    assert sum(lvl["treated"] for lvl in levels.values()) == patients
    assert any(line.startswith("[day") and "dose-escalation review" in line for line in lines)
    assert {"escalate", "stay", "de-escalate"} <= set(history(api))
    summary = report.summary()
    assert f"treated {patients}" in summary and "final recommendation" in summary


def test_a_recommendation_other_than_the_planned_one_stops_the_simulation():
    api = InProcess()

    class Disagreeing(DesignView):
        def document(self, name, positions):
            document = super().document(name, positions)
            if name == "dose-escalation":
                document["recommendation"]["decision"] = "stop"
            return document

    simulation = Simulation(
        URL, URL, trial=api.trial, say=lambda _l: None, transport=api, view=Disagreeing(api)
    )
    with pytest.raises(SimulationError, match="expected the design to recommend"):
        simulation.run(plan(6, 7, api.trial))
