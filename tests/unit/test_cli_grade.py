"""``trialops grade crs|icans``: the real CLI in a subprocess, a few rows of ASTCT 2019.

Source of the grades: Lee DW et al., ASTCT consensus grading, Biol Blood Marrow Transplant 2019
(DOMAIN.md section 3). The grading itself is covered row by row in test_grading.py; here:
one JSON object on stdout and exit 0, or a non-zero exit naming the bad option, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

RUN_APP = "from trialops.cli_grade import app; app()"


def grade(command_line: str) -> subprocess.CompletedProcess[str]:
    # A wide terminal keeps the error box from wrapping the option's name across lines.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", RUN_APP, *command_line.split()],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("command_line", "scale", "expected", "determined_by"),
    [
        (
            "crs --temperature 38.4 --hypotension no-vasopressor --hypoxia high-flow",
            "ASTCT-CRS",
            3,
            ["hypoxia"],
        ),
        (
            "crs --temperature 36.9 --hypotension multiple-vasopressors --hypoxia none",
            "ASTCT-CRS",
            0,
            ["fever"],
        ),
        (
            "crs --temperature 36.9 --fever-masked --hypotension one-vasopressor"
            " --hypoxia low-flow",
            "ASTCT-CRS",
            3,
            ["hypotension"],
        ),
        (
            "crs --temperature 39.1 --hypotension none --hypoxia none --death",
            "ASTCT-CRS",
            5,
            ["death"],
        ),
        (
            "icans --ice-score 10 --consciousness normal --seizure none --motor none --icp none",
            "ASTCT-ICANS",
            0,
            [],
        ),
        (
            "icans --ice-score 6 --consciousness normal --seizure none --motor none"
            " --icp focal-edema",
            "ASTCT-ICANS",
            3,
            ["icp"],
        ),
        (
            "icans --ice-score 0 --consciousness unrousable --seizure none --motor none --icp none",
            "ASTCT-ICANS",
            4,
            ["consciousness"],
        ),
    ],
    ids=[
        "crs-3-by-high-flow-oxygen",
        "crs-0-without-fever",
        "crs-3-with-masked-fever",
        "crs-5-death",
        "icans-0-ice-10",
        "icans-3-focal-edema",
        "icans-4-unrousable",
    ],
)
def test_grade_prints_one_json_object_and_exits_0(command_line, scale, expected, determined_by):
    result = grade(command_line)

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    document = json.loads(result.stdout)
    assert document["scale"] == scale
    assert document["grade"] == expected
    assert document["determined_by"] == determined_by


def test_the_observation_is_echoed_with_the_grade():
    crs = json.loads(
        grade("crs --temperature 38.4 --hypotension no-vasopressor --hypoxia high-flow").stdout
    )
    icans = json.loads(
        grade(
            "icans --ice-score 8 --consciousness voice --seizure none --motor none --icp none"
        ).stdout
    )

    assert crs["observation"] == {
        "temperature_c": 38.4,
        "fever_masked": False,
        "hypotension": "no-vasopressor",
        "hypoxia": "high-flow",
        "death": False,
    }
    assert icans["observation"] == {
        "ice_score": 8,
        "consciousness": "voice",
        "seizure": "none",
        "motor": "none",
        "icp": "none",
        "death": False,
    }


CRS_FINDINGS = "--hypotension none --hypoxia none"
ICANS_FINDINGS = "--consciousness normal --seizure none --motor none --icp none"


@pytest.mark.parametrize(
    ("command_line", "option"),
    [
        (f"crs --temperature hot {CRS_FINDINGS}", "--temperature"),
        (f"crs --temperature nan {CRS_FINDINGS}", "--temperature"),
        (f"crs --temperature 52 {CRS_FINDINGS}", "--temperature"),
        ("crs --temperature 39 --hypotension dopamine --hypoxia none", "--hypotension"),
        ("crs --temperature 39 --hypotension none --hypoxia ecmo", "--hypoxia"),
        ("crs --temperature 39 --hypoxia none", "--hypotension"),
        (f"crs {CRS_FINDINGS}", "--temperature"),
        (f"icans --ice-score 11 {ICANS_FINDINGS}", "--ice-score"),
        (f"icans --ice-score -1 {ICANS_FINDINGS}", "--ice-score"),
        (f"icans --ice-score 7.5 {ICANS_FINDINGS}", "--ice-score"),
        (
            "icans --ice-score 7 --consciousness drowsy --seizure none --motor none --icp none",
            "--consciousness",
        ),
        (
            "icans --ice-score 7 --consciousness normal --seizure none --motor none --icp swollen",
            "--icp",
        ),
        ("icans --ice-score 7 --consciousness normal --motor none --icp none", "--seizure"),
        (f"icans {ICANS_FINDINGS}", "--ice-score"),
    ],
    ids=[
        "temperature-hot",
        "temperature-nan",
        "temperature-52",
        "unknown-hypotension",
        "unknown-hypoxia",
        "missing-hypotension",
        "missing-temperature",
        "ice-score-11",
        "ice-score-negative",
        "ice-score-fraction",
        "unknown-consciousness",
        "unknown-icp",
        "missing-seizure",
        "missing-ice-score",
    ],
)
def test_a_bad_argument_exits_non_zero_naming_the_option(command_line, option):
    result = grade(command_line)

    assert result.returncode != 0
    assert result.stdout == ""
    assert option in result.stderr
    assert "Traceback" not in result.stderr
