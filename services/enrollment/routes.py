"""HTTP routes of the enrollment service."""

from __future__ import annotations

from services.catalog import Route, ServiceSpec
from services.enrollment import decider
from services.runtime import Decider


def make_decider(_trial) -> Decider:
    return Decider(decider.initial_state, decider.decide, decider.evolve)


SERVICE = ServiceSpec(
    context="enrollment",
    make_decider=make_decider,
    routes=(
        Route("/enrollment/cohorts", "open-cohort", decider.OpenCohort),
        Route("/enrollment/subjects", "register-subject", decider.RegisterSubject),
        Route("/enrollment/enrollments", "enroll-subject", decider.EnrollSubject),
    ),
)
