"""The simulated trial's plan: a pure function of the number of patients to treat and a seed.

``plan(patients, seed)`` lists every command of a whole phase I trial as ``Step``s in business-
time order, on a simulated calendar that starts on ``TRIAL_START`` (never the wall clock): the
same arguments give the same subjects, the same outcomes and the same business times. The
runner (``clients.simulate``) sends them through the public command API, one after another.

What the plan contains (DOMAIN.md sections 1-4):
- ``patients`` is the number of patients to *treat*: a multiple of the 3+3 cohort size (3),
  from 6 to the trial's maximum of treated patients (18). More subjects are screened: screen
  failures (MSLN below the threshold at pre-screening, ECOG 3; in longer trials also platelets
  below the limit and a declined consent) and a subject who withdraws consent after enrolment,
  before apheresis (the slot is released and taken by the next patient).
- Each treated subject follows the journey's calendar (``clients.simulate_steps``). One lot
  fails in expansion and its subject is collected again (lot B); one lot is out of
  specification (viability below the release minimum) and is infused after an exceptional
  release decided by the investigator and the sponsor. That is the simulator's documented
  choice: the patient keeps their slot and avoids a second apheresis; re-collection is shown
  by the manufacturing failure.
- Every treated subject has CRS graded from ASTCT observations (grades 1-4), some ICANS
  (grades 1, 2, 4); one a serositis (an AE of special interest); one a serious, unexpected,
  possibly related myocarditis whose 15-day report is submitted in time; one subject is
  withdrawn after their DLT evaluation (the treated slot stays counted).
- DLTs are placed per cohort (``design_path``) so that the trial file's 3+3 design recommends
  escalate, stay and de-escalate. After each cohort's last DLT evaluation a ``review`` step
  reads the worker's recommendation; the review's decisions (close, open, expand a cohort)
  follow and cite it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clients.journey_steps import ELIGIBLE, cohort_of, moment
from clients.simulate_steps import SITE, TRIAL_START, Patient, Step, sci, treated_steps
from trial.config import TrialConfig, load_trial

MIN_PATIENTS = 6
DLT_KINDS = ("crs-3-not-improved", "crs-4", "icans-4")
SCREEN_FAILURES = ("msln", "ecog", "labs", "consent-declined")
LOW_PLATELETS = 58.0


class PlanError(ValueError):
    """The simulation cannot be planned with these arguments (the message says why)."""


@dataclass(frozen=True)
class Block:
    """Three treated patients at ``level`` (a new cohort, or 3 more slots of an existing one),
    ``dlts`` of them with a DLT, and what the 3+3 design recommends after their evaluations."""

    level: str
    dlts: int
    expect: str
    next_level: str | None
    mtd_level: str | None = None


def design_path(treated: int, ladder: list[str]) -> list[Block]:
    """Cohorts of 3 and their DLTs for ``treated`` patients on the escalation ``ladder`` (the
    start level and the levels above it). The 3+3 rule (DOMAIN.md section 4) gives each
    ``expect``: 0/3 escalate; 1/3 stay (3 more at the dose); 2/6 (or 2/3) de-escalate, the
    lower dose with 3 patients being expanded to 6; <= 1/6 there, with the dose above over the
    MTD, stop with the lower dose as the MTD. 6 and 9 patients end on the de-escalation: the
    review expands the lower dose and the simulation's patient budget leaves its slots open."""
    k = treated // 3
    first, second = ladder[0], ladder[1]
    if k == 2:
        return [Block(first, 0, "escalate", second), Block(second, 2, "de-escalate", first)]
    if k == 3:
        return [
            Block(first, 0, "escalate", second),
            Block(second, 1, "stay", second),
            Block(second, 1, "de-escalate", first),
        ]
    up = k - 3
    top, below = ladder[up], ladder[up - 1]
    return [
        *(Block(ladder[i], 0, "escalate", ladder[i + 1]) for i in range(up)),
        Block(top, 1, "stay", top),
        Block(top, 1, "de-escalate", below),
        Block(below, 1, "stop", None, mtd_level=below),
    ]


def plan(patients: int, seed: int, trial: TrialConfig | None = None) -> list[Step]:
    """Every step of a simulated trial treating ``patients`` patients, in business-time order."""
    trial = trial or load_trial()
    path = design_path(patients, ladder(trial, patients))
    rng = random.Random(seed)
    return _Planner(trial, path, _cast(path, rng), rng).steps()


def ladder(trial: TrialConfig, patients: int) -> list[str]:
    """The escalation levels from the start level up, once ``patients`` is checked."""
    design = trial.escalation
    if design.design != "3+3" or design.accelerated_titration_levels:
        raise PlanError(
            f"the simulator plays the 3+3 design without accelerated titration; the trial "
            f"file's design is {design.design}"
        )
    size, maximum = design.cohort_size, design.max_patients
    if size != 3 or patients % size or not MIN_PATIENTS <= patients <= maximum:
        raise PlanError(
            f"--patients is the number of patients to treat: a multiple of the cohort size "
            f"({size}) from {MIN_PATIENTS} to the trial's maximum of {maximum}, not {patients}"
        )
    levels = [d.level for d in trial.ordered_levels() if not d.fallback]
    steps = levels[levels.index(design.start_level) :]
    needed = max(2, patients // size - 2)
    if len(steps) < needed:
        raise PlanError(f"{patients} patients need {needed} dose levels from the start level")
    return steps


def _cast(path: list[Block], rng: random.Random) -> list[list[Patient]]:
    """Who is who in each cohort, in the order they arrive."""
    k = len(path)
    blocks = [[Patient(b, "treated") for _ in range(3)] for b in range(k)]
    for block, cohort in zip(path, blocks, strict=True):
        for p in rng.sample(cohort, block.dlts):
            p.dlt = "pending"
    treated = [p for cohort in blocks for p in cohort]
    # The first two DLTs are an ICANS and a CRS; later ones any kind.
    first_two = ["icans-4", rng.choice(["crs-3-not-improved", "crs-4"])]
    rng.shuffle(first_two)
    for i, p in enumerate(p for p in treated if p.dlt):
        p.dlt = first_two[i] if i < 2 else rng.choice(DLT_KINDS)
    for p in treated:
        p.weight_kg = round(rng.uniform(52.0, 96.0), 1)
        p.height_cm = round(rng.uniform(155.0, 192.0), 1)
        p.msln = float(rng.randrange(30, 95, 5))
        p.dose_factor = round(rng.uniform(0.92, 1.08), 3)
        p.crs = {"crs-4": 4, "crs-3-not-improved": 3}.get(p.dlt or "", rng.choice([1, 2]))
        if p.dlt == "icans-4":
            p.icans = 4
    # Roles among the patients without a DLT (at least 4 of them: two roles share a patient
    # when there are fewer than 6).
    calm = rng.sample([p for p in treated if not p.dlt], len([p for p in treated if not p.dlt]))
    susar, severe, icans1, icans2, serositis, late = (calm[i % len(calm)] for i in range(6))
    susar.susar, serositis.serositis, late.late_withdrawal = True, True, True
    severe.crs, severe.crs_improves = 3, True
    icans1.icans, icans2.icans = 1, 2
    icans1.crs, icans2.crs = 1, 2
    for p in calm:
        if p.icans is None and rng.random() < 0.25:
            p.icans = rng.choice([1, 2])
    failed, oos = rng.sample([p for cohort in blocks[:2] for p in cohort], 2)
    failed.lot_event, oos.lot_event = "manufacturing-failure", "out-of-specification"
    for reason in SCREEN_FAILURES[: 2 + (k >= 4) + (k >= 5)]:
        b = rng.randrange(k)
        msln = float(rng.choice([5, 10, 15, 20])) if reason == "msln" else 55.0
        blocks[b].append(Patient(b, "screen-failure", failure=reason, msln=msln))
    for cohort in blocks:
        rng.shuffle(cohort)
    w = rng.randrange(min(k, 2))
    # Arriving first or second, and at least a day before the next patient, the withdrawn
    # subject frees their slot before the cohort's third treated patient enrols.
    blocks[w].insert(
        rng.randrange(2), Patient(w, "withdrawn", msln=float(rng.randrange(30, 95, 5)))
    )
    return blocks


def _midnight(moment_: datetime) -> datetime:
    return moment_.replace(hour=0, minute=0, second=0, microsecond=0)


class _Planner:
    """Turns the cast into timed steps, cohort after cohort, with the reviews in between."""

    def __init__(self, trial: TrialConfig, path: list[Block], blocks, rng: random.Random):
        self.trial, self.path, self.blocks, self.rng = trial, path, blocks, rng
        self.items: list[tuple[datetime, int, Step]] = []
        self.cohorts: dict[str, str] = {}
        """Dose level -> the id of its cohort."""
        self.counts: dict[str, list[int]] = {}
        """Dose level -> [evaluable, DLTs], as the reviews see them."""
        self.numbers = iter(range(1, 10_000))

    def add(self, at: datetime, action: str, subject: str | None = None, note=None, **args):
        self.items.append((at, len(self.items), Step(at, action, subject, args, note)))

    def steps(self) -> list[Step]:
        level = self.path[0].level
        self.open(TRIAL_START + timedelta(hours=8), level, "the protocol's start level", False)
        base = TRIAL_START
        for b in range(len(self.path)):
            last_at, last_subject = self.cohort(b, base)
            review_at = _midnight(last_at) + timedelta(days=1, hours=14)
            self.review(b, review_at, last_subject)
            base = _midnight(review_at) + timedelta(days=1)
        return [step for _at, _n, step in sorted(self.items, key=lambda x: (x[0], x[1]))]

    # ---------------------------------------------------------------- one cohort

    def cohort(self, b: int, base: datetime) -> tuple[datetime, str]:
        """The block's subjects arrive a few days apart; returns its last DLT evaluation."""
        cohort = cohort_of(self.trial, self.path[b].level)
        day = base + timedelta(days=self.rng.randint(0, 2))
        evaluations: list[tuple[datetime, str]] = []
        for n, p in enumerate(self.blocks[b]):
            if n:
                day += timedelta(days=self.rng.randint(1, 4))
            p.start, p.subject_id = day, f"{SITE}-{next(self.numbers):04d}"
            if p.role == "screen-failure":
                self.screen_failure(p)
                continue
            self.screen(p)
            self.add(
                moment(p.start, "enroll"),
                "enroll",
                p.subject_id,
                note=f"{p.subject_id} enrolled in {cohort.cohort_id} ({cohort.dose_level}, "
                f"{sci(cohort.cells_per_kg)} cells/kg)",
                cohort_id=cohort.cohort_id,
                dose_level=cohort.dose_level,
            )
            if p.role == "withdrawn":
                self.add(
                    moment(p.start, "enroll") + timedelta(days=1, hours=1),
                    "withdraw",
                    p.subject_id,
                    note=f"{p.subject_id} withdraws consent before apheresis: the slot is "
                    "released for the next eligible patient",
                    reason_code="consent-withdrawn",
                )
                continue
            evaluations.append((treated_steps(self.add, self.trial, p, cohort), p.subject_id))
        return max(evaluations)

    def register(self, p: Patient, **body: Any) -> None:
        self.add(
            moment(p.start, "register"),
            "register",
            p.subject_id,
            site_id=SITE,
            clock_start=p.start,
            weight_kg=p.weight_kg,
            height_cm=p.height_cm,
            **body,
        )

    def screen(self, p: Patient, note: str | None = None, **evidence: Any) -> None:
        s = p.subject_id
        self.register(p)
        self.add(
            moment(p.start, "prescreen"),
            "prescreen",
            s,
            note=f"{s} registered; MSLN {p.msln:g}% of tumour cells at pre-screening",
            msln_ihc_percent=p.msln,
        )
        self.add(moment(p.start, "consent"), "consent", s)
        self.add(
            moment(p.start, "assess-eligibility"),
            "assess-eligibility",
            s,
            note=note or f"{s} eligible: every criterion met",
            **evidence,
        )

    def screen_failure(self, p: Patient) -> None:
        s, rules = p.subject_id, self.trial.eligibility
        if p.failure == "ecog":
            self.screen(p, f"{s} screen failure: ECOG 3 (at most {rules.ecog_max})", ecog=3)
            return
        if p.failure == "labs":
            low = rules.labs["platelets_10e9_per_l"][0]
            labs = {**ELIGIBLE["labs"], "platelets_10e9_per_l": LOW_PLATELETS}
            note = f"{s} screen failure: platelets {LOW_PLATELETS:g} x10^9/L (at least {low:g})"
            self.screen(p, note, labs=labs)
            return
        self.register(p)
        failed = p.failure == "msln"
        note = (
            f"{s} screen failure at pre-screening: MSLN {p.msln:g}% of tumour cells "
            f"(at least {rules.msln_ihc_min_percent:g}%)"
        )
        self.add(
            moment(p.start, "prescreen"),
            "prescreen",
            s,
            note=note if failed else None,
            msln_ihc_percent=p.msln,
        )
        if not failed:
            self.add(
                moment(p.start, "consent"),
                "screen-failure",
                s,
                note=f"{s} screen failure: declines consent",
                reason_code="consent-declined",
            )

    # ---------------------------------------------------------------- the review

    def review(self, b: int, at: datetime, last_subject: str) -> None:
        """Read the recommendation; then close, open or expand cohorts as it says."""
        block = self.path[b]
        counted = self.counts.setdefault(block.level, [0, 0])
        counted[0] += 3
        counted[1] += block.dlts
        seen = f"{counted[1]}/{counted[0]} DLTs at {block.level}"
        self.add(
            at,
            "review",
            expect=block.expect,
            next_level=block.next_level,
            mtd_level=block.mtd_level,
            level=block.level,
            after_evaluation_of=last_subject,
        )
        current = self.cohorts[block.level]
        later = at + timedelta(minutes=5)
        if block.expect == "stop":
            self.close(later, current, f"dose escalation complete: MTD {block.mtd_level} ({seen})")
            return
        following = self.path[b + 1].level if b + 1 < len(self.path) else block.next_level
        assert following == block.next_level, (b, following, block)
        assert following is not None, (b, block)  # only "stop" has no next level
        budget = "" if b + 1 < len(self.path) else "; the simulation's patients are all treated"
        if following != block.level:
            self.close(later, current, f"{seen}: the review moves to {following}")
        later += timedelta(minutes=5)
        if following in self.cohorts:
            cohort_id = self.cohorts[following]
            self.add(
                later,
                "expand-cohort",
                note=f"the review expands {cohort_id} by 3 slots ({block.expect}){budget}",
                cohort_id=cohort_id,
                additional_slots=3,
            )
        else:
            self.open(later, following, f"{block.expect} after {seen}{budget}", True)

    def open(self, at: datetime, level: str, why: str, cite: bool) -> None:
        cohort = cohort_of(self.trial, level)
        self.cohorts[level] = cohort.cohort_id
        self.add(
            at,
            "open-cohort",
            note=f"the review opens {cohort.cohort_id} at {level} "
            f"({sci(cohort.cells_per_kg)} cells/kg): {why}",
            cohort_id=cohort.cohort_id,
            dose_level=level,
            cite=cite,
        )

    def close(self, at: datetime, cohort_id: str, reason: str) -> None:
        self.add(
            at,
            "close-cohort",
            note=f"the review closes {cohort_id}: {reason}",
            cohort_id=cohort_id,
            reason=reason,
        )
