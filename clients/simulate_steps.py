"""The simulation's steps and one treated subject's path, apheresis to the end of follow-up.

Times come from the journey's calendar (``clients.journey_steps.CALENDAR``: apheresis on day
7, release on day 27, conditioning on days 30-32, infusion on day 35) and from the offsets
below after the infusion; a re-collected lot runs the same calendar ``RECOLLECTION_DAYS``
later. Nothing here reads a clock or draws a random number: ``Patient`` carries what the seed
decided (``clients.simulate_plan``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clients.journey_steps import PASSING_QC, QC_SPACING, Cohort, lot_id_of, moment
from services.safety.dlt import window_ends_at
from trial.calendar import calendar_day
from trial.config import TrialConfig

TRIAL_START = datetime(2025, 1, 6, tzinfo=UTC)
"""Day 0 of the simulated calendar (a Monday, at midnight UTC)."""
SITE = "MSK"
RECOLLECTION_DAYS = 14
"""A failed lot's subject is collected again this many days after the first apheresis."""
OOS_VIABILITY = 62.0
"""The out-of-specification lot's viability (%), below the trial file's release minimum."""

CRS_OBSERVATIONS: dict[int, tuple[dict[str, Any], str]] = {
    1: ({"temperature_c": 38.6}, "fever"),
    2: ({"temperature_c": 39.0, "hypotension": "no-vasopressor"}, "fever, fluids only"),
    3: ({"temperature_c": 39.4, "hypotension": "one-vasopressor"}, "fever, one vasopressor"),
    4: (
        {
            "temperature_c": 39.8,
            "hypotension": "multiple-vasopressors",
            "hypoxia": "positive-pressure",
        },
        "fever, two vasopressors, BiPAP",
    ),
}
"""ASTCT observations by the grade services/safety/grading.py gives them, with a short text."""
ICANS_OBSERVATIONS: dict[int, tuple[dict[str, Any], str]] = {
    1: ({"ice_score": 8}, "ICE score 8"),
    2: ({"ice_score": 5, "consciousness": "voice"}, "ICE score 5, wakes to voice"),
    4: ({"ice_score": 0, "consciousness": "unrousable"}, "ICE score 0, unrousable"),
}
CRS_TERM = "Cytokine release syndrome"
ICANS_TERM = "Immune effector cell-associated neurotoxicity syndrome"
SUSAR_TERM = "Myocarditis"
SEROSITIS_TERM = "Peritonitis"

# After the infusion (day 0 of the DLT window):
CRS_ONSET = timedelta(hours=16)
ICANS_ONSET = timedelta(days=3, hours=4)
SUSAR_ONSET = timedelta(days=9)
SEROSITIS_ONSET = timedelta(days=12)
REPORTED_AFTER = timedelta(hours=4)
GRADED_AFTER = timedelta(hours=6)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Step:
    """One command of the public API at business time ``at`` (for ``review``: one read of the
    worker's dose-escalation recommendation); ``note`` is its progress line, if any."""

    at: datetime
    action: str
    subject_id: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    @property
    def day(self) -> int:
        """Day of the simulated calendar (``TRIAL_START`` is day 0)."""
        return (self.at.date() - TRIAL_START.date()).days

    @property
    def subject(self) -> str:
        """The subject of a step that needs one; a planning error for a step without."""
        if self.subject_id is None:
            raise ValueError(f"step {self.action!r} at {self.at.isoformat()} names no subject")
        return self.subject_id


@dataclass
class Patient:
    """One subject's fate, as the seed decided it."""

    block: int
    role: str  # treated | screen-failure | withdrawn
    failure: str | None = None  # msln | ecog | labs | consent-declined
    dlt: str | None = None  # crs-3-not-improved | crs-4 | icans-4
    crs: int = 1
    crs_improves: bool = False
    """A grade 3 CRS that improves within 72 h: adjudicated, not a DLT."""
    icans: int | None = None
    susar: bool = False
    serositis: bool = False
    late_withdrawal: bool = False
    lot_event: str | None = None  # manufacturing-failure | out-of-specification
    weight_kg: float = 70.0
    height_cm: float = 170.0
    msln: float = 60.0
    dose_factor: float = 1.0
    start: datetime = TRIAL_START
    """Midnight of the subject's day 0 (registration)."""
    subject_id: str = ""


def sci(number: float) -> str:
    """``7.2e7``: a cell count or a dose per kg, short."""
    mantissa, exponent = f"{number:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


Add = Callable[..., None]
"""``add(at, action, subject_id, note=None, **args)``: appends one step."""


def treated_steps(add: Add, trial: TrialConfig, p: Patient, cohort: Cohort) -> datetime:
    """Apheresis to follow-up for an enrolled subject; returns the DLT evaluation's time."""
    shift = 0
    if p.lot_event == "manufacturing-failure":
        _lot(add, trial, p, cohort, "A", 0, fails=True)
        shift = RECOLLECTION_DAYS
    infused_at = _lot(add, trial, p, cohort, "B" if shift else "A", shift)
    evaluated_at = _adverse_events(add, trial, p, cohort, infused_at)
    if p.late_withdrawal:
        add(
            evaluated_at + timedelta(days=30),
            "withdraw",
            p.subject_id,
            note=f"{p.subject_id} withdrawn after treatment (disease progression): the "
            "slot stays counted against the cohort and the trial's maximum",
            reason_code="disease-progression",
        )
    return evaluated_at


def _lot(add, trial, p: Patient, cohort: Cohort, suffix: str, shift: int, fails=False):
    s, lot = p.subject_id, lot_id_of(p.subject_id, suffix)

    def at(name: str, days: int = 0) -> datetime:
        return moment(p.start, name, days=shift + days)

    again = " (re-collection)" if suffix != "A" else ""
    add(at("apheresis"), "apheresis", s, note=f"{s} apheresis{again}; lot {lot}", lot=suffix)
    add(at("custody-to-courier"), "custody-to-courier", s, lot=suffix)
    add(at("receive-apheresis"), "receive-apheresis", s, lot=suffix)
    for name in ("activation", "gene-transfer", "expansion"):
        add(at(name), name, s, lot=suffix)
    if fails:
        add(
            at("expansion", 3),
            "manufacturing-failure",
            s,
            note=f"{lot} manufacturing failure (insufficient expansion): {s} will be "
            f"collected again in {RECOLLECTION_DAYS - 3} days",
            lot=suffix,
            reason_code="insufficient-expansion",
        )
        return at("expansion", 3)
    add(at("harvest"), "harvest", s, lot=suffix)
    cell_dose = float(round(cohort.cells_per_kg * p.weight_kg * p.dose_factor))
    results: dict[str, Any] = {**PASSING_QC, "cell_dose": cell_dose}
    oos = p.lot_event == "out-of-specification"
    if oos:
        results["viability"] = OOS_VIABILITY
    for i, (test, result) in enumerate(results.items()):
        add(at("qc") + i * QC_SPACING, "qc", s, lot=suffix, test=test, result=result)
    minimum = trial.release.viability_min_percent
    released = f"{lot} released: all {len(results)} release tests passed"
    failed = f"{lot} out of specification: viability {OOS_VIABILITY:g}% < {minimum:g}%"
    add(at("disposition"), "disposition", s, note=failed if oos else released, lot=suffix)
    if oos:
        for role in ("investigator", "sponsor"):
            note = None
            if role == "sponsor":
                note = f"{lot} exceptionally released: the investigator and the sponsor approve"
            add(
                at(f"exceptional-release-{role}"),
                "exceptional-release",
                s,
                note,
                lot=suffix,
                role=role,
            )
    for name in ("cryopreserve", "ship", "receive-at-site", "reconfirm-eligibility"):
        add(at(name), name, s, lot=suffix)
    for day in range(1, trial.conditioning.days + 1):
        add(at("conditioning", day), "conditioning", s, lot=suffix, day=day)
    add(at("thaw"), "thaw", s, lot=suffix)
    add(at("bedside-investigator"), "bedside", s, lot=suffix, role="investigator")
    add(at("bedside-coordinator"), "bedside", s, lot=suffix, role="site_coordinator")
    add(
        at("infuse"),
        "infuse",
        s,
        note=f"{s} infused at {cohort.dose_level} ({sci(cell_dose)} cells, {p.weight_kg:g} kg)",
        lot=suffix,
        cells_infused=cell_dose,
    )
    return at("infuse")


def _adverse_events(add, trial, p: Patient, cohort: Cohort, infused: datetime) -> datetime:
    """The subject's AEs, numbered in the order they are reported, their grading, improvement
    and adjudication; returns when the DLT evaluation closes."""
    s = p.subject_id
    numbers = iter(range(1, 10))

    def report(onset: datetime, term: str, grade: int, note=None, **assessment) -> str:
        ae_id = f"AE-{s}-{next(numbers):02d}"
        add(
            onset + REPORTED_AFTER,
            "report-ae",
            s,
            note=note,
            ae_id=ae_id,
            term=term,
            grade=grade,
            onset_at=onset,
            **assessment,
        )
        return ae_id

    evaluation: datetime | None = None

    def adjudicate(ae_id: str, at: datetime, verdict: str, note: str) -> None:
        nonlocal evaluation
        add(at, "adjudicate-dlt", s, note=note, ae_id=ae_id, verdict=verdict)
        if verdict == "dlt":
            evaluation = at + HOUR

    onset = infused + CRS_ONSET
    crs = report(onset, CRS_TERM, 1, serious_criteria=["hospitalisation"])
    graded = onset + GRADED_AFTER
    observation, seen = CRS_OBSERVATIONS[p.crs]
    add(
        graded,
        "grade-crs",
        s,
        note=f"{s} CRS grade {p.crs} (ASTCT: {seen})",
        ae_id=crs,
        observation=observation,
        grade=p.crs,
    )
    if p.crs == 3:
        hours = 48 if p.crs_improves else 96
        improved = graded + timedelta(hours=hours)
        add(improved + HOUR, "record-improvement", s, ae_id=crs, improved_at=improved)
        limit = trial.dlt.crs_or_icans_grade3_resolution_hours
        if p.crs_improves:
            adjudicate(
                crs,
                improved + 2 * HOUR,
                "not-dlt",
                f"{s} grade 3 CRS improved after {hours} h, within {limit} h: not a DLT",
            )
        else:
            adjudicate(
                crs,
                improved + 2 * HOUR,
                "dlt",
                f"{s} DLT: grade 3 CRS improved only after {hours} h (limit {limit} h)",
            )
    elif p.crs == 4:
        adjudicate(crs, graded + timedelta(days=1), "dlt", f"{s} DLT: grade 4 CRS")
    if p.icans is not None:
        onset = infused + ICANS_ONSET
        serious = ["hospitalisation"] if p.icans > 1 else []
        icans = report(onset, ICANS_TERM, 1, serious_criteria=serious)
        observation, seen = ICANS_OBSERVATIONS[p.icans]
        graded = onset + GRADED_AFTER
        add(
            graded,
            "grade-icans",
            s,
            note=f"{s} ICANS grade {p.icans} (ASTCT: {seen})",
            ae_id=icans,
            observation=observation,
            grade=p.icans,
        )
        if p.icans == 4:
            adjudicate(icans, graded + timedelta(days=1), "dlt", f"{s} DLT: grade 4 ICANS")
    if p.susar:
        _susar(add, trial, p, report, adjudicate, infused)
    if p.serositis:
        report(
            infused + SEROSITIS_ONSET,
            SEROSITIS_TERM,
            2,
            note=f"{s} peritonitis grade 2: serositis, an AE of special interest",
            serious_criteria=[],
            attribution="possible",
        )
    if evaluation is None:
        evaluation = window_ends_at(infused, trial.dlt.window_days, trial.zone()) + HOUR
        note = f"{s} DLT evaluation closed at {cohort.dose_level}: no DLT in the window"
    else:
        note = f"{s} DLT evaluation closed at {cohort.dose_level} with a DLT"
    add(evaluation, "dlt-evaluation", s, note=note)
    return evaluation


def _susar(add, trial, p: Patient, report, adjudicate, infused: datetime) -> None:
    """A serious, unexpected, possibly related myocarditis: the 15-day clock runs from the
    safety officer's determination; the report goes in 9 days later."""
    s = p.subject_id
    onset = infused + SUSAR_ONSET
    ae_id = report(
        onset,
        SUSAR_TERM,
        3,
        note=f"{s} myocarditis grade 3: serious (hospitalisation), unexpected, possibly "
        "related: a suspected adverse reaction",
        serious_criteria=["hospitalisation"],
        attribution="possible",
        expected=False,
    )
    received = onset + REPORTED_AFTER
    determined = received + timedelta(days=2)
    due = calendar_day(determined, trial.zone()) + timedelta(
        days=trial.reporting.serious_unexpected_days
    )
    add(
        determined,
        "determine-expedited-report",
        s,
        note=f"{ae_id} qualifies for expedited reporting: the 15-day report is due on {due}",
        ae_id=ae_id,
    )
    improved = onset + timedelta(days=4)
    add(improved + HOUR, "record-improvement", s, ae_id=ae_id, improved_at=improved)
    days = trial.dlt.other_resolution_days
    adjudicate(
        ae_id,
        improved + 2 * HOUR,
        "not-dlt",
        f"{s} grade 3 myocarditis improved within {days} days: not a DLT",
    )
    submitted = determined + timedelta(days=9)
    add(
        submitted,
        "submit-expedited-report",
        s,
        note=f"{ae_id} 15-day IND safety report submitted, due {due}: on time",
        ae_id=ae_id,
        report="15-day",
        reference=f"IND-SR-{s}-15D",
        due_on=due.isoformat(),
    )
