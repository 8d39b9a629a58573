"""The steps the simulator's plan lacks, added to it by the seed (the trials of
``test_services_and_projections_agree.py``): a subject on the waiting list, a late OOS after a
conditional release, a fatal AE and its review, a short dose after the trial, a fatal AE at
the end."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING

from clients.journey import Journey
from clients.simulate_steps import Step
from services.safety.dlt import window_ends_at

from .in_process import URL, InProcess

if TYPE_CHECKING:
    from .test_services_and_projections_agree import Both


ADDED = (
    "join-waiting-list",
    "report-fatal-ae",
    "report-unexpected-crs",
    "grade-crs",
    "determine-expedited-report",
    "submit-expedited-report",
    "safety-review",
    "late-oos-follow-up",
)


def varied(steps: list[Step], rng: random.Random) -> list[Step]:
    """The plan with a subject on the waiting list, a late OOS after an infusion and a fatal AE
    reviewed during the trial."""
    steps = with_waiting_subject(steps, rng)
    steps = with_late_oos(steps, rng)
    return with_fatal_ae_reviewed(steps, rng)


def with_waiting_subject(steps: list[Step], rng: random.Random) -> list[Step]:
    """An eligible subject who asks for a cohort its last planned patient just filled, waits,
    and withdraws before anyone else is enrolled (the waiting list is first come, first
    served, so a subject left waiting would take the next slot the plan gives another)."""
    reviews = [n for n, s in enumerate(steps) if s.action == "review"]
    review = rng.choice(reviews)
    enroll = next(s for s in reversed(steps[:review]) if s.action == "enroll")
    day = enroll.at.replace(hour=0, minute=0) + timedelta(days=1)
    subject = "MSK-0900"
    register = {"site_id": "MSK", "clock_start": day, "weight_kg": 70.0, "height_cm": 170.0}
    added = [
        Step(day + timedelta(hours=9), "register", subject, register),
        Step(day + timedelta(hours=10), "prescreen", subject, {"msln_ihc_percent": 60.0}),
        Step(day + timedelta(days=1, hours=10), "consent", subject),
        Step(day + timedelta(days=2, hours=10), "assess-eligibility", subject),
        Step(day + timedelta(days=3, hours=10), "join-waiting-list", subject, enroll.args),
        Step(
            day + timedelta(days=4, hours=10),
            "withdraw",
            subject,
            {"reason_code": "consent-withdrawn"},
        ),
    ]
    assert all(a.at < steps[review].at for a in added)
    return inserted(steps, added)


def with_late_oos(steps: list[Step], rng: random.Random) -> list[Step]:
    excluded = {s.subject_id for s in steps if s.action in ("manufacturing-failure", "withdraw")}
    excluded |= {s.subject_id for s in steps if s.action == "exceptional-release"}
    infusions = {
        s.subject: s for s in steps if s.action == "infuse" and s.subject_id not in excluded
    }
    subject = rng.choice(sorted(infusions))
    infused = infusions[subject]
    test = rng.choice(["sterility", "mycoplasma"])
    steps = [
        replace(s, args={**s.args, "result": "negative-to-date"})
        if s.action == "qc" and s.subject_id == subject and s.args["test"] == test
        else s
        for s in steps
    ]
    late_at = infused.at + timedelta(days=rng.randint(1, 20), hours=rng.randint(0, 8))
    lot = infused.args["lot"]
    added = [Step(late_at, "qc", subject, {"lot": lot, "test": test, "result": "positive"})]
    if rng.random() < 0.5:
        added.append(Step(late_at + timedelta(days=1), "late-oos-follow-up", subject, {"lot": lot}))
    return inserted(steps, added)


def with_fatal_ae_reviewed(steps: list[Step], rng: random.Random) -> list[Step]:
    """In a quiet hour after some subject's DLT evaluation (so that no DLT count or
    recommendation changes): the AE, its determination, maybe its 7-day report, the review."""
    evaluated: dict[str, datetime] = {}
    withdrawn: set[str] = set()
    gaps = []
    for before, after in pairwise(steps):
        if before.action == "dlt-evaluation":
            evaluated[before.subject] = before.at
        if before.action == "withdraw":
            withdrawn.add(before.subject)
        if after.at - before.at >= timedelta(hours=2) and set(evaluated) - withdrawn:
            gaps.append((before.at, sorted(set(evaluated) - withdrawn)))
    start, candidates = rng.choice(gaps)
    subject = rng.choice(candidates)
    ae_id = f"AE-{subject}-F1"
    at = start + timedelta(minutes=10)
    added = [
        Step(at, "report-fatal-ae", subject, {"ae_id": ae_id, "attribution": "possible"}),
        Step(at + timedelta(minutes=10), "determine-expedited-report", subject, {"ae_id": ae_id}),
    ]
    if rng.random() < 0.5:
        added.append(submitted(at + timedelta(minutes=20), subject, ae_id, "7-day"))
    review = {"review_id": f"SR-{subject}", "ae_ids": [ae_id]}
    added.append(Step(at + timedelta(minutes=30), "safety-review", subject, review))
    return inserted(steps, added)


def short_dose_after_the_trial(
    api: InProcess, both: Both, rng: random.Random, after: datetime
) -> Step | None:
    """When the trial ends with free slots (the 6 and 9-patient plans end on an expanded lower
    dose): one more patient whose lot's cell dose falls short of the cohort's beyond the
    tolerance, infused on exceptional release and counted at the dose received (decision 27:
    the fallback level, or no level at all), then evaluated. Returns the evaluation's step."""
    free = [c for c in api.states["enrollment"].cohorts.values() if c.open and c.free_slot()]
    if not free:
        return None
    cohort = free[0]
    start = after.replace(hour=0, minute=0) + timedelta(days=1)
    j = Journey(URL, "MSK-0901", "MSK", start, weight_kg=70.0, trial=api.trial, transport=api)
    j.to_enrolled(cohort.cohort_id, dose_level=cohort.dose_level)
    short = round(j.target_cells * rng.choice([0.5, 0.2]))
    answer = j.to_released_lot(cell_dose=short)
    assert [e["event_type"] for e in answer["events"]] == ["LotOutOfSpecification"]
    j.decide_exceptional_release("investigator")
    j.decide_exceptional_release("sponsor")
    j.to_infused()
    both.agree(j.when("infuse") + timedelta(hours=1))
    j.close_dlt_evaluation()
    assert j.infused_at is not None
    ends = window_ends_at(j.infused_at, api.trial.dlt.window_days, api.trial.zone())
    both.agree(ends + timedelta(hours=2))
    return Step(ends + timedelta(hours=2), "dlt-evaluation", j.subject_id)


def fatal_ae_at_the_end(steps: list[Step], last: datetime, rng: random.Random) -> list[Step]:
    """A day after the last step, by the seed, nothing or a fatal related AE left unreviewed
    (the trial stays paused), determined or not, its reports never submitted: reported fatal,
    or the scenario of issue 11 (an unexpected grade 3 CRS, then death due to CRS observed)."""
    evaluated = sorted({s.subject for s in steps if s.action == "dlt-evaluation"})
    subject = rng.choice(evaluated)
    at = last + timedelta(days=1)
    kind = rng.choice(["none", "reported-fatal", "crs-turned-fatal"])
    if kind == "none":
        return []
    if kind == "reported-fatal":
        ae_id = f"AE-{subject}-F2"
        added = [Step(at, "report-fatal-ae", subject, {"ae_id": ae_id, "attribution": "probable"})]
    else:
        ae_id = f"AE-{subject}-C5"
        fatal = {"temperature_c": 39.5, "hypotension": "multiple-vasopressors", "death": True}
        added = [
            Step(at, "report-unexpected-crs", subject, {"ae_id": ae_id}),
            Step(
                at + timedelta(hours=6),
                "grade-crs",
                subject,
                {"ae_id": ae_id, "observation": fatal, "grade": 5},
            ),
        ]
    if rng.random() < 0.7:
        later = at + timedelta(hours=rng.randint(7, 72))
        added.append(Step(later, "determine-expedited-report", subject, {"ae_id": ae_id}))
    return added


def submitted(at: datetime, subject: str, ae_id: str, report: str) -> Step:
    args = {"ae_id": ae_id, "report": report, "reference": f"IND-SR-{subject}", "due_on": None}
    return Step(at, "submit-expedited-report", subject, args)


def inserted(steps: list[Step], added: list[Step]) -> list[Step]:
    """``steps`` with ``added``, in business-time order (an added step after plan steps of the
    same time)."""
    return sorted([*steps, *added], key=lambda s: s.at)
