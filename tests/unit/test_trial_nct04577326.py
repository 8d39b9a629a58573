"""The sibling trial's file, ``trials/nct04577326.json``: it loads, it carries its public
record's values, names what the configuration cannot say, and sits beside the shipped trial in
one folder that a deployment of both trials can be pointed at (decision 60).

Source of the reference values: the ClinicalTrials.gov record NCT04577326 (Memorial Sloan
Kettering, phase I dose escalation of M28z1XXPD1DNR CAR T cells in malignant pleural
mesothelioma; estimated enrollment 30; actual study start 30 September 2020; groups of three
patients at up to 10 dose levels, given into the pleural cavity; preconditioning one
intravenous dose of cyclophosphamide 1.5 g/m^2; inclusion: age >= 18, Karnofsky >= 70%, MSLN
by IHC in >= 10% of the tumour, at least 1 prior regimen, measurable or evaluable disease;
chemotherapy, targeted therapy or radiotherapy completed 7 days before leukapheresis and 14
before the T cells, checkpoint inhibitors 21 and 42 days)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from clients.simulate_plan import plan
from trial.config import SHIPPED, load_trial, load_trials, trial_partitions
from trialops.stack import DEMO_PATIENTS

SIBLING = SHIPPED.parent / "nct04577326.json"
TRIAL = load_trial(SIBLING)


def test_the_sibling_trial_file_loads_as_the_mesothelioma_trial():
    assert TRIAL.trial_id == "NCT04577326"
    assert TRIAL.product == "M28z1XXPD1DNR"
    assert TRIAL.time_zone == "America/New_York"


def test_eligibility_is_the_record_s():
    rules = TRIAL.eligibility
    assert rules.msln_ihc_min_percent == 10
    assert rules.prior_lines_min == 1
    assert rules.age_min == 18
    assert rules.requires_measurable_or_evaluable_lesion is True
    # Pleural mesothelioma: no peritoneal carcinomatosis is asked for.
    assert rules.requires_peritoneal_carcinomatosis is False


def test_groups_of_three_up_to_thirty_patients_at_no_more_than_ten_levels():
    assert TRIAL.escalation.cohort_size == 3
    assert TRIAL.escalation.max_patients == 30
    assert len(TRIAL.dose_levels) <= 10


def test_preconditioning_is_one_dose_of_cyclophosphamide_1_5_g_per_m2():
    assert TRIAL.conditioning.cyclophosphamide_mg_per_m2_per_day == 1500
    assert TRIAL.conditioning.days == 1


@pytest.mark.parametrize(
    ("therapy", "before_leukapheresis", "before_infusion"),
    [
        ("chemotherapy", 7, 14),
        ("targeted-therapy", 7, 14),
        ("radiotherapy", 7, 14),
        ("checkpoint-inhibitor", 21, 42),
    ],
)
def test_washouts_are_the_record_s(therapy, before_leukapheresis, before_infusion):
    washout = TRIAL.washout[therapy]
    assert (washout.before_leukapheresis_days, washout.before_infusion_days) == (
        before_leukapheresis, before_infusion)


def test_no_business_time_before_the_study_started():
    started = datetime(2020, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    assert TRIAL.records.earliest_business_time == started


def test_what_the_configuration_cannot_say_is_named_in_the_file():
    # Intrapleural route, cyclophosphamide without fludarabine, a Karnofsky minimum: the file
    # holds a stand-in for each and says so.
    for key in ("dose_levels.route", "conditioning.fludarabine_mg_per_m2_per_day"):
        assert TRIAL.defaults_chosen[key].startswith("NOT the record's")
    assert "intrapleural" in TRIAL.defaults_chosen["dose_levels.route"]
    assert "Karnofsky" in TRIAL.defaults_chosen["eligibility.ecog_max"]


def test_every_value_the_record_is_silent_on_is_explained():
    explained = set(TRIAL.defaults_chosen)
    for key in ("dose_levels", "escalation.design", "escalation.min_patients", "dlt",
                "eligibility.labs", "release", "stopping_rule", "infused_dose_tolerance_percent"):
        assert key in explained
    assert all(f"washout.{k}" in explained for k in TRIAL.washout)


def test_the_shipped_default_is_still_the_one_trial_nct06623396(monkeypatch):
    monkeypatch.delenv("TRIALOPS_TRIALS", raising=False)
    monkeypatch.delenv("TRIALOPS_TRIAL_FILE", raising=False)
    assert load_trial().trial_id == "NCT06623396"
    assert list(load_trials()) == ["NCT06623396"]


def test_the_shipped_folder_runs_both_trials_on_four_partitions():
    trials = load_trials(Path(SHIPPED.parent))
    assert sorted(trials) == ["NCT04577326", "NCT06623396"]
    placed = trial_partitions(trials, 4)
    assert len(set(placed.values())) == 2


def test_the_demo_plan_can_be_simulated_in_the_sibling_trial():
    steps = plan(DEMO_PATIENTS, 7, TRIAL)
    assert sum(s.action == "infuse" for s in steps) == DEMO_PATIENTS
    assert all(s.at >= TRIAL.records.earliest_business_time for s in steps)
