"""Drive one subject through the whole path of the trial over the public HTTP command API.

A ``Journey`` sends one command per step, as the demo user whose role the trial file permits
for it, with the step's business time (``occurred_at``) taken from a calendar that starts at
``clock_start`` (see ``clients.journey_steps``); it never writes to a topic and never reads a
clock. Each step returns the service's 201 answer (the appended events and their positions)
or raises ``JourneyStepRefused`` naming the step, the status and the refusal.

    cohort = open_cohort(url, "DL1", occurred_at=start)
    journey = Journey(url, "MSK-0601", "MSK", start)
    journey.to_enrolled(cohort)
    journey.to_released_lot()
    journey.to_infused()
    journey.report_ae()          # CRS grade 1 the day after the infusion
    journey.grade_crs()          # ASTCT grade 3: fever, one vasopressor
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from clients import journey_steps as plan
from clients.http import call
from clients.journey_steps import (
    COORDINATOR,
    INVESTIGATOR,
    Cohort,
    ProductSteps,
    cohort_of,
)
from services.safety.dlt import window_ends_at
from trial.config import TrialConfig, load_trial

Transport = Callable[..., tuple[int, Any]]
"""``call(method, url, body, token=...)`` -> ``(status, answer)``: clients.http.call."""


class JourneyStepRefused(Exception):
    """A step was not accepted (any answer but 201); nothing was appended for it."""

    def __init__(self, step: str, status: int, answer: Any):
        self.step, self.status, self.answer = step, status, answer
        super().__init__(f"{step}: {status} {self.rule}: {self.message}")

    @property
    def rule(self) -> str | None:
        return self.answer.get("error") if isinstance(self.answer, dict) else None

    @property
    def message(self) -> str:
        return self.answer.get("message", "") if isinstance(self.answer, dict) else str(self.answer)


def signed_paths() -> dict[str, str]:
    """Command paths that need an electronic signature, and its meaning (services' routes)."""
    from services.catalog import services

    return {
        route.path: route.signature
        for spec in services().values()
        for route in spec.routes
        if route.signature
    }


def send(
    service_url: str, step: str, path: str, body: dict, token: str, transport: Transport = call
) -> dict:
    meaning = signed_paths().get(path)
    if meaning is not None:
        # The signer re-authenticates: a demo user's token is its password too.
        body = {**body, "signature": {"token": token, "meaning": meaning}}
    status, answer = transport("POST", f"{service_url}{path}", body, token=token)
    if status != 201:
        raise JourneyStepRefused(step, status, answer)
    return answer


def open_cohort(
    service_url: str,
    dose_level: str,
    *,
    occurred_at: datetime,
    cohort_id: str | None = None,
    recommendation_id: str | None = None,
    reason: str | None = None,
    trial: TrialConfig | None = None,
    transport: Transport = call,
) -> Cohort:
    """The investigators' review opens a cohort at a trial-file dose level. Only the first
    cohort, at the design's start level, needs no citation; any other must cite the
    recommendation it followed (``recommendation_id``) or give the reason it departs from it."""
    cohort = cohort_of(trial or load_trial(), dose_level, cohort_id)
    body: dict[str, Any] = {
        "cohort_id": cohort.cohort_id,
        "dose_level": dose_level,
        "occurred_at": occurred_at.isoformat(),
    }
    if recommendation_id is not None:
        body["recommendation_id"] = recommendation_id
    if reason is not None:
        body["reason"] = reason
    send(service_url, "open-cohort", "/enrollment/cohorts", body, INVESTIGATOR, transport)
    return cohort


class Journey(ProductSteps):
    """One subject's path. ``clock_start`` is day 0 of the calendar at midnight (any aware
    time; the calendar's day and wall-clock offsets are added to it); ``weight_kg`` and
    ``height_cm`` give the target cell count and the conditioning doses; ``lot_suffix`` names
    the lot (a new collection after a manufacturing failure needs a new one). Steps done are
    listed in ``done``; the ``to_*`` chains skip them. Every step takes ``at`` to override its
    business time."""

    def __init__(
        self,
        service_url: str,
        subject_id: str,
        site_id: str,
        clock_start: datetime,
        *,
        weight_kg: float = 72.0,
        height_cm: float = 170.0,
        lot_suffix: str = "A",
        trial: TrialConfig | None = None,
        transport: Transport = call,
    ):
        if clock_start.tzinfo is None:
            raise ValueError("clock_start needs a time zone")
        self.service_url, self.subject_id, self.site_id = service_url, subject_id, site_id
        self.clock_start = clock_start
        self.weight_kg, self.height_cm = weight_kg, height_cm
        self.trial = trial or load_trial()
        self.transport = transport
        self.lot_id = plan.lot_id_of(subject_id, lot_suffix)
        year = plan.moment(clock_start, "apheresis").year
        self.coi_id, self.din = plan.identifiers(subject_id, lot_suffix, year)
        self.cohort: Cohort | None = None
        self.collection_site = f"{site_id} apheresis unit"
        self.custodian = self.collection_site
        self.cell_dose: float | None = None
        self.infused_at: datetime | None = None
        self.ae_ids: list[str] = []
        self.crs_graded_at: dict[str, datetime] = {}
        self.dlt = False
        self.done: list[str] = []
        """Steps accepted so far, in order."""

    # ------------------------------------------------------------------ plumbing

    def when(self, step: str, at: datetime | None = None, *, days: int = 0) -> datetime:
        return at if at is not None else plan.moment(self.clock_start, step, days=days)

    def _send(
        self, step: str, path: str, body: dict[str, Any], token: str, at: datetime
    ) -> dict[str, Any]:
        answer = send(
            self.service_url,
            step,
            path,
            {**body, "occurred_at": at.isoformat()},
            token,
            self.transport,
        )
        self.done.append(step)
        return answer

    def _subject(self) -> dict[str, str]:
        return {"subject_id": self.subject_id}

    def _lot(self) -> dict[str, str]:
        return {"lot_id": self.lot_id, "coi_id": self.coi_id, "din": self.din}

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
        body = {
            **self._lot(),
            "from_party": self.custodian,
            "to_party": to_party,
            "location": location,
            "temperature_c": temperature_c,
            **extra,
        }
        answer = self._send(step, path, body, token, self.when(step, at))
        self.custodian = to_party
        return answer

    @property
    def target_cells(self) -> float:
        if self.cohort is None:
            raise RuntimeError(f"{self.subject_id} is not enrolled: no cohort dose known")
        return self.cohort.cells_per_kg * self.weight_kg

    # ------------------------------------------------------------------ enrollment

    def register(self, at: datetime | None = None) -> dict:
        body = {**self._subject(), "site_id": self.site_id}
        return self._send(
            "register", "/enrollment/subjects", body, COORDINATOR, self.when("register", at)
        )

    def prescreen(self, msln_ihc_percent: float = 60.0, at: datetime | None = None) -> dict:
        body = {**self._subject(), "msln_ihc_percent": msln_ihc_percent}
        at = self.when("prescreen", at)
        return self._send("prescreen", "/enrollment/prescreenings", body, COORDINATOR, at)

    def consent(self, form_version: str = "ICF-v1", at: datetime | None = None) -> dict:
        at = self.when("consent", at)
        body = {**self._subject(), "form_version": form_version, "signed_at": at.isoformat()}
        return self._send("consent", "/enrollment/consents", body, COORDINATOR, at)

    def assess_eligibility(self, at: datetime | None = None, **evidence: Any) -> dict:
        """Evidence that meets every criterion; a keyword overrides one (``ecog=3`` fails)."""
        started = self.when("screening-started").isoformat()
        body = {**self._subject(), **plan.ELIGIBLE, "screening_started_at": started, **evidence}
        at = self.when("assess-eligibility", at)
        path = "/enrollment/eligibility-assessments"
        return self._send("assess-eligibility", path, body, INVESTIGATOR, at)

    def enroll(
        self,
        cohort: Cohort | str,
        waitlist_if_full: bool = False,
        *,
        dose_level: str | None = None,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> dict:
        """Into ``cohort`` (from ``open_cohort``, or an id with its ``dose_level``)."""
        if isinstance(cohort, str):
            if dose_level is None:
                raise ValueError("enroll by cohort id needs its dose_level (or pass a Cohort)")
            cohort = cohort_of(self.trial, dose_level, cohort)
        body: dict[str, Any] = {
            **self._subject(),
            "cohort_id": cohort.cohort_id,
            "waitlist_if_full": waitlist_if_full,
        }
        if reason is not None:
            body["reason"] = reason
        answer = self._send(
            "enroll", "/enrollment/enrollments", body, COORDINATOR, self.when("enroll", at)
        )
        self.cohort = cohort
        return answer

    def reconfirm_eligibility(self, at: datetime | None = None) -> dict:
        body = {**self._subject(), "lot_id": self.lot_id}
        at = self.when("reconfirm-eligibility", at)
        path = "/enrollment/eligibility-reconfirmations"
        return self._send("reconfirm-eligibility", path, body, INVESTIGATOR, at)

    # ------------------------------------------------------------------ safety

    def report_ae(
        self,
        term: str = "Cytokine release syndrome",
        grade: int = 1,
        *,
        onset_at: datetime | None = None,
        at: datetime | None = None,
        **assessment: Any,
    ) -> dict:
        """A new AE, ``AE-<subject>-01`` then ``-02`` ... (its id is ``ae_ids[-1]``): CRS grade
        1, probably related, expected, serious by hospitalisation unless ``assessment`` says
        otherwise; the sponsor receives it when it is reported."""
        ae_id = f"AE-{self.subject_id}-{len(self.ae_ids) + 1:02d}"
        at = self.when("report-ae", at)
        body = {
            "ae_id": ae_id,
            **self._subject(),
            "term": term,
            "grade": grade,
            "onset_at": self.when("ae-onset", onset_at).isoformat(),
            "serious_criteria": ["hospitalisation"],
            "attribution": "probable",
            "expected": True,
            "sponsor_received_at": at.isoformat(),
            **assessment,
        }
        answer = self._send("report-ae", "/safety/adverse-events", body, COORDINATOR, at)
        self.ae_ids.append(ae_id)
        return answer

    def grade_crs(
        self, ae_id: str | None = None, observation: dict | None = None, at: datetime | None = None
    ) -> dict:
        """An ASTCT observation (grade 3 by default: fever, one vasopressor)."""
        ae_id = ae_id or self.ae_ids[-1]
        at = self.when("grade-crs", at)
        body = {"ae_id": ae_id, "observation": observation or plan.GRADE_3_CRS}
        answer = self._send("grade-crs", "/safety/crs-grades", body, INVESTIGATOR, at)
        self.crs_graded_at.setdefault(ae_id, at)
        return answer

    def record_improvement(
        self,
        ae_id: str | None = None,
        after: timedelta = timedelta(hours=96),
        outcome: str = "grade-2-or-less",
        at: datetime | None = None,
    ) -> dict:
        """Improved to grade <= 2 ``after`` the first CRS grading (96 h: later than the 72 h
        of the DLT rule), recorded an hour later."""
        ae_id = ae_id or self.ae_ids[-1]
        improved_at = self.crs_graded_at.get(ae_id, self.when("grade-crs")) + after
        body = {"ae_id": ae_id, "outcome": outcome, "improved_at": improved_at.isoformat()}
        at = at or improved_at + plan.RECORDED_AFTER
        return self._send("record-improvement", "/safety/resolutions", body, COORDINATOR, at)

    def adjudicate_dlt(
        self,
        ae_id: str | None = None,
        verdict: str = "dlt",
        reason: str | None = None,
        at: datetime | None = None,
    ) -> dict:
        body: dict[str, Any] = {"ae_id": ae_id or self.ae_ids[-1], "verdict": verdict}
        if reason is not None:
            body["reason"] = reason
        at = self.when("adjudicate-dlt", at)
        answer = self._send("adjudicate-dlt", "/safety/dlt-adjudications", body, INVESTIGATOR, at)
        self.dlt = self.dlt or verdict == "dlt"
        return answer

    def close_dlt_evaluation(self, at: datetime | None = None) -> dict:
        """At once after an adjudicated DLT, else an hour after the window ends (the end of day
        28 in the sponsor's time zone, ``services.safety.dlt.window_ends_at``)."""
        if at is None and self.dlt:
            at = self.when("dlt-evaluation-after-dlt")
        elif at is None:
            infused = self.infused_at or self.when("infuse")
            ends = window_ends_at(infused, self.trial.dlt.window_days, self.trial.zone())
            at = ends + plan.RECORDED_AFTER
        return self._send(
            "dlt-evaluation", "/safety/dlt-evaluations", self._subject(), INVESTIGATOR, at
        )

    # ------------------------------------------------------------------ the path in one go

    def _steps(self, steps: list[tuple[str, Callable[[], Any]]]) -> None:
        for name, step in steps:
            if name not in self.done:
                step()

    def to_enrolled(self, cohort: Cohort | str, **enroll: Any) -> None:
        self._steps(
            [
                ("register", self.register),
                ("prescreen", self.prescreen),
                ("consent", self.consent),
                ("assess-eligibility", self.assess_eligibility),
                ("enroll", lambda: self.enroll(cohort, **enroll)),
            ]
        )

    def to_released_lot(self, **qc: Any) -> dict:
        """Apheresis to disposition; returns the disposition's answer (LotReleased, or
        LotOutOfSpecification when a result given in ``qc`` fails)."""
        self._steps(
            [
                ("apheresis", self.apheresis),
                ("custody-to-courier", self.custody_to_courier),
                ("receive-apheresis", self.receive_apheresis),
                ("activation", lambda: self.start_step("activation")),
                ("gene-transfer", lambda: self.start_step("gene-transfer")),
                ("expansion", lambda: self.start_step("expansion")),
                ("harvest", self.harvest),
                ("qc:cell_dose", lambda: self.qc_results(**qc)),
            ]
        )
        return self.disposition()

    def to_infused(self) -> dict:
        """From a released lot (dispositioned here if not yet) to the infusion's answer."""
        if "disposition" not in self.done:
            self.to_released_lot()
        self._steps(
            [
                ("cryopreserve", self.cryopreserve),
                ("ship", self.ship),
                ("receive-at-site", self.receive_at_site),
                ("reconfirm-eligibility", self.reconfirm_eligibility),
                *(
                    (f"conditioning-day-{d}", lambda d=d: self.condition(d))
                    for d in range(1, self.trial.conditioning.days + 1)
                ),
                ("thaw", self.thaw),
                ("bedside-investigator", lambda: self.verify_bedside_coi(INVESTIGATOR)),
                ("bedside-coordinator", lambda: self.verify_bedside_coi(COORDINATOR)),
            ]
        )
        return self.infuse()
