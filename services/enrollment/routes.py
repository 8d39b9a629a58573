"""HTTP routes of the enrollment service.

It follows manufacturing (lot released, out of specification, exceptional release: for the
re-confirmation of eligibility), dosing (infusion given: a withdrawal after it keeps the
slot) and safety (enrollment paused and resumed by the stopping rule)."""

from __future__ import annotations

from services.catalog import Route, ServiceSpec
from services.enrollment import commands as c
from services.enrollment.decider import make_decider

SERVICE = ServiceSpec(
    context="enrollment",
    make_decider=make_decider,
    routes=(
        Route("/enrollment/subjects", "register-subject", c.RegisterSubject),
        Route("/enrollment/prescreenings", "record-prescreening", c.RecordPrescreening),
        Route("/enrollment/consents", "record-consent", c.RecordConsent),
        Route("/enrollment/eligibility-assessments", "assess-eligibility", c.AssessEligibility),
        Route("/enrollment/screen-failures", "record-screen-failure", c.RecordScreenFailure),
        Route("/enrollment/prior-therapies", "record-prior-therapy", c.RecordPriorTherapy),
        Route("/enrollment/cohorts", "open-cohort", c.OpenCohort),
        # The trial file has no "expand-cohort": an expansion is an opening decision.
        Route("/enrollment/cohorts/expansions", "open-cohort", c.ExpandCohort),
        Route("/enrollment/cohorts/closures", "close-cohort", c.CloseCohort),
        Route("/enrollment/enrollments", "enroll-subject", c.EnrollSubject),
        Route("/enrollment/withdrawals", "withdraw-subject", c.WithdrawSubject),
        Route(
            "/enrollment/eligibility-reconfirmations",
            "reconfirm-eligibility",
            c.ReconfirmEligibility,
        ),
    ),
    upstream=("manufacturing", "dosing", "safety"),
)
