"""A small demo through the real path: the dose-escalation review opens DL1 at the protocol's
start level; five subjects are pre-screened, consent and are assessed eligible, a sixth fails
pre-screening (MSLN below 25%); three take DL1's slots and the fourth waits; the review then
opens DL2 citing the design's recommendation, and the first in line and the fifth take its
slots. (A real review opens DL2 only after DL1's DLT window: the demo compresses time.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from trialops.http_client import call

INVESTIGATOR = "demo-investigator"
COORDINATOR = "demo-site_coordinator"

ELIGIBLE = [f"MSK-{n:04d}" for n in range(1, 6)]
MSLN_NEGATIVE = "MSK-0006"
PLAN = [
    ("MSK-0001", "DL1-IP"),
    ("MSK-0002", "DL1-IP"),
    ("MSK-0003", "DL1-IP"),
    ("MSK-0004", "DL2-IP"),
    ("MSK-0005", "DL2-IP"),
]
"""Where each subject ends up: MSK-0004 waits for DL1-IP, then takes a DL2-IP slot."""

LABS = {
    "absolute_neutrophil_count_10e9_per_l": 2.4,
    "platelets_10e9_per_l": 210.0,
    "hemoglobin_g_per_dl": 11.5,
    "creatinine_clearance_ml_per_min": 82.0,
    "total_bilirubin_x_uln": 0.8,
    "alt_x_uln": 1.0,
}


def seed(service_url: str, say: Callable[[str], None] = print) -> None:
    now = datetime.now(UTC)
    signed_at = (now - timedelta(days=10)).isoformat()
    screening_started_at = (now - timedelta(days=9)).isoformat()

    def send(path: str, body: dict, token: str = COORDINATOR) -> None:
        status, answer = call("POST", f"{service_url}{path}", body, token=token)
        if status == 201:
            for event in answer["events"]:
                say(
                    f"  {event['event_type']:<20} {event['stream_id']:<18} "
                    f"seq {event['stream_seq']}"
                )
        elif status == 409:
            say(f"  already done: {answer['message']}")
        else:
            raise RuntimeError(f"demo step {path} {body} failed: {status} {answer}")

    def screen(subject: str, msln_percent: float) -> None:
        send("/enrollment/subjects", {"subject_id": subject, "site_id": "MSK"})
        send(
            "/enrollment/prescreenings",
            {"subject_id": subject, "msln_ihc_percent": msln_percent},
        )

    send("/enrollment/cohorts", {"cohort_id": "DL1-IP", "dose_level": "DL1"}, INVESTIGATOR)
    for subject in ELIGIBLE:
        screen(subject, 60.0)
        send(
            "/enrollment/consents",
            {"subject_id": subject, "form_version": "ICF-v1", "signed_at": signed_at},
        )
        send(
            "/enrollment/eligibility-assessments",
            {
                "subject_id": subject,
                "peritoneal_carcinomatosis_by": ["imaging"],
                "prior_lines": 2,
                "recist_lesion": "measurable",
                "age_years": 58,
                "ecog": 1,
                "labs": LABS,
                "active_infection": False,
                "screening_started_at": screening_started_at,
            },
            INVESTIGATOR,
        )
    screen(MSLN_NEGATIVE, 10.0)

    for subject in ("MSK-0001", "MSK-0002", "MSK-0003", "MSK-0004"):
        send(
            "/enrollment/enrollments",
            {"subject_id": subject, "cohort_id": "DL1-IP", "waitlist_if_full": True},
        )
    send(
        "/enrollment/cohorts",
        {"cohort_id": "DL2-IP", "dose_level": "DL2", "recommendation_id": "REC-DL1-ESCALATE"},
        INVESTIGATOR,
    )
    for subject in ("MSK-0004", "MSK-0005"):
        send("/enrollment/enrollments", {"subject_id": subject, "cohort_id": "DL2-IP"})
