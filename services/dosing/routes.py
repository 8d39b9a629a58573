"""HTTP routes of the dosing service. It follows enrollment (cohorts, enrollment, eligibility
re-check, withdrawal), manufacturing (release, out of specification, exceptional release,
thaw) and safety (the stopping rule's pause and its lifting) read-only."""

from __future__ import annotations

from services.catalog import Route, ServiceSpec
from services.dosing import decider

SERVICE = ServiceSpec(
    context="dosing",
    make_decider=decider.make_decider,
    routes=(
        Route(
            "/dosing/conditioning-days", "record-conditioning-day", decider.RecordConditioningDay
        ),
        Route("/dosing/bedside-checks", "verify-bedside-coi", decider.VerifyBedsideCoi),
        Route(
            "/dosing/identity-mismatches",
            "record-bedside-identity-mismatch",
            decider.RecordBedsideIdentityMismatch,
        ),
        Route("/dosing/infusions", "record-infusion", decider.RecordInfusion),
    ),
    upstream=("enrollment", "manufacturing", "safety"),
)
