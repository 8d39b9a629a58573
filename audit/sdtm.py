"""The adverse events of the log as the CDISC SDTM AE domain, written as a SAS XPORT version 5
file (the format FDA takes study data in).

The mapping follows the SDTM Implementation Guide v3.4 (CDISC 2021), section 6.2 "Models for
Events Domains", Adverse Events (AE), one record per adverse event per subject:

- ``STUDYID`` the trial id; ``DOMAIN`` "AE"; ``USUBJID`` the trial id and the pseudonymous
  subject id joined by "-" (unique across studies); ``AESEQ`` 1, 2, ... per subject in onset
  order; ``AESPID`` the AE id the log knows it by.
- ``AETERM`` the reported CTCAE term. ``AEDECOD`` (the MedDRA preferred term) is left out: the
  log holds no MedDRA coding, and none is invented.
- ``AETOXGR`` the current grade: CTCAE v5.0 for a reported AE, raised by an ASTCT CRS or ICANS
  grading (Lee et al. 2019) and set by a regrading, as the safety context folds them
  (services/safety/state.py). ``AESEV`` (mild/moderate/severe) is left out: SDTMIG 6.2 says
  oncology studies grading on CTCAE use ``AETOXGR``.
- ``AESER`` "Y" when at least one 21 CFR 312.32(a) criterion is met, with the criterion flags
  ``AESDTH``, ``AESLIFE``, ``AESHOSP``, ``AESDISAB``, ``AESCONG``, ``AESMIE`` ("Y"/"N").
- ``AEREL`` the investigator's attribution to the CAR T-cell product in sponsor-defined terms
  (:data:`RELATEDNESS`).
- ``AESTDTC`` the onset, ``AEENDTC`` the time the AE resolved (an ``AdverseEventImproved`` with
  outcome "resolved"), both ISO 8601 (SDTMIG 4.4.2) on the clock they were recorded on (the
  site's, as collected), to the second.
- ``AEOUT`` where known: "FATAL" at grade 5, "RECOVERED/RESOLVED" when resolved,
  "RECOVERING/RESOLVING" when improved to grade <= 2; else empty (the log does not say that an
  AE is not recovering, only that nothing was recorded).

No free text is exported: reasons and summaries stay in the log. The XPORT v5 limits (SAS
Technical Support TS-140, "The Record Layout of a Data Set in SAS Transport (XPORT) Format";
FDA Study Data Technical Conformance Guide, section 3.3.1): dataset and variable names at most
8 characters, labels at most 40, character values at most 200 bytes; :func:`check_limits`
refuses a dataset that breaks them before a file is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from events.registry import Recorded
from events.safety import (
    Attribution,
    SeriousnessCriterion,
)
from services.safety.state import evolve, initial_state

CONTEXTS = ("safety",)
DATASET = "AE"
MAX_NAME = 8
MAX_LABEL = 40
MAX_CHARS = 200

RELATEDNESS: dict[Attribution, str] = {
    "unrelated": "NOT RELATED",
    "unlikely": "UNLIKELY RELATED",
    "possible": "POSSIBLY RELATED",
    "probable": "PROBABLY RELATED",
    "definite": "DEFINITELY RELATED",
}
CRITERION_FLAGS: dict[SeriousnessCriterion, str] = {
    "death": "AESDTH",
    "life-threatening": "AESLIFE",
    "hospitalisation": "AESHOSP",
    "disability": "AESDISAB",
    "congenital-anomaly": "AESCONG",
    "important-medical-event": "AESMIE",
}
LABELS: dict[str, str] = {
    "STUDYID": "Study Identifier",
    "DOMAIN": "Domain Abbreviation",
    "USUBJID": "Unique Subject Identifier",
    "AESEQ": "Sequence Number",
    "AESPID": "Sponsor-Defined Identifier",
    "AETERM": "Reported Term for the Adverse Event",
    "AETOXGR": "Standard Toxicity Grade",
    "AESER": "Serious Event",
    "AESDTH": "Results in Death",
    "AESLIFE": "Is Life Threatening",
    "AESHOSP": "Requires or Prolongs Hospitalization",
    "AESDISAB": "Persist or Signif Disability/Incapacity",
    "AESCONG": "Congenital Anomaly or Birth Defect",
    "AESMIE": "Other Medically Important Serious Event",
    "AEREL": "Causality",
    "AEOUT": "Outcome of Adverse Event",
    "AESTDTC": "Start Date/Time of Adverse Event",
    "AEENDTC": "End Date/Time of Adverse Event",
}
VARIABLES = tuple(LABELS)


@dataclass(frozen=True)
class AdverseEventRecord:
    """One AE as the log says it is now, with what the exports need."""

    ae_id: str
    subject_id: str
    term: str
    grade: int
    serious_criteria: tuple[SeriousnessCriterion, ...]
    attribution: Attribution
    expected: bool
    onset_at: datetime
    improved: str | None = None  # "grade-2-or-less" or "resolved"
    improved_at: datetime | None = None
    dlt_verdict: str | None = None


def adverse_events(events: Iterable[Recorded]) -> list[AdverseEventRecord]:
    """Every reported AE as the safety context knows it now: the safety events folded by the
    safety service's own ``evolve`` (grades only raised by CRS/ICANS gradings, death added at
    grade 5, regrades, improvements, adjudications), so the export and the service agree."""
    state = initial_state
    for recorded in events:
        if recorded.payload.context == "safety":
            state = evolve(state, recorded.payload)
    found = [
        AdverseEventRecord(
            ae.ae_id, ae.subject_id, ae.term, ae.grade, ae.serious_criteria, ae.attribution,
            ae.expected, ae.onset_at,
            improved=("resolved" if ae.resolved_at is not None
                      else "grade-2-or-less" if ae.improved_at is not None else None),
            improved_at=ae.resolved_at or ae.improved_at,
            dlt_verdict=ae.verdict,
        )
        for ae in state.adverse_events.values()
    ]
    return sorted(found, key=lambda ae: (ae.subject_id, ae.onset_at, ae.ae_id))


def iso(moment: datetime) -> str:
    """ISO 8601 to the second on the time's own clock, as SDTMIG 4.4.2 writes date/times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def outcome(ae: AdverseEventRecord) -> str:
    if ae.grade == 5:
        return "FATAL"
    if ae.improved == "resolved":
        return "RECOVERED/RESOLVED"
    if ae.improved == "grade-2-or-less":
        return "RECOVERING/RESOLVING"
    return ""


def ae_rows(aes: Iterable[AdverseEventRecord], trial_id: str) -> list[dict[str, Any]]:
    """The AE domain's records, ``AESEQ`` numbered per subject in the order given."""
    rows: list[dict[str, Any]] = []
    seq: dict[str, int] = {}
    for ae in aes:
        seq[ae.subject_id] = seq.get(ae.subject_id, 0) + 1
        row: dict[str, Any] = {
            "STUDYID": trial_id,
            "DOMAIN": DATASET,
            "USUBJID": f"{trial_id}-{ae.subject_id}",
            "AESEQ": float(seq[ae.subject_id]),
            "AESPID": ae.ae_id,
            "AETERM": ae.term,
            "AETOXGR": str(ae.grade),
            "AESER": "Y" if ae.serious_criteria else "N",
        }
        for criterion, flag in CRITERION_FLAGS.items():
            row[flag] = "Y" if criterion in ae.serious_criteria else "N"
        row |= {
            "AEREL": RELATEDNESS[ae.attribution],
            "AEOUT": outcome(ae),
            "AESTDTC": iso(ae.onset_at),
            "AEENDTC": iso(ae.improved_at)
            if ae.improved == "resolved" and ae.improved_at is not None
            else "",
        }
        rows.append(row)
    return rows


class XportLimitError(ValueError):
    """A name, label or value the XPORT version 5 format cannot hold."""


def check_limits(rows: list[dict[str, Any]], labels: dict[str, str], dataset: str) -> None:
    problems = [f"dataset name {dataset!r} is longer than {MAX_NAME}"] if len(dataset) > 8 else []
    for name, label in labels.items():
        if len(name) > MAX_NAME:
            problems.append(f"variable name {name!r} is longer than {MAX_NAME}")
        if len(label) > MAX_LABEL:
            problems.append(f"label of {name} is longer than {MAX_LABEL}: {label!r}")
    for number, row in enumerate(rows, 1):
        for name, value in row.items():
            if isinstance(value, str) and len(value.encode()) > MAX_CHARS:
                problems.append(f"record {number}: {name} is longer than {MAX_CHARS} bytes")
    if problems:
        raise XportLimitError("; ".join(problems))


def write_xpt(rows: list[dict[str, Any]], path: Path) -> None:
    """``rows`` as the SAS XPORT v5 dataset "AE" (ReadStat's writer, through pyreadstat)."""
    import pandas as pd
    import pyreadstat

    check_limits(rows, LABELS, DATASET)
    frame = pd.DataFrame(rows, columns=list(VARIABLES))
    frame["AESEQ"] = frame["AESEQ"].astype("float64")
    pyreadstat.write_xport(
        frame, str(path), file_label="Adverse Events", column_labels=dict[str, str | None](LABELS),
        table_name=DATASET, file_format_version=5,
    )
