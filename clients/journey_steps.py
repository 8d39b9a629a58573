"""What a journey sends: who sends each step, when it happens, and the values that pass.

The numbers here are a plausible calendar and plausible clinical values for one subject; every
threshold they must meet comes from the trial file (``trialops/trials/nct06623396.json``) and
the deciders (``services/*``), never from here. Nothing reads a clock: every business time is
``clock_start`` plus an offset of this calendar.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.dosing.bsa import conditioning_doses, mosteller_bsa_m2
from services.manufacturing.identifiers import with_check_character
from trial.config import TrialConfig

# Bearer tokens of the demo users (services/auth.py: one user per role).
COORDINATOR = "demo-site_coordinator"
INVESTIGATOR = "demo-investigator"
MANUFACTURING_QA = "demo-manufacturing_qa"
SPONSOR = "demo-sponsor"

COURIER = "cryo courier"
FACILITY = "cell therapy manufacturing facility"

ROUTE_CODES = {"intraperitoneal": "IP", "intravenous": "IV"}

CALENDAR: dict[str, tuple[int, int, int]] = {
    # step: (study day from clock_start, hour, minute)
    "register": (0, 9, 0),
    "prescreen": (0, 10, 0),
    "consent": (1, 10, 0),
    "screening-started": (2, 8, 0),
    "assess-eligibility": (4, 14, 0),
    "enroll": (5, 10, 0),
    "apheresis": (7, 8, 0),
    "custody-to-courier": (7, 13, 0),
    "receive-apheresis": (8, 9, 0),
    "activation": (8, 11, 0),
    "gene-transfer": (9, 10, 0),
    "expansion": (10, 10, 0),
    "harvest": (18, 10, 0),
    "qc": (19, 9, 0),  # one result every QC_SPACING, in the release specification's order
    "disposition": (27, 14, 0),
    "exceptional-release-investigator": (28, 9, 0),
    "exceptional-release-sponsor": (28, 11, 0),
    "cryopreserve": (28, 15, 0),
    "ship": (29, 8, 0),
    "receive-at-site": (29, 18, 0),
    "reconfirm-eligibility": (29, 19, 0),
    "conditioning": (29, 9, 0),  # day k of conditioning on study day 29 + k: days -5, -4, -3
    "thaw": (35, 8, 30),
    "bedside-investigator": (35, 9, 0),
    "bedside-coordinator": (35, 9, 5),
    "infuse": (35, 10, 0),
    "ae-onset": (36, 2, 0),
    "report-ae": (36, 6, 0),
    "grade-crs": (36, 8, 0),
    "adjudicate-dlt": (40, 10, 0),
    "dlt-evaluation-after-dlt": (40, 11, 0),
}
"""Apheresis on day 7, release on day 27, conditioning on days 30-32 (-5..-3), infusion on
day 35 (day 0 of the DLT window), CRS from day 36. The deciders check the order where it
matters: consent before screening, conditioning days one after another, both bedside checks
and the last conditioning day before the infusion, AE times after the onset."""
QC_SPACING = timedelta(hours=12)
RECORDED_AFTER = timedelta(hours=1)
"""How long after an observation (an improvement) it is recorded."""

ELIGIBLE: dict[str, Any] = {
    "peritoneal_carcinomatosis_by": ["imaging", "cytology"],
    "prior_lines": 2,
    "recist_lesion": "measurable",
    "age_years": 58,
    "ecog": 1,
    "labs": {
        "absolute_neutrophil_count_10e9_per_l": 2.4,
        "platelets_10e9_per_l": 210.0,
        "hemoglobin_g_per_dl": 11.5,
        "creatinine_clearance_ml_per_min": 82.0,
        "total_bilirubin_x_uln": 0.8,
        "alt_x_uln": 1.0,
    },
    "active_infection": False,
}
"""Evidence that meets every criterion of the shipped trial file."""

PASSING_QC: dict[str, Any] = {
    "viability": 86.0,
    "car_expression": 34.0,
    "vector_copy_number": 2.1,
    "endotoxin": 0.5,
    "sterility": "negative",
    "mycoplasma": "negative",
    "replication_competent_retrovirus": "negative",
    "identity": "confirmed",
    "cell_dose": None,  # the lot's target x CELL_DOSE_FACTOR, known once manufacturing started
}
"""Every release test, in the order of the release specification, with a passing result: a
number for a measured test, an outcome for the others."""
CELL_DOSE_FACTOR = 1.04

GRADE_3_CRS = {"temperature_c": 39.4, "hypotension": "one-vasopressor", "hypoxia": "low-flow"}
"""ASTCT grade 3: fever with hypotension needing one vasopressor."""


@dataclass(frozen=True, slots=True)
class Cohort:
    cohort_id: str
    dose_level: str
    cells_per_kg: float
    route: str


def cohort_of(trial: TrialConfig, dose_level: str, cohort_id: str | None = None) -> Cohort:
    """The trial file's dose and route for ``dose_level``; the id defaults to e.g. DL1-IP."""
    dose = trial.dose_level(dose_level)
    return Cohort(
        cohort_id or f"{dose.level}-{ROUTE_CODES[dose.route]}",
        dose.level,
        dose.cells_per_kg,
        dose.route,
    )


def moment(clock_start: datetime, step: str, *, days: int = 0) -> datetime:
    day, hour, minute = CALENDAR[step]
    return clock_start + timedelta(days=day + days, hours=hour, minutes=minute)


def lot_id_of(subject_id: str, suffix: str = "A") -> str:
    return f"LOT-{subject_id}-{suffix}"


def identifiers(subject_id: str, lot_suffix: str, year: int) -> tuple[str, str]:
    """The chain-of-identity id and the apheresis bag's DIN, in ISBT 128 form with their ISO
    7064 check characters: two facility codes (COI issuer W1234, collection site A9999), the
    two-digit year and a six-digit sequence derived from the subject id and the lot."""
    digest = hashlib.sha256(f"{subject_id}/{lot_suffix}".encode()).hexdigest()
    sequence = f"{int(digest, 16) % 1_000_000:06d}"
    yy = f"{year % 100:02d}"
    return (
        with_check_character(f"W1234{yy}{sequence}"),
        with_check_character(f"A9999{yy}{sequence}"),
    )


def conditioning_day_doses(
    trial: TrialConfig, height_cm: float, weight_kg: float
) -> tuple[float, float]:
    """Fludarabine and cyclophosphamide mg for one day: mg/m^2/day x Mosteller BSA, rounded
    to 0.1 mg as a pharmacy would."""
    regimen = trial.conditioning
    doses = conditioning_doses(
        mosteller_bsa_m2(height_cm, weight_kg),
        regimen.fludarabine_mg_per_m2_per_day,
        regimen.cyclophosphamide_mg_per_m2_per_day,
    )
    return round(doses.fludarabine_mg, 1), round(doses.cyclophosphamide_mg, 1)


def qc_body(test: str, result: Any) -> dict[str, Any]:
    """``value`` for a measured result, ``outcome`` for a named one."""
    if isinstance(result, str):
        return {"test": test, "outcome": result}
    return {"test": test, "value": float(result)}


class ProductSteps:
    """The product's path, apheresis to infusion: the manufacturing and dosing steps of a
    ``clients.journey.Journey`` (which provides ``_send``, ``when`` and the subject's facts)."""

    # The subject's facts, set by ``Journey``.
    subject_id: str
    site_id: str
    lot_id: str
    coi_id: str
    collection_site: str
    custodian: str
    weight_kg: float
    height_cm: float
    trial: TrialConfig
    cohort: Cohort | None
    cell_dose: float | None
    infused_at: datetime | None
    done: list[str]

    # The plumbing, provided by ``Journey``.
    def when(self, step: str, at: datetime | None = None, *, days: int = 0) -> datetime:
        raise NotImplementedError

    def _send(
        self, step: str, path: str, body: dict[str, Any], token: str, at: datetime
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _subject(self) -> dict[str, str]:
        raise NotImplementedError

    def _lot(self) -> dict[str, str]:
        raise NotImplementedError

    def _handoff(
        self,
        step: str,
        path: str,
        to_party: str,
        location: str,
        temperature_c: float,
        token: str,
        at: datetime | None,
        **extra: Any,
    ) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def target_cells(self) -> float:
        raise NotImplementedError

    # ------------------------------------------------------------------ manufacturing

    def apheresis(self, at: datetime | None = None, **measured: Any) -> dict:
        body = {
            **self._subject(),
            **self._lot(),
            "collection_site": self.collection_site,
            "volume_ml": 250.0,
            "total_nucleated_cells": 1.2e10,
            "cd3_cells": 4.8e9,
            "weight_kg": self.weight_kg,
            **measured,
        }
        at = self.when("apheresis", at)
        answer = self._send("apheresis", "/manufacturing/apheresis", body, COORDINATOR, at)
        self.custodian = self.collection_site
        return answer

    def custody_to_courier(self, at: datetime | None = None) -> dict:
        return self._handoff(
            "custody-to-courier",
            "/manufacturing/custody-transfers",
            COURIER,
            self.collection_site,
            4.0,
            COORDINATOR,
            at,
        )

    def receive_apheresis(self, at: datetime | None = None) -> dict:
        return self._handoff(
            "receive-apheresis",
            "/manufacturing/apheresis-receipts",
            FACILITY,
            FACILITY,
            5.0,
            MANUFACTURING_QA,
            at,
        )

    def start_step(self, step: str = "activation", at: datetime | None = None) -> dict:
        """Activation fixes the target: the cohort's cells/kg x the weight at collection."""
        body = {"lot_id": self.lot_id, "step": step}
        path = "/manufacturing/manufacturing-steps"
        return self._send(step, path, body, MANUFACTURING_QA, self.when(step, at))

    def manufacture(self) -> list[dict]:
        return [self.start_step(s) for s in ("activation", "gene-transfer", "expansion")]

    def harvest(self, total_viable_cells: float | None = None, at=None) -> dict:
        cells = total_viable_cells or self.target_cells * 1.5
        body = {"lot_id": self.lot_id, "total_viable_cells": cells}
        path = "/manufacturing/harvests"
        return self._send("harvest", path, body, MANUFACTURING_QA, self.when("harvest", at))

    def qc_result(self, test: str, result: Any, at: datetime | None = None) -> dict:
        """One release test: a number (viability %, ...) or an outcome ("negative-to-date")."""
        body = {"lot_id": self.lot_id, **qc_body(test, result)}
        at = self.when("qc", at)
        answer = self._send(f"qc:{test}", "/manufacturing/qc-results", body, MANUFACTURING_QA, at)
        if test == "cell_dose":
            self.cell_dose = float(result)
        return answer

    def qc_results(self, **results: Any) -> list[dict]:
        """Every release test not recorded yet, passing unless overridden: ``viability=60``
        is out of specification, ``sterility="negative-to-date"`` gives a conditional release."""
        unknown = set(results) - set(PASSING_QC)
        if unknown:
            raise ValueError(f"unknown release test(s) {sorted(unknown)}")
        chosen = {**PASSING_QC, **results}
        if chosen["cell_dose"] is None:
            chosen["cell_dose"] = round(self.target_cells * CELL_DOSE_FACTOR)
        first = self.when("qc")
        return [
            self.qc_result(test, result, first + i * QC_SPACING)
            for i, (test, result) in enumerate(chosen.items())
            if f"qc:{test}" not in self.done
        ]

    def disposition(self, at: datetime | None = None) -> dict:
        at = self.when("disposition", at)
        path = "/manufacturing/dispositions"
        return self._send("disposition", path, {"lot_id": self.lot_id}, MANUFACTURING_QA, at)

    def decide_exceptional_release(
        self, role: str, approve: bool = True, rationale: str | None = None, at=None
    ) -> dict:
        """One of the two decisions on an out-of-specification lot: ``investigator`` or
        ``sponsor`` (their demo users are two different people)."""
        token = {"investigator": INVESTIGATOR, "sponsor": SPONSOR}[role]
        body = {
            "lot_id": self.lot_id,
            "approve": approve,
            "rationale": rationale
            or "No alternative therapy; the deviation is judged not to affect safety.",
        }
        step = f"exceptional-release-{role}"
        path = "/manufacturing/exceptional-release-decisions"
        return self._send(step, path, body, token, self.when(step, at))

    def exceptional_release(self) -> list[dict]:
        return [self.decide_exceptional_release(r) for r in ("investigator", "sponsor")]

    def cryopreserve(self, bag_count: int = 2, at: datetime | None = None) -> dict:
        body = {"lot_id": self.lot_id, "bag_count": bag_count}
        path = "/manufacturing/cryopreservations"
        return self._send(
            "cryopreserve", path, body, MANUFACTURING_QA, self.when("cryopreserve", at)
        )

    def ship(self, at: datetime | None = None) -> dict:
        return self._handoff(
            "ship",
            "/manufacturing/shipments",
            COURIER,
            FACILITY,
            -150.0,
            MANUFACTURING_QA,
            at,
            destination_site=self.site_id,
        )

    def receive_at_site(self, at: datetime | None = None) -> dict:
        return self._handoff(
            "receive-at-site",
            "/manufacturing/site-receipts",
            f"{self.site_id} cell therapy lab",
            f"{self.site_id} cell therapy lab",
            -150.0,
            COORDINATOR,
            at,
            site_id=self.site_id,
        )

    def thaw(self, at: datetime | None = None) -> dict:
        return self._send(
            "thaw", "/manufacturing/thaws", self._lot(), COORDINATOR, self.when("thaw", at)
        )

    # ------------------------------------------------------------------ dosing

    def condition(self, day: int, at: datetime | None = None) -> dict:
        """Conditioning day ``day`` (1..3): doses from the body-surface area."""
        fludarabine, cyclophosphamide = conditioning_day_doses(
            self.trial, self.height_cm, self.weight_kg
        )
        body = {
            **self._subject(),
            "lot_id": self.lot_id,
            "day": day,
            "height_cm": self.height_cm,
            "weight_kg": self.weight_kg,
            "fludarabine_mg": fludarabine,
            "cyclophosphamide_mg": cyclophosphamide,
        }
        at = self.when("conditioning", at, days=day)
        return self._send(
            f"conditioning-day-{day}", "/dosing/conditioning-days", body, COORDINATOR, at
        )

    def conditioning(self) -> list[dict]:
        return [self.condition(d) for d in range(1, self.trial.conditioning.days + 1)]

    def verify_bedside_coi(self, token: str, at: datetime | None = None) -> dict:
        step = "bedside-investigator" if token == INVESTIGATOR else "bedside-coordinator"
        body = {**self._subject(), "lot_id": self.lot_id, "coi_id": self.coi_id}
        return self._send(step, "/dosing/bedside-checks", body, token, self.when(step, at))

    def bedside_checks(self) -> list[dict]:
        """By two different people: the investigator and the site coordinator."""
        return [self.verify_bedside_coi(t) for t in (INVESTIGATOR, COORDINATOR)]

    def infuse(self, cells_infused: float | None = None, at: datetime | None = None) -> dict:
        """The product's cell count (the lot's cell dose by default): within the tolerance of
        the cohort's cells/kg x the weight today."""
        if self.cohort is None:
            raise RuntimeError(f"{self.subject_id} is not enrolled: no cohort route known")
        body = {
            **self._subject(),
            "lot_id": self.lot_id,
            "weight_kg": self.weight_kg,
            "cells_infused": cells_infused or self.cell_dose or self.target_cells,
            "route": self.cohort.route,
        }
        at = self.when("infuse", at)
        answer = self._send("infuse", "/dosing/infusions", body, INVESTIGATOR, at)
        self.infused_at = at
        return answer
