"""Property: for many random simulated trials, every fact that the services and the projections
both show agrees (issue 11: "no rule is implemented twice").

Each trial is the simulator's plan for a seed (``clients.simulate_plan``: screen failures,
escalation, stay and de-escalation, DLTs, a manufacturing failure, an out-of-specification lot
infused on exceptional release, withdrawals before apheresis and after treatment, a SUSAR and
its 15-day report), varied by the same seed with what the plan lacks:
- an eligible subject who asks for a full cohort, waits on the waiting list, and withdraws;
- a lot released conditionally (sterility or mycoplasma "negative to date") whose result turns
  positive after the infusion, the late OOS of DOMAIN.md 2.4, followed up by the investigator
  or left open;
- a fatal, possibly related AE during the trial, which pauses enrollment and dosing until a
  safety review resumes them (DOMAIN.md 3), its expedited reports determined and, by the seed,
  the 7-day report submitted;
- when the trial ends with free slots (6 and 9 patients), one more patient whose lot falls
  short of the cohort's dose, infused on exceptional release and counted at the fallback level
  or at none (decision 27), then evaluated;
- at the end, by the seed, another fatal related AE that leaves the trial paused, its reports
  determined or not and never submitted, read up to 30 days later (overdue reports).

The trial runs through the command API in process (``tests/unit/in_process.py``: the real
deciders, each context evolving what it follows); the events it accepted are sealed and folded
by every projection (``projections.catalog``) as the worker and the replay fold them. After each
review, each added step and a random few others, and at the end, these facts are compared:
- per cohort: status, dose level, slots planned and taken, who holds them, and the waiting
  list (enrollment's state / cohort-occupancy); treated, evaluable and DLTs per dose level
  (the infusions' recorded counted level and safety's evaluations / dose-escalation); evaluable
  and DLTs per cohort (safety's state / the safety board);
- per subject: the cohort enrolled in (enrollment, dosing, manufacturing, safety / the patient
  timeline, the board's open windows), infused or not (the same, and the pipeline's "infused"
  lots), withdrawn (the services / the timeline and the waiting list);
- per lot: stage (manufacturing's ``stage``, or dosing's infusion / the pipeline), subject and
  identifiers, failed tests and exceptional release (manufacturing / pipeline), the disposition
  each service follows, the late OOS follow-ups due (safety's state / the board);
- per AE: grade, seriousness criteria, attribution, expectedness, DLT verdict; the expedited
  reports due and their day 0 and due date (the service's ``due_for``, the determination and
  submission events as recorded / the board), submitted, late, and overdue as of the reading
  day; the determinations due and the aggregate review;
- DLT windows: who has one open, the infusion time and the window's end (safety's state and
  ``window_ends_at`` / the board), and no evaluation without a DLT closed before the end the
  board showed;
- escalation: every cohort decision enrollment accepted cites a recommendation the projection
  shows, made before it, whose next level is the level decided; the current level;
- the pause: paused or not and by which AEs (enrollment, dosing, safety / the board).
At the end, the projections folded from the topics interleaved in another order (each topic's
own order kept, as a worker may read them) show the same documents.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from clients.journey_steps import INVESTIGATOR
from clients.simulate import Simulation, plan
from clients.simulate_steps import Step
from events.dosing import InfusionRecorded
from events.enrollment import CohortExpanded, CohortOpened
from events.safety import (
    DltEvaluationCompleted,
    ExpeditedReportDetermined,
    ExpeditedReportSubmitted,
)
from projections.base import fold
from projections.catalog import build
from services.safety.dlt import window_ends_at
from services.safety.expedited import aggregate_review, awaiting_determination, due_for
from services.safety.late_oos import awaiting_follow_up
from trial.calendar import calendar_day

from .agree_trials import (
    ADDED,
    fatal_ae_at_the_end,
    short_dose_after_the_trial,
    varied,
)
from .in_process import URL, InProcess
from .test_simulate_plan import DesignView

TRIALS = [(6, 7), (9, 3), (12, 5), (15, 1), (18, 7)] + [
    (6 + 3 * (seed % 5), seed) for seed in range(101, 113)
]
"""(patients, seed): every size the simulator plays, 17 trials."""


# ---------------------------------------------------------------- the trials


class Both:
    """The services' states (in process) and the projections' folds of the same events."""

    def __init__(self, api: InProcess):
        self.api = api
        self.projections = build(api.trial)
        self.states: dict[str, dict] = {name: {} for name in self.projections}
        self.folded = 0
        self.window_ends: dict[str, str] = {}
        """Subject -> the end of the DLT window the board showed while it was open."""
        self.checks = 0

    def documents(self, as_of: datetime) -> dict[str, Any]:
        recorded = self.api.recorded()
        new, self.folded = recorded[self.folded :], len(recorded)
        errors: list[str] = []
        for name, projection in self.projections.items():
            events = [r for c, r in new if c in projection.contexts]
            fold(projection, events, self.states[name], errors)
        assert errors == []
        return {n: p.document(self.states[n], as_of) for n, p in self.projections.items()}

    def agree(self, as_of: datetime) -> None:
        self.checks += 1
        docs = self.documents(as_of)
        agree(self.api, docs, as_of, self.window_ends)
        # the pipeline's table keeps the lot's stage under an infusion too
        kept = {lot: s["lot_stage"] for lot, s in self.states["manufacturing-pipeline"].items()}
        assert kept == {
            lot_id: x.stage for lot_id, x in self.api.states["manufacturing"].lots.items()
        }


class Checked(Simulation):
    """The simulation, checking after some steps that the services and projections agree, with
    the steps the plan lacks (a fatal AE, a safety review, a late OOS follow-up)."""

    def __init__(self, api: InProcess, both: Both, rng: random.Random):
        super().__init__(
            URL, URL, trial=api.trial, say=lambda _line: None, transport=api, view=DesignView(api)
        )
        self.both, self.rng = both, rng

    def execute(self, step: Step) -> None:
        super().execute(step)
        if step.action in ADDED or step.action == "review" or self.rng.random() < 0.15:
            self.both.agree(step.at)

    def _report_fatal_ae(self, step: Step, *, ae_id: str, attribution: str) -> None:
        body = {
            "ae_id": ae_id,
            "subject_id": step.subject,
            "term": "Respiratory failure",
            "grade": 5,
            "onset_at": (step.at - timedelta(hours=2)).isoformat(),
            "serious_criteria": ["death"],
            "attribution": attribution,
            "expected": False,
            "sponsor_received_at": step.at.isoformat(),
        }
        self.post(step, "/safety/adverse-events", body, INVESTIGATOR)

    def _report_unexpected_crs(self, step: Step, *, ae_id: str) -> None:
        body = {
            "ae_id": ae_id,
            "subject_id": step.subject,
            "term": "Cytokine release syndrome",
            "grade": 3,
            "onset_at": (step.at - timedelta(hours=2)).isoformat(),
            "serious_criteria": ["hospitalisation"],
            "attribution": "probable",
            "expected": False,
            "sponsor_received_at": step.at.isoformat(),
        }
        self.post(step, "/safety/adverse-events", body, INVESTIGATOR)

    def _join_waiting_list(self, step: Step, *, cohort_id: str, dose_level: str) -> None:
        self.journey(step.subject).enroll(cohort_id, True, dose_level=dose_level, at=step.at)

    def _safety_review(self, step: Step, *, review_id: str, ae_ids: list[str]) -> None:
        body = {
            "review_id": review_id,
            "reviewed_ae_ids": ae_ids,
            "allows_resumption": True,
            "summary": "safety review of the fatal event: the trial may go on",
        }
        self.post(step, "/safety/reviews", body, INVESTIGATOR)

    def _late_oos_follow_up(self, step: Step, *, lot: str) -> None:
        body = {
            "lot_id": self.journey(step.subject, lot).lot_id,
            "investigator_notified_at": (step.at - timedelta(hours=1)).isoformat(),
            "assessment": "no-adverse-event",
            "summary": "investigator notified of the late positive result; no adverse event",
        }
        self.post(step, "/safety/late-oos-follow-ups", body, INVESTIGATOR)


# ---------------------------------------------------------------- the facts both show


def agree(api: InProcess, docs: dict[str, Any], as_of: datetime, window_ends: dict) -> None:
    events = [r.payload for _c, r in api.recorded()]
    cohorts_agree(api, docs)
    subjects_agree(api, docs)
    lots_agree(api, docs)
    adverse_events_agree(api, docs, events, as_of)
    dlt_counts_agree(api, docs, events)
    dlt_windows_agree(api, docs, events, as_of, window_ends)
    escalation_agrees_with_enrollment(api, docs, events)
    pause_agrees(api, docs)


def cohorts_agree(api: InProcess, docs: dict[str, Any]) -> None:
    enrollment = api.states["enrollment"]
    occupancy = docs["cohort-occupancy"]
    shown = {c["cohort_id"]: c for c in occupancy["cohorts"]}
    assert set(shown) == set(enrollment.cohorts)
    for cohort_id, cohort in enrollment.cohorts.items():
        c = shown[cohort_id]
        assert (c["status"], c["dose_level"], c["slots_planned"]) == (
            "open" if cohort.open else "closed",
            cohort.dose_level,
            cohort.capacity,
        ), cohort_id
        assert (c["enrolled"], c["slots_taken"]) == (list(cohort.enrolled), len(cohort.slots))
    assert [w["subject_id"] for w in occupancy["waiting_list"]] == list(enrollment.waiting)


def subjects_agree(api: InProcess, docs: dict[str, Any]) -> None:
    enrollment, dosing = api.states["enrollment"], api.states["dosing"]
    manufacturing, safety = api.states["manufacturing"], api.states["safety"]
    timeline = {s["subject_id"]: s["entries"] for s in docs["patient-timeline"]["subjects"]}

    def last(subject: str, event_type: str) -> dict | None:
        found = [e for e in timeline.get(subject, ()) if e["event_type"] == event_type]
        return found[-1]["details"] if found else None

    enrolled = {s: x.cohort_id for s, x in enrollment.subjects.items() if x.cohort_id}
    assert {s: x.cohort_id for s, x in dosing.subjects.items() if x.cohort_id} == enrolled
    assert dict(manufacturing.enrolled_in) == enrolled
    assert {s: x.cohort_id for s, x in safety.subjects.items() if x.cohort_id} == enrolled
    for subject, cohort_id in enrolled.items():
        assert (last(subject, "SubjectEnrolled") or {}).get("cohort_id") == cohort_id, subject

    infused = set(enrollment.infused)
    assert {s for s, x in dosing.subjects.items() if x.infused_lot} == infused
    assert {s for s, x in safety.subjects.items() if x.infusion} == infused
    assert {s for s in timeline if last(s, "InfusionRecorded")} == infused
    lots = docs["manufacturing-pipeline"]["lots"]
    assert {lot["subject_id"] for lot in lots if lot["stage"] == "infused"} == infused

    withdrawn = {s for s, x in enrollment.subjects.items() if x.withdrawn}
    assert {s for s, x in dosing.subjects.items() if x.withdrawn} == withdrawn
    assert set(manufacturing.withdrawn) == withdrawn
    assert {s for s in timeline if last(s, "SubjectWithdrawn")} == withdrawn
    waiting = {w["subject_id"] for w in docs["cohort-occupancy"]["waiting_list"]}
    assert not waiting & withdrawn


def lots_agree(api: InProcess, docs: dict[str, Any]) -> None:
    enrollment, dosing = api.states["enrollment"], api.states["dosing"]
    manufacturing, safety = api.states["manufacturing"], api.states["safety"]
    infused_lots = {x.infused_lot for x in dosing.subjects.values() if x.infused_lot}
    pipeline = {lot["lot_id"]: lot for lot in docs["manufacturing-pipeline"]["lots"]}
    assert set(pipeline) == set(manufacturing.lots)
    for lot_id, lot in manufacturing.lots.items():
        shown = pipeline[lot_id]
        stage = "infused" if lot_id in infused_lots else lot.stage
        assert shown["stage"] == stage, (lot_id, shown["stage"], stage)
        ids = (shown["subject_id"], shown["coi_id"], shown["din"])
        assert ids == (lot.subject_id, lot.coi_id, lot.din), lot_id
        failed = shown["out_of_specification"]
        assert (failed is not None) == bool(lot.failed_tests), lot_id
        assert set(failed or ()) <= set(lot.failed_tests), lot_id
        stages = {s["stage"] for s in shown["stages"]}
        assert ("exceptionally-released" in stages) == lot.exceptional_release, lot_id
        # the disposition every service that follows manufacturing holds
        if lot.exceptional_release:
            release, status = {"exceptionally-released"}, "exceptionally-released"
        elif lot.disposition == "out-of-specification":
            release, status = {"out-of-specification"}, "out-of-specification"
        elif lot.disposition == "released":
            release, status = {"released", "conditionally-released"}, "released"
        else:
            release, status = {"not-released"}, None
        assert dosing.lots[lot_id].release in release, lot_id
        held = enrollment.lots.get(lot_id)
        assert (held.status if held else None) == status, lot_id
        if lot_id in safety.lots:
            assert safety.lots[lot_id].infused == (lot_id in infused_lots), lot_id
    follow_ups = [(f["lot_id"], f["failed_tests"]) for f in docs["safety"]["late_oos_follow_ups"]]
    assert follow_ups == [(x.lot_id, list(x.open_tests)) for x in awaiting_follow_up(safety)]


def adverse_events_agree(
    api: InProcess, docs: dict[str, Any], events: list, as_of: datetime
) -> None:
    trial, safety, board = api.trial, api.states["safety"], docs["safety"]
    zone = trial.zone()
    aes = safety.adverse_events
    listed = {a["ae_id"]: a for a in board["adverse_events"]["list"]}
    assert set(listed) == set(aes)
    for ae_id, ae in aes.items():
        a = listed[ae_id]
        assert (a["subject_id"], a["grade"], a["serious_criteria"]) == (
            ae.subject_id,
            ae.grade,
            list(ae.serious_criteria),
        ), ae_id
        assert (a["attribution"], a["expected"], a["dlt"]) == (
            ae.attribution,
            ae.expected,
            ae.verdict,
        ), ae_id
    assert board["adverse_events"]["serious"] == sum(
        1 for ae in aes.values() if ae.serious_criteria
    )

    due = {
        (ae.ae_id, d.report): d for ae in aes.values() for d in due_for(ae, trial.reporting, zone)
    }
    shown = {(r["ae_id"], r["report"]): r for r in board["expedited_reports"]}
    assert set(shown) == set(due)
    for key, d in due.items():
        r = shown[key]
        assert (r["day_zero"], r["due_on"]) == (d.day_zero.isoformat(), d.due_on.isoformat()), key
        assert (r["status"] == "submitted") == (key[1] in aes[key[0]].submitted), key
    for e in events:
        if isinstance(e, ExpeditedReportDetermined):
            for d in e.reports_due:
                r = shown[(e.ae_id, d.report)]
                assert (r["day_zero"], r["due_on"]) == (
                    d.day_zero.isoformat(),
                    d.due_on.isoformat(),
                )
        elif isinstance(e, ExpeditedReportSubmitted):
            r = shown[(e.ae_id, e.report)]
            assert (r["status"], r["due_on"]) == ("submitted", e.due_on.isoformat())
            assert r["late"] == (calendar_day(e.submitted_at, zone) > e.due_on)
    # 21 CFR 312.32(c): a report is due by the end of its last calendar day in the sponsor's
    # time zone; one not submitted is overdue from the next day on.
    today = calendar_day(as_of, zone)
    overdue = {k for k, d in due.items() if k[1] not in aes[k[0]].submitted and today > d.due_on}
    assert {k for k, r in shown.items() if r["status"] == "overdue"} == overdue
    assert board["overdue_reports"] == len(overdue)

    awaiting = [ae.ae_id for ae in awaiting_determination(safety, trial.reporting)]
    assert [d["ae_id"] for d in board["determinations_due"]] == awaiting
    review = aggregate_review(safety, trial.reporting)
    assert {r["term"]: r["ae_ids"] for r in board["aggregate_review"]} == {
        term: [ae.ae_id for ae in listed_aes] for term, listed_aes in review.items()
    }


def dlt_counts_agree(api: InProcess, docs: dict[str, Any], events: list) -> None:
    safety = api.states["safety"]
    evaluated = {s: x for s, x in safety.subjects.items() if x.dlt_evaluated}
    with_dlt = {ae.subject_id for ae in safety.adverse_events.values() if ae.verdict == "dlt"}
    per_cohort: dict[str, dict[str, int]] = {}
    for subject, x in evaluated.items():
        assert x.infusion is not None, subject
        c = per_cohort.setdefault(x.infusion.cohort_id, {"evaluable": 0, "dlts": 0})
        c["evaluable"] += 1
        c["dlts"] += subject in with_dlt
    board = docs["safety"]["dlts_per_cohort"]
    assert {c: {k: v[k] for k in ("evaluable", "dlts")} for c, v in board.items()} == per_cohort

    # the level each patient counts at is the one dosing recorded with the infusion
    counted = {
        e.subject_id: e.counted_dose_level for e in events if isinstance(e, InfusionRecorded)
    }
    treated = Counter(level for level in counted.values() if level is not None)
    evaluable = Counter(counted[s] for s in evaluated if counted[s] is not None)
    dlts = Counter(counted[s] for s in evaluated if counted[s] is not None and s in with_dlt)
    for level in docs["dose-escalation"]["levels"]:
        name = level["dose_level"]
        assert (level["treated"], level["evaluable"], level["dlts"]) == (
            treated[name],
            evaluable[name],
            dlts[name],
        ), name


def dlt_windows_agree(
    api: InProcess, docs: dict[str, Any], events: list, as_of: datetime, window_ends: dict
) -> None:
    trial, safety = api.trial, api.states["safety"]
    windows = {w["subject_id"]: w for w in docs["safety"]["open_dlt_windows"]}
    open_ = {s for s, x in safety.subjects.items() if x.infusion and not x.dlt_evaluated}
    assert set(windows) == open_
    for subject, w in windows.items():
        infusion = safety.subjects[subject].infusion
        assert infusion is not None
        ends = window_ends_at(infusion.infused_at, trial.dlt.window_days, trial.zone())
        assert (w["cohort_id"], w["infused_at"], w["window_ends_at"]) == (
            infusion.cohort_id,
            infusion.infused_at.isoformat(),
            ends.isoformat(),
        ), subject
        assert w["window_over"] == (as_of >= ends), subject
        window_ends[subject] = w["window_ends_at"]
    for e in events:
        if isinstance(e, DltEvaluationCompleted) and not e.dlt and e.subject_id in window_ends:
            shown_end = datetime.fromisoformat(window_ends[e.subject_id])
            assert e.evaluated_at >= shown_end, (e.subject_id, e.evaluated_at, shown_end)


def escalation_agrees_with_enrollment(api: InProcess, docs: dict[str, Any], events: list) -> None:
    enrollment, escalation = api.states["enrollment"], docs["dose-escalation"]
    recommendations = {r["recommendation_id"]: r for r in escalation["recommendations"]}
    level = api.trial.escalation.start_level
    decided = 0
    for e in events:
        if not isinstance(e, CohortOpened | CohortExpanded):
            continue
        decided += 1
        level = enrollment.cohorts[e.cohort_id].dose_level
        if e.recommendation_id is None:
            continue
        rec = recommendations.get(e.recommendation_id)
        assert rec is not None, f"{e.cohort_id} cites {e.recommendation_id}, not shown"
        assert rec["next_level"] == level, (e.cohort_id, rec["next_level"], level)
    assert escalation["current_level"] == level
    decisions = [d for d in escalation["decisions"] if d["kind"] in ("open", "expand")]
    assert len(decisions) == decided
    for d in escalation["decisions"]:
        if d["cited"] is not None and d["kind"] != "close":
            assert d["followed"] == d["cited"], d
            assert recommendations[d["cited"]]["as_of"] <= d["occurred_at"], d


def pause_agrees(api: InProcess, docs: dict[str, Any]) -> None:
    enrollment, dosing, safety = (
        api.states["enrollment"],
        api.states["dosing"],
        api.states["safety"],
    )
    board = docs["safety"]
    paused = safety.enrollment_paused
    assert (enrollment.pause is not None, bool(dosing.pauses), board["enrollment_paused"]) == (
        paused,
        paused,
        paused,
    )
    assert board["paused_by"] == list(safety.pausing)
    assert [p.ae_id for p in dosing.pauses] == list(safety.pausing)
    if enrollment.pause is not None:
        assert enrollment.pause.ae_id in safety.pausing


# ---------------------------------------------------------------- the property


@pytest.mark.parametrize(("patients", "seed"), TRIALS)
def test_services_and_projections_agree_on_every_fact_of_a_simulated_trial(patients, seed):
    api = InProcess()
    rng = random.Random(seed)
    both = Both(api)
    steps = varied(plan(patients, seed, api.trial), rng)
    simulation = Checked(api, both, rng)
    simulation.run(steps)
    # the waiting subject, the late OOS and the reviewed pause happened; the trial went on
    types = Counter(t for _c, _s, t, _at, _u in api.appended)
    assert types["EnrollmentPaused"] >= 1 and types["EnrollmentResumed"] == 1
    assert types["LotReleased"] >= 1 and types["InfusionRecorded"] == patients
    assert types["SubjectWaitlisted"] == 1 and types["SubjectWithdrawn"] == 3
    late = [p for p in api.payloads if getattr(p, "after_release", False)]
    assert len(late) == 1

    last = short_dose_after_the_trial(api, both, rng, steps[-1].at) or steps[-1]
    end = fatal_ae_at_the_end(steps, last.at, rng)
    for step in end:
        simulation.execute(step)
    last = (end or [last])[-1].at
    for days in (0, 8, 16, 30):
        both.agree(last + timedelta(days=days))
    assert both.checks >= 10
    # the worker reads the topics interleaved in no fixed order: the same documents
    assert interleaved_documents(both, rng, last) == both.documents(last)


def interleaved_documents(both: Both, rng: random.Random, as_of: datetime) -> dict[str, Any]:
    """Every projection folded from the topics merged in a random order, each topic's own order
    kept (as a worker or a replay may read them)."""
    topics: dict[str, list] = {}
    for context, recorded in both.api.recorded():
        topics.setdefault(context, []).append(recorded)
    merged = []
    while topics:
        context = rng.choice(sorted(topics))
        merged.append((context, topics[context].pop(0)))
        if not topics[context]:
            del topics[context]
    documents = {}
    for name, projection in both.projections.items():
        states = fold(projection, [r for c, r in merged if c in projection.contexts])
        documents[name] = projection.document(states, as_of)
    return documents
