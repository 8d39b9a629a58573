"""A small demo: the dose-escalation review opens two cohorts, a site registers and enrolls a
few subjects, one of whom lands on a waiting list."""

from __future__ import annotations

from collections.abc import Callable

from trialops.http_client import call

INVESTIGATOR = "demo-investigator"
COORDINATOR = "demo-site_coordinator"

COHORTS = [
    {
        "cohort_id": "DL1-IP",
        "dose_level": "DL1",
        "dose_cells_per_kg": 1e6,
        "route": "intraperitoneal",
        "capacity": 3,
    },
    {
        "cohort_id": "DL2-IP",
        "dose_level": "DL2",
        "dose_cells_per_kg": 3e6,
        "route": "intraperitoneal",
        "capacity": 3,
    },
]
SUBJECTS = [f"MSK-{n:04d}" for n in range(1, 6)]
PLAN = [
    ("MSK-0001", "DL1-IP"),
    ("MSK-0002", "DL1-IP"),
    ("MSK-0003", "DL1-IP"),
    ("MSK-0004", "DL1-IP"),
    ("MSK-0005", "DL2-IP"),
]


def seed(service_url: str, say: Callable[[str], None] = print) -> None:
    def send(path: str, body: dict, token: str) -> None:
        status, answer = call("POST", f"{service_url}{path}", body, token=token)
        if status == 201:
            event = answer["events"][0]
            say(f"  {event['event_type']:<18} {event['stream_id']:<18} seq {event['stream_seq']}")
        elif status == 409:
            say(f"  already done: {answer['message']}")
        else:
            raise RuntimeError(f"demo step {path} {body} failed: {status} {answer}")

    for cohort in COHORTS:
        send("/enrollment/cohorts", cohort, INVESTIGATOR)
    for subject in SUBJECTS:
        send("/enrollment/subjects", {"subject_id": subject, "site_id": "MSK"}, COORDINATOR)
    for subject, cohort in PLAN:
        send(
            "/enrollment/enrollments",
            {"subject_id": subject, "cohort_id": cohort, "waitlist_if_full": True},
            COORDINATOR,
        )
