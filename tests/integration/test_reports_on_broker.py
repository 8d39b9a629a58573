"""The packets and the exports on a real broker (issue 15): after a short simulated trial
through the command services and the Faust worker, ``trialops report escalation-meeting`` and
``trialops export --format sdtm-ae|fhir|xlsx`` run as processes, as a user runs them, read the
topics through the one reading rule, and their files read back: the PDF's text names the
cohort's subjects, the XPT (SAS XPORT v5, read with pyreadstat) has one row per adverse event,
the FHIR bundle validates against the R5 models (fhir.resources), the workbook opens.

The expected rows come from the simulator's plan (what it made happen), not from the code
under test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pypdfium2 as pdfium
import pyreadstat
import pytest
from fhir.resources.bundle import Bundle
from openpyxl import load_workbook

from clients.simulate import Simulation, plan
from trial.config import load_trial

pytestmark = pytest.mark.kafka

PATIENTS, SEED = 6, 7
CLI = "from trialops.cli import app; app()"


def trialops(settings, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *arguments],
        env={**os.environ, **settings.env(), "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        timeout=240,
        check=False,
    )


def pdf_text(path: Path) -> str:
    document = pdfium.PdfDocument(str(path))
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


def test_the_packet_and_the_exports_of_a_simulated_trial_read_back(stack, tmp_path):
    # Given a short simulated trial on the real broker
    trial = load_trial()
    steps = plan(PATIENTS, SEED, trial)
    Simulation(stack.service_url, stack.projections_url, trial=trial,
               say=lambda _line: None).run(steps, patients=PATIENTS, seed=SEED)
    settings = stack.settings
    dl2 = [s.subject_id for s in steps
           if s.action == "enroll" and s.args.get("cohort_id") == "DL2-IP"]
    reported = [s for s in steps if s.action == "report-ae"]
    assert dl2 and reported

    # When the escalation meeting's packet and the three exports are made as a user makes them
    packet = tmp_path / "dl2.pdf"
    made = trialops(settings, "report", "escalation-meeting", "--cohort", "DL2-IP",
                    "--output", str(packet))
    unknown = trialops(settings, "report", "escalation-meeting", "--cohort", "DL9-IP",
                       "--output", str(tmp_path / "none.pdf"))
    files = {kind: tmp_path / name for kind, name in
             (("sdtm-ae", "ae.xpt"), ("fhir", "bundle.json"), ("xlsx", "trial.xlsx"))}
    exported = {kind: trialops(settings, "export", "--format", kind, "--output", str(path))
                for kind, path in files.items()}

    # Then the packet's text names every subject of the cohort, with its dose level and route
    assert made.returncode == 0, made.stderr.decode()
    text = pdf_text(packet)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for subject in dl2:
        assert any(line.startswith(subject) for line in lines), subject
    assert "DL2 intraperitoneal" in " ".join(lines)
    assert "The design's recommendation and its evidence" in text
    # with each DLT adjudication of the cohort signed by the investigator (the service records
    # the signature the adjudication route requires, meaning "review")
    adjudicated = [s for s in steps if s.action == "adjudicate-dlt" and s.subject_id in dl2]
    flat = " ".join(text.split())
    assert adjudicated and flat.count("Demo Investigator") >= len(adjudicated)
    # and a cohort the review never opened is refused, naming the option and the rule
    assert unknown.returncode == 2
    assert b"--cohort" in unknown.stderr and b"cohort-opened-by-the-review" in unknown.stderr
    assert not (tmp_path / "none.pdf").exists()
    for kind, result in exported.items():
        assert result.returncode == 0, (kind, result.stderr.decode())
    # the XPT has one row per adverse event the plan reported
    frame, meta = pyreadstat.read_xport(str(files["sdtm-ae"]))
    assert len(frame) == len(reported)
    assert sorted(frame["AESPID"]) == sorted(s.args["ae_id"] for s in reported)
    assert "AETOXGR" in meta.column_names
    # the FHIR bundle validates as R5 and holds one AdverseEvent per AE
    document = orjson.loads(files["fhir"].read_bytes())
    Bundle.model_validate(document)
    kinds = [entry["resource"]["resourceType"] for entry in document["entry"]]
    assert kinds.count("AdverseEvent") == len(reported)
    # the workbook opens, with its adverse events sheet
    book = load_workbook(files["xlsx"], read_only=True)
    assert "adverse events" in book.sheetnames
    assert book["adverse events"].max_row == len(reported) + 1
