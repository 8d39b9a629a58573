"""The trial, its subjects and their adverse events as an HL7 FHIR R5 (5.0.0) ``collection``
Bundle, for hospital systems; validated by building the fhir.resources R5 models.

The mapping (FHIR R5 resources ResearchStudy, ResearchSubject, AdverseEvent, Bundle):

- one ``ResearchStudy`` for the trial: ``identifier`` the NCT number on clinicaltrials.gov,
  ``status`` "active";
- one ``ResearchSubject`` per subject the enrollment or safety log names: ``identifier`` and
  ``subject`` carry the pseudonymous subject id only, as a logical reference (no Patient
  resource, so no name, birth date or other identifying data leaves the system);
  ``status`` "active", ``study`` the ResearchStudy;
- one ``AdverseEvent`` per reported AE, folded as for SDTM (audit/sdtm.py): ``actuality``
  "actual"; ``status`` "completed" when resolved or fatal, else "in-progress"; ``subject`` the
  ResearchSubject; ``study``; ``code.text`` the CTCAE term (no SNOMED or MedDRA coding is
  invented); ``occurrenceDateTime`` the onset; ``seriousness`` coded "serious"/"non-serious"
  (terminology.hl7.org CodeSystem adverse-event-seriousness); ``outcome`` coded where known
  (CodeSystem adverse-event-outcome: fatal, resolved, recovering); ``expectedInResearchStudy``;
  ``suspectEntity`` the investigational CAR T-cell product (a text concept) with its
  ``causality.entityRelatedness`` the investigator's attribution as text and
  ``assessmentMethod`` "investigator attribution".

Left out: the grade (R5 AdverseEvent has no severity element; it is in the SDTM export's
AETOXGR), the DLT verdict and reports, every free text. Ids are name-based UUIDs of the trial
and the subject or AE id, so the same log gives the same bundle.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from audit.sdtm import AdverseEventRecord, adverse_events, outcome
from events.registry import Recorded

CONTEXTS = ("enrollment", "safety")
NCT_SYSTEM = "https://clinicaltrials.gov"
SUBJECT_SYSTEM = "urn:trialops:subject-id"
AE_SYSTEM = "urn:trialops:ae-id"
SERIOUSNESS = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"
OUTCOME = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"
OUTCOMES = {
    "FATAL": ("fatal", "Fatal"),
    "RECOVERED/RESOLVED": ("resolved", "Resolved"),
    "RECOVERING/RESOLVING": ("recovering", "Recovering"),
}


def _id(trial_id: str, kind: str, name: str) -> str:
    return str(uuid5(NAMESPACE_URL, f"urn:trialops:{trial_id}:{kind}:{name}"))


def subjects_named(events: Iterable[Recorded]) -> list[str]:
    """Every subject id a payload names, in the order first named."""
    found: dict[str, None] = {}
    for recorded in events:
        subject_id = getattr(recorded.payload, "subject_id", None)
        if isinstance(subject_id, str):
            found.setdefault(subject_id, None)
    return list(found)


def bundle(events: Iterable[Recorded], trial_id: str, created_at: datetime) -> dict[str, Any]:
    """The Bundle as JSON-ready data, checked against the R5 models."""
    from fhir.resources.bundle import Bundle

    events = list(events)
    study_id = _id(trial_id, "study", trial_id)
    entries = [_entry(study_id, {
        "resourceType": "ResearchStudy",
        "id": study_id,
        "identifier": [{"system": NCT_SYSTEM, "value": trial_id}],
        "status": "active",
    })]
    subject_ids: dict[str, str] = {}
    for subject in subjects_named(events):
        subject_ids[subject] = _id(trial_id, "subject", subject)
        entries.append(_entry(subject_ids[subject], {
            "resourceType": "ResearchSubject",
            "id": subject_ids[subject],
            "identifier": [{"system": SUBJECT_SYSTEM, "value": subject}],
            "status": "active",
            "study": {"reference": f"urn:uuid:{study_id}"},
            "subject": {"type": "Patient",
                        "identifier": {"system": SUBJECT_SYSTEM, "value": subject}},
        }))
    for ae in adverse_events(events):
        ae_id = _id(trial_id, "ae", ae.ae_id)
        entries.append(_entry(ae_id, _adverse_event(ae, ae_id, study_id, subject_ids)))
    document = {
        "resourceType": "Bundle",
        "id": _id(trial_id, "bundle", created_at.isoformat()),
        "type": "collection",
        "timestamp": created_at.isoformat(),
        "entry": entries,
    }
    checked = Bundle.model_validate(document)
    result: dict[str, Any] = checked.model_dump(mode="json", by_alias=True, exclude_none=True)
    return result


def _entry(uuid: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{uuid}", "resource": resource}


def _adverse_event(
    ae: AdverseEventRecord, uuid: str, study_id: str, subject_ids: dict[str, str]
) -> dict[str, Any]:
    serious = bool(ae.serious_criteria)
    known = OUTCOMES.get(outcome(ae))
    resource: dict[str, Any] = {
        "resourceType": "AdverseEvent",
        "id": uuid,
        "identifier": [{"system": AE_SYSTEM, "value": ae.ae_id}],
        "status": "completed" if known is not None and known[0] != "recovering" else "in-progress",
        "actuality": "actual",
        "subject": {"reference": f"urn:uuid:{subject_ids[ae.subject_id]}"},
        "study": [{"reference": f"urn:uuid:{study_id}"}],
        "code": {"text": ae.term},
        "occurrenceDateTime": ae.onset_at.isoformat(),
        "seriousness": {"coding": [{
            "system": SERIOUSNESS,
            "code": "serious" if serious else "non-serious",
            "display": "Serious" if serious else "Non-serious",
        }]},
        "expectedInResearchStudy": ae.expected,
        "suspectEntity": [{
            "instanceCodeableConcept": {"text": "investigational CAR T-cell product"},
            "causality": {
                "assessmentMethod": {"text": "investigator attribution"},
                "entityRelatedness": {"text": ae.attribution},
            },
        }],
    }
    if known is not None:
        resource["outcome"] = [{"coding": [{"system": OUTCOME, "code": known[0],
                                            "display": known[1]}]}]
    return resource
