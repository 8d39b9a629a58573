"""The trial configuration file: the shipped one carries the public record's numbers, and a bad
one is refused at start-up with a message naming the key.

Sources: DOMAIN.md section 1 (NCT06623396: MSLN IHC >= 25%, at least one prior line, four
escalating levels plus one fallback up to 3 x 10^7 CAR T cells/kg given intraperitoneally,
4 to 18 treated patients, fludarabine 30 and cyclophosphamide 300 mg/m^2/day for 3 days);
21 CFR 312.32(c) (7 and 15 calendar days)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trial.config import SHIPPED, TrialConfigError, load_trial

RECORD = json.loads(Path(SHIPPED).read_text())


def test_the_shipped_trial_carries_the_public_record():
    trial = load_trial(Path(SHIPPED))

    assert trial.trial_id == "NCT06623396"
    assert trial.eligibility.msln_ihc_min_percent == 25
    assert trial.eligibility.prior_lines_min == 1
    levels = trial.ordered_levels()
    assert [d.fallback for d in levels] == [True, False, False, False, False]
    assert max(d.cells_per_kg for d in levels) == 3e7
    assert {d.route for d in levels} == {"intraperitoneal"}
    assert (trial.escalation.min_patients, trial.escalation.max_patients) == (4, 18)
    assert trial.conditioning.fludarabine_mg_per_m2_per_day == 30
    assert trial.conditioning.cyclophosphamide_mg_per_m2_per_day == 300
    assert trial.conditioning.days == 3
    assert trial.reporting.fatal_or_life_threatening_days == 7
    assert trial.reporting.serious_unexpected_days == 15


def test_every_default_the_project_chose_is_explained_in_the_file():
    explained = set(RECORD["defaults_chosen"])
    for key in ("dose_levels", "escalation.design", "dlt", "release",
                "conditioning.dose_tolerance_percent", "infused_dose_tolerance_percent"):
        assert key in explained


def edited(change) -> dict:
    document = copy.deepcopy(RECORD)
    change(document)
    return document


def write(tmp_path: Path, document) -> Path:
    path = tmp_path / "trial.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


BAD = [
    ("a key missing", lambda d: d["conditioning"].pop("dose_tolerance_percent"),
     "conditioning.dose_tolerance_percent"),
    ("a percentage above 100", lambda d: d["eligibility"].update(msln_ihc_min_percent=150),
     "eligibility.msln_ihc_min_percent"),
    ("a key the model does not know", lambda d: d["release"].update(sterility="negative"),
     "release.sterility"),
    ("a design that does not exist", lambda d: d["escalation"].update(design="crm"),
     "escalation.design"),
    ("BOIN without a target", lambda d: d["escalation"].update(design="boin",
                                                               target_dlt_rate=None),
     "target_dlt_rate"),
    ("more minimum than maximum patients", lambda d: d["escalation"].update(min_patients=20),
     "min_patients"),
    ("a start level that is not a level", lambda d: d["escalation"].update(start_level="DL7"),
     "escalation.start_level"),
    ("a negative dose", lambda d: d["dose_levels"][1].update(cells_per_kg=-1),
     "dose_levels.1.cells_per_kg"),
    ("a route the product is not given by", lambda d: d["dose_levels"][0].update(route="oral"),
     "dose_levels.0.route"),
]


@pytest.mark.parametrize(("change", "key"), [(c, k) for _n, c, k in BAD],
                         ids=[n for n, _c, _k in BAD])
def test_a_bad_trial_file_is_refused_with_the_key_named(tmp_path, change, key):
    path = write(tmp_path, edited(change))

    with pytest.raises(TrialConfigError) as refusal:
        load_trial(path)

    assert key in str(refusal.value)
    assert str(path) in str(refusal.value)


def test_a_file_that_is_not_json_or_not_there_is_refused(tmp_path):
    with pytest.raises(TrialConfigError, match="is not JSON"):
        load_trial(write(tmp_path, "{ dose_levels: "))
    with pytest.raises(TrialConfigError, match="No such file"):
        load_trial(tmp_path / "missing.json")


@pytest.mark.parametrize("command", [["serve", "--demo"], ["worker", "--demo"]])
def test_the_services_and_the_worker_refuse_to_start_on_a_bad_trial_file(tmp_path, command):
    path = write(tmp_path, edited(lambda d: d["conditioning"].pop("days")))

    result = subprocess.run(
        [sys.executable, "-m", "trialops", *command],
        env={**os.environ, "TRIALOPS_TRIAL_FILE": str(path),
             "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
        capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 2
    assert "conditioning.days" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_time_zone_is_refused_naming_the_key(tmp_path):
    data = json.loads(SHIPPED.read_text())
    data["time_zone"] = "Mars/Olympus_Mons"
    path = tmp_path / "trial.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TrialConfigError, match="time_zone"):
        load_trial(path)
