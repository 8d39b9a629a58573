"""Adverse events: reporting, CRS/ICANS grading, regrades and corrections, improvement.

Sources: DOMAIN.md section 3; CTCAE v5 (grades 1-5, grade 5 = death related to the AE);
21 CFR 312.32(a) / ICH E2A (seriousness criteria); ASTCT consensus grading, Lee et al., BBMT
2019 (CRS, ICANS); DESIGN.md section 2 (a correction is a new event referencing the original).
Every refused command raises the rule's error and emits nothing.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.safety import (
    AdverseEventReported,
    CrsFindings,
    CrsGraded,
    IcansFindings,
)
from services.decider import NewEvent
from services.errors import NotFound, RuleViolated
from services.safety import grading
from services.safety.commands import COMMANDS
from services.safety.routes import SERVICE

from .test_safety_givens import (
    AE,
    DECIDER,
    SUBJECT,
    TRIAL,
    day,
    given,
    grade_crs,
    grade_icans,
    registered,
    report,
    reported,
    run,
    treated,
)

# ---------------------------------------------------------------- reporting


def test_reporting_an_ae_records_every_assessed_value_on_the_ae_stream():
    # Given a registered, enrolled and infused subject
    state = given(treated())

    # When the site reports a grade 3 pericarditis, serious (hospitalisation), unexpected
    events = DECIDER.decide(
        report(
            term="Pericarditis",
            grade=3,
            serious_criteria=("hospitalisation",),
            attribution="probable",
            expected=False,
        ),
        state,
    )

    # Then one AdverseEventReported, flagged as serositis (on-target, off-tumour)
    assert events == [
        NewEvent(
            "ae-AE-0007-01",
            AdverseEventReported(
                ae_id=AE,
                subject_id=SUBJECT,
                term="Pericarditis",
                grade=3,
                onset_at=day(1),
                serious_criteria=("hospitalisation",),
                attribution="probable",
                expected=False,
                sponsor_received_at=day(1, hours=4),
                special_interest="serositis",
                haematological=False,
                conditioning_lab_effect=False,
                ctcae_version="5.0",
            ),
            day(1, hours=5),
        )
    ]


@pytest.mark.parametrize(
    ("term", "flagged", "special"),
    [
        ("Pleuritis", False, "serositis"),
        ("pericarditis", False, "serositis"),
        ("Peritonitis", False, "serositis"),
        ("Pleural effusion", True, "serositis"),
        ("Pleural effusion", False, None),
        ("Nausea", False, None),
    ],
)
def test_serositis_is_always_an_ae_of_special_interest(term, flagged, special):
    (event,) = DECIDER.decide(report(term=term, special_interest=flagged), given(treated()))

    assert event.payload.special_interest == special


def test_an_ae_of_an_unknown_subject_is_refused():
    with pytest.raises(NotFound) as refused:
        DECIDER.decide(report(subject_id="MSK-0099"), given(treated()))

    assert refused.value.rule == "subject-must-be-registered"
    assert refused.value.details == {"subject_id": "MSK-0099"}


def test_an_ae_may_be_reported_before_infusion_for_a_registered_subject():
    (event,) = DECIDER.decide(
        report(onset_at=day(-3), sponsor_received_at=day(-2), occurred_at=day(-2)),
        given(registered()),
    )

    assert isinstance(event.payload, AdverseEventReported)


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        (dict(onset_at=day(2)), "time-not-in-the-future"),
        (dict(sponsor_received_at=day(1, hours=6)), "time-not-in-the-future"),
        (dict(sponsor_received_at=day(0)), "sponsor-received-after-onset"),
        (dict(grade=5, serious_criteria=("hospitalisation",)), "death-is-grade-5"),
        (dict(grade=4, serious_criteria=("death",)), "death-is-grade-5"),
    ],
)
def test_an_incoherent_report_is_refused(fields, rule):
    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(report(**fields), given(treated()))

    assert refused.value.rule == rule


def test_an_ae_id_is_reported_once():
    state = reported()

    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(report(term="Nausea"), state)

    assert refused.value.rule == "ae-reported-once"


@pytest.mark.parametrize(
    "fields",
    [
        dict(grade=0),
        dict(grade=6),
        dict(attribution="likely"),
        dict(serious_criteria=("hospitalisation", "hospitalisation")),
        dict(serious_criteria=("disabled",)),
        dict(ae_id="0007"),
        dict(onset_at="2026-03-03T10:30:00"),
    ],
)
def test_a_malformed_report_is_refused_at_the_edge(fields):
    with pytest.raises(ValidationError):
        report(**fields)


# ---------------------------------------------------------------- CRS / ICANS


def test_a_crs_observation_is_graded_by_the_astct_calculator_and_recorded_with_it():
    state = reported()

    (event,) = DECIDER.decide(grade_crs(day(2), hypotension="one-vasopressor"), state)

    assert event.payload == CrsGraded(
        ae_id=AE,
        subject_id=SUBJECT,
        observed_at=day(2),
        observation=CrsFindings(
            temperature_c=39.0,
            fever_masked=False,
            hypotension="one-vasopressor",
            hypoxia="none",
            death=False,
        ),
        grade=3,
        determined_by=("hypotension",),
    )


def test_a_higher_observed_grade_raises_the_ae_and_starts_its_severe_clock():
    _events, state = run(reported(), grade_crs(day(2), hypoxia="high-flow"))

    ae = state.adverse_events[AE]
    assert (ae.grade, ae.severe_since) == (3, day(2))


def test_a_lower_observed_grade_leaves_the_worst_grade():
    _events, state = run(reported(grade=3), grade_crs(day(2), hypoxia="low-flow"))

    assert state.adverse_events[AE].grade == 3


def test_an_icans_assessment_is_graded_for_an_icans_ae():
    state = reported(term="ICANS")

    (event,) = DECIDER.decide(grade_icans(day(2), ice_score=5, consciousness="voice"), state)

    assert (event.payload.grade, event.payload.determined_by) == (2, ("ice_score", "consciousness"))


@pytest.mark.parametrize(
    ("term", "command", "rule"),
    [
        ("Nausea", grade_crs(day(2)), "crs-grade-needs-a-crs-event"),
        ("Cytokine release syndrome", grade_icans(day(2)), "icans-grade-needs-a-icans-event"),
        ("Cytokine release syndrome", grade_crs(day(0)), "observed-after-onset"),
    ],
)
def test_an_observation_that_does_not_fit_the_ae_is_refused(term, command, rule):
    with pytest.raises(RuleViolated) as refused:
        DECIDER.decide(command, reported(term=term))

    assert refused.value.rule == rule


def test_an_observation_of_an_unknown_ae_is_refused():
    with pytest.raises(NotFound) as refused:
        DECIDER.decide(grade_crs(day(2), ae_id="AE-0007-99"), given(treated()))

    assert refused.value.rule == "ae-must-be-reported"


def test_the_recorded_findings_mirror_the_calculators_observations():
    # The event's findings are the calculator's observation, every field required.
    assert set(CrsFindings.model_fields) == set(grading.CrsObservation.model_fields)
    assert set(IcansFindings.model_fields) == set(grading.IcansObservation.model_fields)


def test_death_due_to_crs_makes_the_ae_serious_by_death():
    _events, state = run(reported(), grade_crs(day(3), death=True))

    ae = state.adverse_events[AE]
    assert (ae.grade, ae.serious_criteria) == (5, ("death",))


# ---------------------------------------------------------------- the decider itself


def test_every_safety_command_has_a_route_and_roles_in_the_trial_file():
    assert {route.command for route in SERVICE.routes} == set(COMMANDS)
    assert all(TRIAL.roles_for(name) for name in COMMANDS)
    assert SERVICE.upstream == ("dosing", "enrollment", "manufacturing")


def test_decide_is_pure_same_input_same_output_and_state_untouched():
    state = reported()
    before = repr(state)
    command = grade_crs(day(2), hypoxia="positive-pressure")

    assert DECIDER.decide(command, state) == DECIDER.decide(command, state)
    assert repr(state) == before


def test_decide_refuses_a_command_it_does_not_handle():
    with pytest.raises(TypeError, match="safety does not handle"):
        DECIDER.decide(object(), given())
