"""Safety overview: adverse events by grade, seriousness and attribution; DLTs per cohort;
open DLT windows; the expedited-reporting clock (due, submitted, overdue) as of the time of the
query; and the stopping rule's state (DOMAIN.md section 3).

The clock uses the safety service's own rule (services/safety/reporting.py), so the projection
and the service cannot disagree on a deadline. Facts are kept per AE; the AE's current
assessment is its report overlaid by its regrades in business-time order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

from events.dosing import InfusionRecorded
from events.registry import Recorded
from events.safety import (
    AdverseEventImproved,
    AdverseEventRegraded,
    AdverseEventReported,
    CrsGraded,
    DltAdjudicated,
    DltEvaluationCompleted,
    EnrollmentPaused,
    EnrollmentResumed,
    ExpeditedReportDetermined,
    ExpeditedReportSubmitted,
    IcansGraded,
)
from projections.base import Projection, State, ordered_insert, stamp
from projections.bounded import bounded
from services.safety.reporting import SafetyCase, reports_due
from trial.config import TrialConfig

NAME = "safety"

_FACTS = (
    AdverseEventReported,
    AdverseEventRegraded,
    AdverseEventImproved,
    CrsGraded,
    IcansGraded,
    DltAdjudicated,
    DltEvaluationCompleted,
    ExpeditedReportDetermined,
    ExpeditedReportSubmitted,
    EnrollmentPaused,
    EnrollmentResumed,
    InfusionRecorded,
)


def key_of(recorded: Recorded) -> str | None:
    """Facts are kept per AE, per subject (infusion, DLT evaluation) and for the stopping rule:
    small table values, whatever the size of the trial."""
    event = recorded.payload
    if not isinstance(event, _FACTS):
        return None
    if isinstance(event, EnrollmentPaused | EnrollmentResumed):
        return "stopping-rule"
    if isinstance(event, InfusionRecorded | DltEvaluationCompleted):
        return f"subject:{event.subject_id}"
    return f"ae:{event.ae_id}"


def initial(key: str) -> State:
    return {"key": key, "facts": []}


def apply(state: State, recorded: Recorded) -> State:
    fact = {
        **stamp(recorded),
        "type": recorded.envelope.event_type,
        "payload": bounded(recorded.payload.model_dump(mode="json")),
    }
    return {**state, "facts": ordered_insert(state["facts"], fact)}


def make(trial: TrialConfig) -> Projection:
    def render_at(states: Mapping[str, State], as_of: datetime) -> dict:
        facts = sorted(
            (f for s in states.values() for f in s["facts"]),
            key=lambda f: (f["occurred_at"], f["recorded_at"], f["event_id"]),
        )
        aes: dict[str, dict] = {}
        infusions: dict[str, dict] = {}
        evaluations: dict[str, dict] = {}
        adjudications: dict[str, str] = {}
        determinations: dict[str, dict] = {}
        follow_ups: dict[str, list] = {}
        submitted: dict[tuple[str, str], dict] = {}
        pausing: list[str] = []
        for f in facts:
            p = f["payload"]
            match f["type"]:
                case "AdverseEventReported":
                    aes[p["ae_id"]] = {**p, "worst_grade": p["grade"], "improved": None}
                case "AdverseEventRegraded":
                    if p["ae_id"] in aes:
                        ae = aes[p["ae_id"]]
                        aes[p["ae_id"]] = {
                            **ae,
                            **p["new"],
                            "worst_grade": max(ae["worst_grade"], p["new"]["grade"]),
                        }
                case "CrsGraded" | "IcansGraded":
                    if p["ae_id"] in aes:
                        ae = aes[p["ae_id"]]
                        aes[p["ae_id"]] = {**ae, "worst_grade": max(ae["worst_grade"], p["grade"])}
                case "AdverseEventImproved":
                    if p["ae_id"] in aes:
                        aes[p["ae_id"]] = {**aes[p["ae_id"]], "improved": p["outcome"]}
                case "DltAdjudicated":
                    adjudications[p["ae_id"]] = p["verdict"]
                case "InfusionRecorded":
                    infusions[p["subject_id"]] = p
                case "DltEvaluationCompleted":
                    evaluations[p["subject_id"]] = p
                case "ExpeditedReportDetermined":
                    if p["basis"] == "initial":
                        determinations[p["ae_id"]] = p
                    else:
                        follow_ups.setdefault(p["ae_id"], []).extend(p["reports_due"])
                case "ExpeditedReportSubmitted":
                    submitted[(p["ae_id"], p["report"])] = p
                case "EnrollmentPaused":
                    pausing.append(p["ae_id"])
                case "EnrollmentResumed":
                    pausing = []
        today = as_of.date()
        reports = []
        for ae_id, ae in sorted(aes.items()):
            case = SafetyCase(
                serious_criteria=tuple(ae["serious_criteria"]),
                attribution=ae["attribution"],
                expected=ae["expected"],
                sponsor_received_at=datetime.fromisoformat(ae["sponsor_received_at"]),
                determined_at=datetime.fromisoformat(determinations[ae_id]["determined_at"])
                if ae_id in determinations
                else None,
            )
            due = [d.model_dump(mode="json") for d in reports_due(case, trial.reporting)]
            for d in [*due, *follow_ups.get(ae_id, [])]:
                done = submitted.get((ae_id, d["report"]))
                due_on = date.fromisoformat(d["due_on"])
                status = "submitted" if done else "overdue" if today > due_on else "due"
                reports.append(
                    {
                        "ae_id": ae_id,
                        "subject_id": ae["subject_id"],
                        "report": d["report"],
                        "day_zero": d["day_zero"],
                        "due_on": d["due_on"],
                        "status": status,
                        "days_left": None if done else (due_on - today).days,
                        "submitted_at": done["submitted_at"] if done else None,
                        "late": bool(done) and done["submitted_at"][:10] > d["due_on"],
                    }
                )
        window = timedelta(days=trial.dlt.window_days)
        open_windows = []
        for subject_id, inf in sorted(infusions.items()):
            ends = datetime.fromisoformat(inf["infused_at"]) + window
            if subject_id not in evaluations:
                open_windows.append(
                    {
                        "subject_id": subject_id,
                        "cohort_id": inf["cohort_id"],
                        "dose_level": inf["dose_level"],
                        "infused_at": inf["infused_at"],
                        "window_ends_at": ends.isoformat(),
                        "days_left": max((ends - as_of).days, 0),
                        "window_over": as_of >= ends,
                    }
                )
        dlts_per_cohort: dict[str, dict] = {}
        for ev in evaluations.values():
            c = dlts_per_cohort.setdefault(
                ev["cohort_id"], {"dose_level": ev["dose_level"], "evaluable": 0, "dlts": 0}
            )
            c["evaluable"] += 1
            c["dlts"] += int(ev["dlt"])

        def count(values) -> dict[str, int]:
            out: dict[str, int] = {}
            for v in values:
                out[str(v)] = out.get(str(v), 0) + 1
            return dict(sorted(out.items()))

        listed = list(aes.values())
        return {
            "projection": NAME,
            "as_of": as_of.isoformat(),
            "adverse_events": {
                "total": len(listed),
                "by_worst_grade": count(ae["worst_grade"] for ae in listed),
                "serious": sum(1 for ae in listed if ae["serious_criteria"]),
                "by_seriousness_criterion": count(
                    c for ae in listed for c in ae["serious_criteria"]
                ),
                "by_attribution": count(ae["attribution"] for ae in listed),
                "of_special_interest": sum(1 for ae in listed if ae.get("special_interest")),
                "list": [
                    {
                        "ae_id": ae["ae_id"],
                        "subject_id": ae["subject_id"],
                        "term": ae["term"],
                        "grade": ae["grade"],
                        "worst_grade": ae["worst_grade"],
                        "serious_criteria": ae["serious_criteria"],
                        "attribution": ae["attribution"],
                        "expected": ae["expected"],
                        "improved": ae["improved"],
                        "dlt": adjudications.get(ae["ae_id"]),
                    }
                    for ae in sorted(listed, key=lambda a: a["ae_id"])
                ],
            },
            "dlts_per_cohort": dict(sorted(dlts_per_cohort.items())),
            "open_dlt_windows": open_windows,
            "expedited_reports": reports,
            "overdue_reports": sum(1 for r in reports if r["status"] == "overdue"),
            "enrollment_paused": bool(pausing),
            "paused_by": pausing,
        }

    def render(states: Mapping[str, State]) -> dict:
        raise TypeError("the safety overview depends on the time it is read at: use render_at")

    return Projection(
        name=NAME,
        contexts=("safety", "dosing"),
        key_of=key_of,
        initial=initial,
        apply=apply,
        render=render,
        key_name="key",
        render_at=render_at,
    )
