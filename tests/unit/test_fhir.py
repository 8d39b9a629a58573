"""The trial, its subjects and their adverse events as a FHIR R5 collection Bundle.

Sources: HL7 FHIR R5 (5.0.0): Bundle (type "collection", entry.fullUrl), ResearchStudy,
ResearchSubject (status, study, subject required), AdverseEvent (actuality, status, subject
required; seriousness from CodeSystem adverse-event-seriousness); the models of fhir.resources
8 (R5) validate the bundle; DESIGN.md: pseudonymous subject ids only."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fhir.resources.bundle import Bundle
from typer.testing import CliRunner

from audit.fhir import SERIOUSNESS, bundle
from trialops.cli_audit import export_app

from .test_audit_trail import TRIAL, History, ae_reported, enrolled, registered
from .test_sdtm import replaying
from .test_snapshots import simulated_trial

CREATED = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def resources(document: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in document["entry"] if e["resource"]["resourceType"] == kind]


def test_a_simulated_trial_is_a_valid_r5_bundle_of_its_subjects_and_adverse_events():
    api = simulated_trial(9, 3)
    events = [r for context, r in api.recorded() if context in ("enrollment", "safety")]
    document = bundle(events, TRIAL, CREATED)
    Bundle.model_validate(document)  # raises on any R5 violation
    assert document["type"] == "collection"
    registered_ids = {
        r.payload.subject_id for r in events if r.envelope.event_type == "SubjectRegistered"
    }
    subjects = resources(document, "ResearchSubject")
    assert {s["identifier"][0]["value"] for s in subjects} == registered_ids
    reported = [r.payload for r in events if r.envelope.event_type == "AdverseEventReported"]
    died = {r.payload.ae_id for r in events
            if r.envelope.event_type in ("CrsGraded", "IcansGraded") and r.payload.grade == 5}
    aes = {a["identifier"][0]["value"]: a for a in resources(document, "AdverseEvent")}
    assert set(aes) == {ae.ae_id for ae in reported}
    for ae in reported:
        resource = aes[ae.ae_id]
        assert resource["actuality"] == "actual"
        assert resource["code"]["text"] == ae.term
        serious = bool(ae.serious_criteria) or ae.ae_id in died
        (coding,) = resource["seriousness"]["coding"]
        assert (coding["system"], coding["code"]) == (
            SERIOUSNESS, "serious" if serious else "non-serious")
        assert datetime.fromisoformat(resource["occurrenceDateTime"]) == ae.onset_at
    (study,) = resources(document, "ResearchStudy")
    assert study["identifier"][0]["value"] == TRIAL


def test_every_reference_resolves_inside_the_bundle_and_no_patient_data_is_in_it():
    h = History()
    h.append("subject-MSK-0007", registered(7))
    h.append("subject-MSK-0007", enrolled(7))
    h.append("ae-AE-0007-01", ae_reported(7))
    document = bundle(h.events, TRIAL, CREATED)
    urls = {entry["fullUrl"] for entry in document["entry"]}
    (ae,) = resources(document, "AdverseEvent")
    assert ae["subject"]["reference"] in urls
    assert ae["study"][0]["reference"] in urls
    (subject,) = resources(document, "ResearchSubject")
    assert subject["study"]["reference"] in urls
    assert subject["subject"] == {
        "type": "Patient", "identifier": {"system": "urn:trialops:subject-id", "value": "MSK-0007"}
    }
    assert not resources(document, "Patient")
    text = orjson.dumps(document).decode()
    assert "birthDate" not in text and '"name"' not in text
    assert ae["suspectEntity"][0]["causality"]["entityRelatedness"]["text"] == "probable"


def test_the_export_command_writes_the_bundle(monkeypatch, tmp_path):
    h = History()
    h.append("subject-MSK-0007", registered(7))
    h.append("ae-AE-0007-01", ae_reported(7))
    replaying(monkeypatch, h.events)
    out = tmp_path / "bundle.json"
    result = CliRunner().invoke(export_app, ["--format", "fhir", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 research subjects and 1 adverse events as a FHIR R5 bundle" in result.stderr
    Bundle.model_validate(orjson.loads(out.read_bytes()))
