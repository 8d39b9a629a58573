"""HTTP routes of the safety service. It follows dosing (the infusion opens the DLT window; the
lot infused), enrollment (registered subjects and their cohort) and manufacturing (a lot out of
specification after its release) read-only."""

from __future__ import annotations

from services.catalog import Route, ServiceSpec
from services.safety import commands
from services.safety.decider import make_decider

SERVICE = ServiceSpec(
    context="safety",
    make_decider=make_decider,
    routes=(
        Route("/safety/adverse-events", "report-adverse-event", commands.ReportAdverseEvent),
        Route("/safety/crs-grades", "grade-crs", commands.GradeCrs),
        Route("/safety/icans-grades", "grade-icans", commands.GradeIcans),
        Route("/safety/regrades", "regrade-adverse-event", commands.RegradeAdverseEvent),
        Route("/safety/resolutions", "record-ae-resolution", commands.RecordAeResolution),
        # Part 11: the investigator signs a DLT adjudication; the safety officer signs a submission.
        Route(
            "/safety/dlt-adjudications",
            "adjudicate-dlt",
            commands.AdjudicateDlt,
            signature="review",
        ),
        Route(
            "/safety/expedited-report-determinations",
            "determine-expedited-report",
            commands.DetermineExpeditedReport,
        ),
        Route(
            "/safety/expedited-reports",
            "submit-expedited-report",
            commands.SubmitExpeditedReport,
            signature="responsibility",
        ),
        Route("/safety/reviews", "record-safety-review", commands.RecordSafetyReview),
        Route("/safety/dlt-evaluations", "record-dlt-evaluation", commands.RecordDltEvaluation),
        Route(
            "/safety/late-oos-follow-ups",
            "record-late-oos-follow-up",
            commands.RecordLateOosFollowUp,
        ),
    ),
    upstream=("dosing", "enrollment", "manufacturing"),
)
