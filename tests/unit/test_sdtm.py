"""The adverse events as the CDISC SDTM AE domain in a SAS XPORT v5 file, read back.

Sources: CDISC SDTM Implementation Guide v3.4, section 6.2 (AE domain variables, AETOXGR for
CTCAE grades, the seriousness flags); CDISC Controlled Terminology, codelists NY ("Y", "N") and
OUT ("FATAL", "RECOVERED/RESOLVED", "RECOVERING/RESOLVING"); SAS TS-140 and the FDA Study Data
Technical Conformance Guide 3.3.1 (names <= 8, labels <= 40, character values <= 200 bytes)."""

from __future__ import annotations

from datetime import timedelta

import pyreadstat
import pytest
from typer.testing import CliRunner

from audit.sdtm import XportLimitError, adverse_events, ae_rows, check_limits, write_xpt
from events.safety import AdverseEventImproved, CrsFindings, CrsGraded
from infra.settings import Settings
from trialops.cli_audit import export_app

from .test_audit_trail import START, TRIAL, History, ae_regraded, ae_reported
from .test_snapshots import simulated_trial

SDTM_AE_VARIABLES = {
    "STUDYID", "DOMAIN", "USUBJID", "AESEQ", "AETERM", "AETOXGR", "AESER", "AEREL", "AESTDTC",
    "AEENDTC", "AEOUT",
}


def read_back(path):
    frame, meta = pyreadstat.read_xport(str(path))
    return frame.to_dict("records"), meta


def test_a_simulated_trials_adverse_events_read_back_one_record_each(tmp_path):
    api = simulated_trial(9, 3)
    events = [r for context, r in api.recorded() if context == "safety"]
    reported = [r.payload for r in events if r.envelope.event_type == "AdverseEventReported"]
    assert reported, "the simulation reports adverse events"
    path = tmp_path / "ae.xpt"
    write_xpt(ae_rows(adverse_events(events), TRIAL), path)
    rows, meta = read_back(path)
    assert meta.table_name == "AE"
    assert set(meta.column_names) >= SDTM_AE_VARIABLES
    assert "AEDECOD" not in meta.column_names  # no MedDRA coding in the log
    assert all(len(name) <= 8 for name in meta.column_names)
    assert all(len(label) <= 40 for label in meta.column_labels)
    assert len(rows) == len(reported)
    by_id = {row["AESPID"]: row for row in rows}
    for ae in reported:
        row = by_id[ae.ae_id]
        assert row["STUDYID"] == TRIAL
        assert row["DOMAIN"] == "AE"
        assert row["USUBJID"] == f"{TRIAL}-{ae.subject_id}"
        assert row["AETERM"] == ae.term
        assert row["AESTDTC"] == ae.onset_at.strftime("%Y-%m-%dT%H:%M:%S")
        assert int(row["AETOXGR"]) >= ae.grade  # a CRS/ICANS grading only raises it
    for subject in {ae.subject_id for ae in reported}:
        seqs = sorted(row["AESEQ"] for row in rows if row["USUBJID"] == f"{TRIAL}-{subject}")
        assert seqs == list(range(1, len(seqs) + 1))


def test_a_regraded_improved_and_resolved_ae_reads_back_with_its_current_assessment(tmp_path):
    h = History()
    h.append("ae-AE-0007-01", ae_reported(7))  # grade 3, hospitalisation, probable
    h.append("ae-AE-0007-01", ae_regraded(7, grade=2, attribution="possible"))
    h.append("ae-AE-0008-01", ae_reported(8))
    resolved_at = START + timedelta(days=4, hours=3)
    h.append("ae-AE-0008-01", AdverseEventImproved(
        ae_id="AE-0008-01", subject_id="MSK-0008", outcome="resolved", improved_at=resolved_at))
    path = tmp_path / "ae.xpt"
    write_xpt(ae_rows(adverse_events(h.events), TRIAL), path)
    rows, _meta = read_back(path)
    seven, eight = sorted(rows, key=lambda row: row["USUBJID"])
    assert (seven["AETOXGR"], seven["AEREL"], seven["AESER"]) == ("2", "POSSIBLY RELATED", "Y")
    assert (seven["AESHOSP"], seven["AESDTH"]) == ("Y", "N")
    assert (seven["AEOUT"], seven["AEENDTC"]) == ("", "")
    assert eight["AEOUT"] == "RECOVERED/RESOLVED"
    assert eight["AEENDTC"] == resolved_at.strftime("%Y-%m-%dT%H:%M:%S")
    assert eight["AEREL"] == "PROBABLY RELATED"


def test_death_from_crs_makes_the_ae_fatal_and_serious_by_death():
    h = History()
    h.append("ae-AE-0007-01", ae_reported(7).model_copy(
        update={"term": "Cytokine release syndrome", "grade": 2, "serious_criteria": ()}))
    h.append("ae-AE-0007-01", CrsGraded(
        ae_id="AE-0007-01", subject_id="MSK-0007", observed_at=START + timedelta(days=1),
        observation=CrsFindings(temperature_c=39.5, fever_masked=False,
                                hypotension="multiple-vasopressors", hypoxia="positive-pressure",
                                death=True),
        grade=5, determined_by=("death",)))
    (row,) = ae_rows(adverse_events(h.events), TRIAL)
    assert (row["AETOXGR"], row["AESER"], row["AESDTH"], row["AEOUT"]) == ("5", "Y", "Y", "FATAL")


def test_xport_v5_limits_are_refused_before_writing():
    with pytest.raises(XportLimitError, match="longer than 8"):
        check_limits([], {"AELONGNAME": "x"}, "AE")
    with pytest.raises(XportLimitError, match="longer than 40"):
        check_limits([], {"AETERM": "x" * 41}, "AE")
    with pytest.raises(XportLimitError, match="longer than 200 bytes"):
        check_limits([{"AETERM": "x" * 201}], {"AETERM": "Term"}, "AE")


def replaying(monkeypatch, events) -> None:
    """The export command reads ``events`` instead of the topics."""
    import audit.replay

    settings = Settings(bootstrap_servers="unused:9092")
    monkeypatch.setattr(Settings, "reachable", classmethod(lambda cls: settings))
    monkeypatch.setattr(audit.replay, "recorded_events", lambda *_args, **_kw: iter(events))


def test_the_export_command_writes_the_file_and_says_what_it_holds(monkeypatch, tmp_path):
    h = History()
    h.append("ae-AE-0007-01", ae_reported(7))
    h.append("ae-AE-0008-01", ae_reported(8))
    replaying(monkeypatch, h.events)
    out = tmp_path / "ae.xpt"
    result = CliRunner().invoke(export_app, ["--format", "sdtm-ae", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "exported 2 adverse events of 2 subjects as SDTM AE" in result.stderr
    rows, _meta = read_back(out)
    assert [row["AESPID"] for row in rows] == ["AE-0007-01", "AE-0008-01"]
    assert not list(tmp_path.glob("*.partial"))


def test_the_sdtm_export_needs_a_file_and_the_whole_trial():
    assert CliRunner().invoke(export_app, ["--format", "sdtm-ae"]).exit_code == 2
    result = CliRunner().invoke(
        export_app, ["--format", "sdtm-ae", "--subject", "MSK-0007", "--output", "ae.xpt"]
    )
    assert result.exit_code == 2
    assert "whole trial" in result.stderr
