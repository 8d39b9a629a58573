"""Scenario simulator: a whole phase I trial driven through the public command API only.

``trialops simulate --patients 18 --seed 7`` plans the trial (``clients.simulate_plan``: a
pure function of the patients to treat and the seed) and sends its steps one after another,
as the demo user of each role, with the business times of the simulated calendar; it never
writes to a topic. It plays the dose-escalation review: after a cohort's last DLT evaluation
it waits until the Faust worker has applied every event it sent (the ``position`` of each
command's answer, the worker's ``?wait_for=TOPIC:PARTITION:OFFSET``), reads the design's
recommendation, checks it is the one the plan was built for, and opens, expands or closes
cohorts citing its ``recommendation_id``. ``speed`` is a wall-clock pause between commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from clients.http import call
from clients.journey import Journey, JourneyStepRefused, Transport, open_cohort, send
from clients.journey_steps import COORDINATOR, ELIGIBLE, INVESTIGATOR, MANUFACTURING_QA
from clients.simulate_plan import PlanError, plan
from clients.simulate_report import SimulationError, SimulationReport, WorkerView
from clients.simulate_steps import CRS_TERM, ICANS_TERM, Step
from trial.config import TrialConfig, load_trial

__all__ = ["PlanError", "Simulation", "SimulationError", "SimulationReport", "WorkerView", "plan"]

SAFETY_OFFICER = "demo-safety_officer"
EXPANSIONS = "/enrollment/cohorts/expansions"
CLOSURES = "/enrollment/cohorts/closures"
SHORT_TERMS = {CRS_TERM: "CRS", ICANS_TERM: "ICANS"}


class Simulation:
    """Sends a plan's steps through the command API and plays the dose-escalation review."""

    def __init__(
        self,
        service_url: str,
        projections_url: str,
        *,
        trial: TrialConfig | None = None,
        speed: float = 0.0,
        say: Callable[[str], None] = print,
        transport: Transport = call,
        view: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.service_url = service_url.rstrip("/")
        self.trial = trial or load_trial()
        self.speed, self.say, self.sleep = speed, say, sleep
        self.inner = transport
        self.view = view or WorkerView(projections_url, self.trial)
        self.positions: dict[str, tuple[int, int]] = {}
        """Topic -> (partition, offset) of the last event the simulation appended to it."""
        self.journeys: dict[tuple[str, str], Journey] = {}
        self.recommendation: dict | None = None
        self.report = SimulationReport(0, 0)

    # ---------------------------------------------------------------- running

    def run(self, steps: list[Step], *, patients: int = 0, seed: int = 0) -> SimulationReport:
        """Send every step in order (into a trial with no cohort yet); then read the worker's
        final dose-escalation document once it has applied everything sent."""
        self.report = SimulationReport(patients, seed)
        existing = self.view.document("cohort-occupancy", {}).get("cohorts")
        if existing:
            raise SimulationError(
                f"the trial already has cohorts ({', '.join(c['cohort_id'] for c in existing)})"
                ": simulate into a fresh namespace (TRIALOPS_NAMESPACE)"
            )
        started = time.monotonic()
        for step in steps:
            self.execute(step)
        self.report.escalation = self.view.document("dose-escalation", self.positions)
        self.report.seconds = time.monotonic() - started
        self.report.last_day = steps[-1].day if steps else 0
        return self.report

    def execute(self, step: Step) -> None:
        handler = getattr(self, "_" + step.action.replace("-", "_"))
        try:
            handler(step, **step.args)
        except JourneyStepRefused as exc:
            who = f" of {step.subject_id}" if step.subject_id else ""
            raise SimulationError(f"[day {step.day}] {step.action}{who} refused: {exc}") from exc
        if step.note:
            self.say(f"[day {step.day:3d}] {step.note}")

    def transport(self, method: str, url: str, body: Any = None, *, token=None):
        """The command transport, noting every appended event's position."""
        status, answer = self.inner(method, url, body, token=token)
        if status == 201:
            self.report.commands += 1
            for event in answer.get("events", []):
                position = event.get("position")
                if position:
                    seen = self.positions.get(position["topic"], (0, -1))
                    if position["offset"] > seen[1]:
                        self.positions[position["topic"]] = (
                            position["partition"],
                            position["offset"],
                        )
        if self.speed:
            self.sleep(self.speed)
        return status, answer

    def post(self, step: Step, path: str, body: dict, token: str) -> dict:
        body = {**body, "occurred_at": step.at.isoformat()}
        return send(self.service_url, step.action, path, body, token, self.transport)

    def journey(self, subject_id: str, lot: str = "A") -> Journey:
        """The subject's journey for ``lot`` (a re-collection starts lot B's journey)."""
        if (subject_id, lot) not in self.journeys:
            first = self.journeys[(subject_id, "A")]
            again = Journey(
                self.service_url,
                subject_id,
                first.site_id,
                first.clock_start,
                weight_kg=first.weight_kg,
                height_cm=first.height_cm,
                lot_suffix=lot,
                trial=self.trial,
                transport=self.transport,
            )
            again.cohort = first.cohort
            self.journeys[(subject_id, lot)] = again
        return self.journeys[(subject_id, lot)]

    def latest(self, subject_id: str) -> Journey:
        return self.journeys.get((subject_id, "B")) or self.journeys[(subject_id, "A")]

    # ---------------------------------------------------------------- screening, enrollment

    def _register(self, step: Step, *, site_id, clock_start, weight_kg=72.0, height_cm=170.0):
        j = Journey(
            self.service_url,
            step.subject,
            site_id,
            clock_start,
            weight_kg=weight_kg,
            height_cm=height_cm,
            trial=self.trial,
            transport=self.transport,
        )
        self.journeys[(step.subject, "A")] = j
        j.register(at=step.at)
        self.report.screened += 1

    def _screen_failed(self, step: Step, answer: dict, why: str) -> None:
        if any(e["event_type"] == "SubjectScreenFailed" for e in answer["events"]):
            self.report.screen_failures.append((step.subject, why))

    def _prescreen(self, step: Step, *, msln_ihc_percent):
        answer = self.journey(step.subject).prescreen(msln_ihc_percent, at=step.at)
        self._screen_failed(step, answer, f"MSLN {msln_ihc_percent:g}%")

    def _consent(self, step: Step):
        self.journey(step.subject).consent(at=step.at)

    def _assess_eligibility(self, step: Step, **evidence):
        answer = self.journey(step.subject).assess_eligibility(at=step.at, **evidence)
        why = [f"ECOG {evidence['ecog']}"] if "ecog" in evidence else []
        labs = evidence.get("labs", {})
        why += [
            f"{k.removesuffix('_10e9_per_l').replace('_', ' ')} {v:g}"
            for k, v in labs.items()
            if ELIGIBLE["labs"].get(k) != v
        ]
        self._screen_failed(step, answer, ", ".join(why) or "criteria not met")

    def _screen_failure(self, step: Step, *, reason_code):
        body = {"subject_id": step.subject, "reason_code": reason_code}
        self.post(step, "/enrollment/screen-failures", body, INVESTIGATOR)
        self.report.screen_failures.append((step.subject, reason_code))

    def _enroll(self, step: Step, *, cohort_id, dose_level):
        self.journey(step.subject).enroll(cohort_id, dose_level=dose_level, at=step.at)
        self.report.enrolled += 1

    def _withdraw(self, step: Step, *, reason_code):
        body = {"subject_id": step.subject, "reason_code": reason_code}
        self.post(step, "/enrollment/withdrawals", body, INVESTIGATOR)
        self.report.withdrawn.append((step.subject, reason_code))

    # ---------------------------------------------------------------- the product

    def _apheresis(self, step: Step, *, lot):
        self.journey(step.subject, lot).apheresis(at=step.at)
        self.report.lots += 1

    def _custody_to_courier(self, step: Step, *, lot):
        self.journey(step.subject, lot).custody_to_courier(at=step.at)

    def _receive_apheresis(self, step: Step, *, lot):
        self.journey(step.subject, lot).receive_apheresis(at=step.at)

    def _manufacturing_step(self, step: Step, lot: str) -> None:
        self.journey(step.subject, lot).start_step(step.action, at=step.at)

    def _activation(self, step: Step, *, lot):
        self._manufacturing_step(step, lot)

    _gene_transfer = _expansion = _activation

    def _manufacturing_failure(self, step: Step, *, lot, reason_code):
        j = self.journey(step.subject, lot)
        body = {"lot_id": j.lot_id, "reason_code": reason_code}
        self.post(step, "/manufacturing/failures", body, MANUFACTURING_QA)
        self.report.failed_lots.append(j.lot_id)

    def _harvest(self, step: Step, *, lot):
        self.journey(step.subject, lot).harvest(at=step.at)

    def _qc(self, step: Step, *, lot, test, result):
        self.journey(step.subject, lot).qc_result(test, result, at=step.at)

    def _disposition(self, step: Step, *, lot):
        j = self.journey(step.subject, lot)
        answer = j.disposition(at=step.at)
        if any(e["event_type"] == "LotOutOfSpecification" for e in answer["events"]):
            self.report.out_of_specification.append(j.lot_id)

    def _exceptional_release(self, step: Step, *, lot, role):
        self.journey(step.subject, lot).decide_exceptional_release(role, at=step.at)

    def _cryopreserve(self, step: Step, *, lot):
        self.journey(step.subject, lot).cryopreserve(at=step.at)

    def _ship(self, step: Step, *, lot):
        self.journey(step.subject, lot).ship(at=step.at)

    def _receive_at_site(self, step: Step, *, lot):
        self.journey(step.subject, lot).receive_at_site(at=step.at)

    def _reconfirm_eligibility(self, step: Step, *, lot):
        self.journey(step.subject, lot).reconfirm_eligibility(at=step.at)

    def _conditioning(self, step: Step, *, lot, day):
        self.journey(step.subject, lot).condition(day, at=step.at)

    def _thaw(self, step: Step, *, lot):
        self.journey(step.subject, lot).thaw(at=step.at)

    def _bedside(self, step: Step, *, lot, role):
        token = INVESTIGATOR if role == "investigator" else COORDINATOR
        self.journey(step.subject, lot).verify_bedside_coi(token, at=step.at)

    def _infuse(self, step: Step, *, lot, cells_infused):
        self.journey(step.subject, lot).infuse(cells_infused=cells_infused, at=step.at)
        self.report.treated += 1

    # ---------------------------------------------------------------- safety

    def _report_ae(self, step: Step, *, ae_id, term, grade, onset_at, **assessment):
        j = self.latest(step.subject)
        j.report_ae(term, grade, onset_at=onset_at, at=step.at, **assessment)
        if j.ae_ids[-1] != ae_id:
            raise SimulationError(
                f"{step.subject}: the plan's {ae_id} was sent as {j.ae_ids[-1]}"
            )
        self.report.adverse_events[SHORT_TERMS.get(term, term)] += 1
        self.report.worst_grades[ae_id] = grade

    def _grade_crs(self, step: Step, *, ae_id, observation, grade):
        self.latest(step.subject).grade_crs(ae_id, observation, at=step.at)
        self._raise_grade(ae_id, grade)

    def _grade_icans(self, step: Step, *, ae_id, observation, grade):
        body = {"ae_id": ae_id, "observation": observation}
        self.post(step, "/safety/icans-grades", body, INVESTIGATOR)
        self._raise_grade(ae_id, grade)

    def _raise_grade(self, ae_id: str, grade: int) -> None:
        """The ASTCT grade the plan's observation gives (services/safety/grading.py)."""
        self.report.worst_grades[ae_id] = max(self.report.worst_grades.get(ae_id, 0), grade)

    def _record_improvement(self, step: Step, *, ae_id, improved_at):
        body = {
            "ae_id": ae_id,
            "outcome": "grade-2-or-less",
            "improved_at": improved_at.isoformat(),
        }
        self.post(step, "/safety/resolutions", body, COORDINATOR)

    def _adjudicate_dlt(self, step: Step, *, ae_id, verdict):
        self.latest(step.subject).adjudicate_dlt(ae_id, verdict, at=step.at)
        self.report.dlts += verdict == "dlt"

    def _dlt_evaluation(self, step: Step):
        self.latest(step.subject).close_dlt_evaluation(at=step.at)

    def _determine_expedited_report(self, step: Step, *, ae_id):
        self.post(step, "/safety/expedited-report-determinations", {"ae_id": ae_id}, SAFETY_OFFICER)

    def _submit_expedited_report(self, step: Step, *, ae_id, report, reference, due_on):
        body = {"ae_id": ae_id, "report": report, "reference": reference}
        self.post(step, "/safety/expedited-reports", body, SAFETY_OFFICER)
        self.report.reports_submitted.append(
            f"{report} for {ae_id} on {step.at.date()} (due {due_on})"
        )

    # ---------------------------------------------------------------- the review

    def _review(self, step: Step, *, expect, next_level, mtd_level, level, after_evaluation_of):
        document = self.view.document("dose-escalation", self.positions)
        rec = document.get("recommendation") or {}
        wanted = (expect, next_level, mtd_level, after_evaluation_of)
        got = tuple(
            rec.get(k) for k in ("decision", "next_level", "mtd_level", "after_evaluation_of")
        )
        if got != wanted:
            raise SimulationError(
                f"[day {step.day}] the review after {level} expected the design to recommend "
                f"{wanted} (decision, next level, MTD, after the evaluation of), the worker "
                f"says {got}: {rec.get('rule')}"
            )
        self.recommendation = rec
        shown = expect
        if next_level:
            shown += f" {'at' if next_level == level else 'to'} {next_level}"
        shown += f" (MTD {mtd_level})" if mtd_level else ""
        self.report.reviews.append(f"day {step.day} {shown} [{rec['recommendation_id']}]")
        self.say(
            f"[day {step.day:3d}] dose-escalation review after {level}: the design recommends "
            f"{shown} ({rec['rule']}) [{rec['recommendation_id']}]"
        )

    def _cited(self) -> str:
        if self.recommendation is None:
            raise SimulationError("a review decision before any recommendation was read")
        return self.recommendation["recommendation_id"]

    def _open_cohort(self, step: Step, *, cohort_id, dose_level, cite):
        open_cohort(
            self.service_url,
            dose_level,
            occurred_at=step.at,
            cohort_id=cohort_id,
            recommendation_id=self._cited() if cite else None,
            trial=self.trial,
            transport=self.transport,
        )

    def _expand_cohort(self, step: Step, *, cohort_id, additional_slots):
        body = {
            "cohort_id": cohort_id,
            "additional_slots": additional_slots,
            "recommendation_id": self._cited(),
        }
        self.post(step, EXPANSIONS, body, INVESTIGATOR)

    def _close_cohort(self, step: Step, *, cohort_id, reason):
        cited = f" (recommendation {self._cited()})" if self.recommendation else ""
        self.post(step, CLOSURES, {"cohort_id": cohort_id, "reason": reason + cited}, INVESTIGATOR)


def simulate(
    patients: int,
    seed: int,
    service_url: str,
    projections_url: str,
    *,
    speed: float = 0.0,
    say: Callable[[str], None] = print,
    trial: TrialConfig | None = None,
) -> SimulationReport:
    """Plan and run a trial against running services and worker; returns the report."""
    trial = trial or load_trial()
    steps = plan(patients, seed, trial)
    simulation = Simulation(service_url, projections_url, trial=trial, speed=speed, say=say)
    return simulation.run(steps, patients=patients, seed=seed)
