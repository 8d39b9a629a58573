"""The safety board and the safety service agree on every fact both show, over many generated
trials (issue 11: "every fact the services and the projections both show agrees").

Each walk draws safety commands at random (reports, CRS observations, regrades, improvements,
determinations, submissions, adjudications, reviews, evaluations) and keeps those the decider
accepts; the board then folds the sealed events (in its own key order, as the live worker and
the replay do) and is read at several times. What it shows must be what the service's state
says: the reports due and their dates, seriousness, worst grades, DLT verdicts, the pause, the
cases awaiting a determination, the aggregate review and the open DLT windows. The walks are
seeded, so a failure names the seed that reproduces it.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from events.safety import (
    AdverseEventReported,
    Attribution,
    ImprovementOutcome,
    SeriousnessCriterion,
    Verdict,
)
from projections.base import fold as fold_projection
from projections.catalog import build
from services.decider import NewEvent
from services.errors import DomainError
from services.safety.commands import (
    AdjudicateDlt,
    DetermineExpeditedReport,
    GradeCrs,
    RecordAeResolution,
    RecordDltEvaluation,
    RecordSafetyReview,
    RegradeAdverseEvent,
    ReportAdverseEvent,
    SubmitExpeditedReport,
)
from services.safety.expedited import aggregate_review, awaiting_determination, due_for
from services.safety.grading import CrsObservation
from services.safety.state import SafetyState

from .builders import history
from .test_safety_givens import DECIDER, INFUSED_AT, TRIAL, given, treated

BOARD = build(TRIAL)["safety"]
SUBJECTS = ("MSK-0007", "MSK-0008")
TERMS = ("Cytokine release syndrome", "Pericarditis", "Colitis", "Febrile neutropenia")
ATTRIBUTIONS: tuple[Attribution, ...] = (
    "unrelated", "unlikely", "possible", "probable", "definite"
)
CRITERIA: tuple[SeriousnessCriterion, ...] = (
    "hospitalisation", "life-threatening", "important-medical-event"
)
OUTCOMES: tuple[ImprovementOutcome, ...] = ("grade-2-or-less", "resolved")
VERDICTS: tuple[Verdict, ...] = ("dlt", "not-dlt")
REPORTS = ("7-day", "7-day-complete", "15-day", "follow-up-1")


def command(rng: random.Random, at: datetime, ae_ids: list[str], n: int):
    kind = rng.choice(
        ["report"] * 3
        + ["crs", "regrade", "improve", "determine", "follow-up", "submit", "adjudicate"]
        + ["review", "evaluate"]
    )
    ae = rng.choice(ae_ids) if ae_ids else "AE-0007-01"
    match kind:
        case "report":
            grade = rng.choice((1, 2, 3, 4, 5))
            criteria: tuple[SeriousnessCriterion, ...] = ("death",) if grade == 5 else tuple(
                rng.sample(CRITERIA, rng.choice((0, 0, 1, 2)))
            )
            subject = rng.choice(SUBJECTS)
            received = at - timedelta(hours=rng.choice((0, 3, 30)))
            return ReportAdverseEvent(
                ae_id=f"AE-{subject[-4:]}-{n:02d}",
                subject_id=subject,
                term=rng.choice(TERMS),
                grade=grade,
                onset_at=received - timedelta(hours=rng.choice((1, 20))),
                serious_criteria=criteria,
                attribution=rng.choice(ATTRIBUTIONS),
                expected=rng.random() < 0.4,
                sponsor_received_at=received,
                occurred_at=at,
            )
        case "crs":
            observation = {
                "temperature_c": 39.0,
                "hypotension": rng.choice(("none", "one-vasopressor", "multiple-vasopressors")),
                "death": rng.random() < 0.15,
            }
            return GradeCrs(
                ae_id=ae, observation=CrsObservation.model_validate(observation), occurred_at=at
            )
        case "regrade":
            return RegradeAdverseEvent(
                ae_id=ae,
                reason="source document review",
                attribution=rng.choice(ATTRIBUTIONS),
                expected=rng.random() < 0.5,
                occurred_at=at,
            )
        case "improve":
            outcome = rng.choice(OUTCOMES)
            return RecordAeResolution(ae_id=ae, outcome=outcome, occurred_at=at)
        case "determine":
            return DetermineExpeditedReport(ae_id=ae, occurred_at=at)
        case "follow-up":
            return DetermineExpeditedReport(
                ae_id=ae, follow_up_information_received_at=at - timedelta(hours=2),
                occurred_at=at,
            )
        case "submit":
            return SubmitExpeditedReport(
                ae_id=ae, report=rng.choice(REPORTS), reference="IND-SR-1", occurred_at=at
            )
        case "adjudicate":
            verdict = rng.choice(VERDICTS)
            return AdjudicateDlt(ae_id=ae, verdict=verdict, reason="committee", occurred_at=at)
        case "review":
            return RecordSafetyReview(
                review_id=f"SR-{n:03d}", reviewed_ae_ids=tuple(ae_ids) or (ae,),
                allows_resumption=rng.random() < 0.7, summary="Reviewed", occurred_at=at,
            )
    return RecordDltEvaluation(subject_id=rng.choice(SUBJECTS), occurred_at=at)


def walk(seed: int) -> tuple[list[NewEvent], SafetyState]:
    rng = random.Random(seed)
    state = given(*(treated(s) for s in SUBJECTS))
    produced = [
        NewEvent(f"infusion-{s}", payload, INFUSED_AT)
        for s in SUBJECTS
        for payload in treated(s)[2:]
    ]
    at = INFUSED_AT
    ae_ids: list[str] = []
    for n in range(1, 40):
        at += timedelta(hours=rng.choice((2, 9, 20, 50)))
        try:
            events = DECIDER.decide(command(rng, at, ae_ids, n), state)
        except (DomainError, ValueError):
            continue
        for new in events:
            state = DECIDER.evolve(state, new.payload)
            if isinstance(new.payload, AdverseEventReported):
                ae_ids.append(new.payload.ae_id)
        produced.extend(events)
    return produced, state


def service_view(state: SafetyState, as_of: datetime) -> dict:
    zone = TRIAL.zone()
    aes = sorted(state.adverse_events.values(), key=lambda a: a.ae_id)
    return {
        "reports": [
            (ae.ae_id, d.report, d.day_zero.isoformat(), d.due_on.isoformat())
            for ae in aes
            for d in due_for(ae, TRIAL.reporting, zone)
        ],
        "grades": [(ae.ae_id, ae.grade, sorted(ae.serious_criteria), ae.verdict) for ae in aes],
        "serious": sum(1 for ae in aes if ae.serious_criteria),
        "paused": (state.enrollment_paused, list(state.pausing)),
        "determinations_due": [ae.ae_id for ae in awaiting_determination(state, TRIAL.reporting)],
        "aggregate": {
            term: [ae.ae_id for ae in listed]
            for term, listed in aggregate_review(state, TRIAL.reporting).items()
        },
        "open_windows": sorted(
            s.subject_id for s in state.subjects.values() if s.infusion and not s.dlt_evaluated
        ),
    }


def board_view(doc: dict) -> dict:
    listed = doc["adverse_events"]["list"]
    return {
        "reports": [
            (r["ae_id"], r["report"], r["day_zero"], r["due_on"]) for r in doc["expedited_reports"]
        ],
        "grades": [
            (a["ae_id"], a["worst_grade"], sorted(a["serious_criteria"]), a["dlt"]) for a in listed
        ],
        "serious": doc["adverse_events"]["serious"],
        "paused": (doc["enrollment_paused"], doc["paused_by"]),
        "determinations_due": [d["ae_id"] for d in doc["determinations_due"]],
        "aggregate": {a["term"]: a["ae_ids"] for a in doc["aggregate_review"]},
        "open_windows": sorted(w["subject_id"] for w in doc["open_dlt_windows"]),
    }


@pytest.mark.parametrize("seed", range(60))
def test_the_board_shows_what_the_safety_service_decided(seed):
    events, state = walk(seed)
    states = fold_projection(BOARD, history(events))
    for days in (3, 12, 40):
        as_of = INFUSED_AT + timedelta(days=days)
        assert board_view(BOARD.document(states, as_of)) == service_view(state, as_of), seed


def test_the_walks_reach_the_facts_they_compare():
    # A property over walks that never reach a report due, a pause or a DLT proves little
    finals = [walk(seed)[1] for seed in range(60)]
    views = [service_view(s, INFUSED_AT + timedelta(days=40)) for s in finals]
    assert sum(bool(v["reports"]) for v in views) >= 10
    assert sum(v["paused"][0] or bool(v["paused"][1]) for v in views) >= 5
    assert sum(bool(v["determinations_due"]) for v in views) >= 5
    assert sum(bool(v["aggregate"]) for v in views) >= 5
    assert sum(any(g[3] == "dlt" for g in v["grades"]) for v in views) >= 3
