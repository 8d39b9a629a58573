"""``./scripts/up``'s demo leaves room for a patient of the user's own (issue 14; decision 45):
it treats ``DEMO_PATIENTS`` on the 3+3 path, whose last review de-escalates and expands the
lower dose's cohort to six (DOMAIN.md section 4: 2 DLTs in 6 exceed the MTD; the lower dose is
expanded to 6), and it enrolls nobody after that expansion, so its 3 new slots stay free."""

from __future__ import annotations

from clients.simulate_plan import plan
from trialops.stack import DEMO_PATIENTS


def test_the_demo_ends_by_expanding_dl1_ip_and_enrolls_nobody_after():
    steps = plan(DEMO_PATIENTS, 7)

    expansion = steps[-1]
    assert expansion.action == "expand-cohort"
    assert expansion.args == {"cohort_id": "DL1-IP", "additional_slots": 3}
    assert not [s for s in steps if s.action == "enroll" and s.at >= expansion.at]


def test_the_demo_treats_fewer_patients_than_the_trial_allows():
    """18 treated filled every place of the trial and left opening a cohort refused
    (trial-max-patients)."""
    from trial.config import load_trial

    assert load_trial().escalation.max_patients > DEMO_PATIENTS
