"""Screening: pre-screening -> consent -> eligibility, and the screen failure.

Sources: DOMAIN.md section 1 (NCT06623396, ASCO GI TPS513: MSLN IHC in at least 25% of
tumour cells; peritoneal carcinomatosis by imaging and/or cytology; at least one prior line;
a measurable or evaluable lesion by RECIST 1.1; consent before any study procedure) and
section 2.1 (pre-screening -> consent -> screening -> eligibility confirmed). Age >= 18,
ECOG <= 1 and the organ-function labs are the trial file's documented defaults
(trials/nct06623396.json, "defaults_chosen").
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from events.enrollment import (
    ConsentRecorded,
    CriterionResult,
    EligibilityAssessed,
    PrescreeningRecorded,
    SubjectScreenFailed,
)
from services.decider import NewEvent
from services.enrollment.decider import (
    AssessEligibility,
    EnrollSubject,
    RecordConsent,
    RecordPrescreening,
    RecordScreenFailure,
    WithdrawSubject,
    evolve,
    fold,
    make_decider,
)
from services.errors import NotFound, RuleViolated
from trial.config import SHIPPED, load_trial

from .builders import (
    CONSENT_SIGNED,
    MONDAY_9AM,
    SCREENING_STARTED,
    at,
    cohort_opened,
    eligible_subject,
    subject_consented,
    subject_enrolled,
    subject_prescreened,
    subject_registered,
    subject_screen_failed,
    subject_waitlisted,
    subject_withdrawn,
)

TRIAL = load_trial(SHIPPED)
decide = make_decider(TRIAL).decide
S = "MSK-0007"
STREAM = f"subject-{S}"

PASSING_LABS = {
    "absolute_neutrophil_count_10e9_per_l": 1.8,
    "platelets_10e9_per_l": 160.0,
    "hemoglobin_g_per_dl": 11.2,
    "creatinine_clearance_ml_per_min": 85.0,
    "total_bilirubin_x_uln": 0.6,
    "alt_x_uln": 1.1,
}


def given(*facts: NewEvent):
    return fold([fact.payload for fact in facts])


def consented_subject():
    return given(subject_registered(S), subject_prescreened(S, 60.0), subject_consented(S))


def prescreening(percent: float) -> RecordPrescreening:
    return RecordPrescreening(subject_id=S, msln_ihc_percent=percent, occurred_at=MONDAY_9AM)


def consent(version="ICF-v1", signed_at=CONSENT_SIGNED) -> RecordConsent:
    return RecordConsent(
        subject_id=S, form_version=version, signed_at=signed_at, occurred_at=signed_at
    )


def assessment(**changes) -> AssessEligibility:
    fields = {
        "subject_id": S,
        "peritoneal_carcinomatosis_by": ("imaging",),
        "prior_lines": 2,
        "recist_lesion": "measurable",
        "age_years": 57,
        "ecog": 0,
        "labs": PASSING_LABS,
        "active_infection": False,
        "screening_started_at": SCREENING_STARTED,
        "occurred_at": MONDAY_9AM,
    }
    return AssessEligibility(**{**fields, **changes})


# ---------------------------------------------------------------- pre-screening


@pytest.mark.parametrize(
    ("percent", "passes"),
    [(100, True), (60, True), (25, True), (24.9, False), (10, False), (0, False)],
)
def test_msln_at_or_above_25_percent_of_tumour_cells_passes_pre_screening(percent, passes):
    events = decide(prescreening(percent), given(subject_registered(S)))

    assert events[0] == NewEvent(
        STREAM, PrescreeningRecorded(subject_id=S, msln_ihc_percent=percent), MONDAY_9AM
    )
    assert (len(events) == 1) is passes


def test_a_pre_screen_failure_records_the_percentage_as_evidence():
    # Given a registered subject; When MSLN stains 10% of tumour cells
    _, failure = decide(prescreening(10), given(subject_registered(S)))

    # Then the subject fails pre-screening, with the measured percentage and the threshold
    assert failure == NewEvent(
        STREAM,
        SubjectScreenFailed(
            subject_id=S,
            stage="prescreening",
            reason_code="msln-below-threshold",
            failed_criteria=(
                CriterionResult(
                    criterion="msln-ihc",
                    met=False,
                    requirement="MSLN IHC >= 25% of tumour cells",
                    evidence="10% of tumour cells",
                    value=10,
                ),
            ),
        ),
        MONDAY_9AM,
    )


def test_pre_screening_is_recorded_once():
    with pytest.raises(RuleViolated) as refused:
        decide(prescreening(40), given(subject_registered(S), subject_prescreened(S, 60)))

    assert refused.value.rule == "prescreening-recorded-once"
    assert refused.value.message == f"subject {S} already has a pre-screening result (MSLN 60%)"


def test_an_unregistered_subject_cannot_be_pre_screened():
    with pytest.raises(NotFound) as refused:
        decide(prescreening(40), given())

    assert refused.value.rule == "subject-must-be-registered"


# ---------------------------------------------------------------- consent


def test_consent_records_the_form_version_and_when_it_was_signed():
    state = given(subject_registered(S), subject_prescreened(S))

    events = decide(consent("ICF-v3.1", at(-60)), state)

    assert events == [
        NewEvent(
            STREAM,
            ConsentRecorded(subject_id=S, form_version="ICF-v3.1", signed_at=at(-60)),
            at(-60),
        )
    ]


def test_consent_comes_after_pre_screening():
    with pytest.raises(RuleViolated) as refused:
        decide(consent(), given(subject_registered(S)))

    assert refused.value.rule == "prescreening-before-consent"


def test_a_subject_who_failed_pre_screening_cannot_consent():
    state = given(subject_registered(S))
    state = fold([e.payload for e in decide(prescreening(10), state)], state)

    with pytest.raises(RuleViolated) as refused:
        decide(consent(), state)

    assert refused.value.rule == "subject-screen-failed"
    assert refused.value.details == {"subject_id": S, "reason_code": "msln-below-threshold"}


def test_a_consent_form_version_is_signed_once_and_an_amended_form_again():
    state = consented_subject()

    with pytest.raises(RuleViolated) as refused:
        decide(consent("ICF-v1"), state)
    (amended,) = decide(consent("ICF-v2", MONDAY_9AM), state)

    assert refused.value.rule == "consent-version-recorded-once"
    assert amended.payload.form_version == "ICF-v2"


def test_a_consent_cannot_be_recorded_before_it_is_signed():
    with pytest.raises(ValidationError, match="signed_at is after occurred_at"):
        RecordConsent(subject_id=S, form_version="ICF-v1", signed_at=at(10), occurred_at=at(0))


# ---------------------------------------------------------------- nothing before consent

BEFORE_CONSENT = [
    ("assess eligibility", assessment()),
    ("be enrolled", EnrollSubject(subject_id=S, cohort_id="DL1-IP", occurred_at=MONDAY_9AM)),
    (
        "be withdrawn (record a screen failure instead)",
        WithdrawSubject(subject_id=S, reason_code="consent-withdrawn", occurred_at=MONDAY_9AM),
    ),
]


@pytest.mark.parametrize(("doing", "command"), BEFORE_CONSENT, ids=[d for d, _ in BEFORE_CONSENT])
def test_nothing_but_registration_and_pre_screening_happens_before_consent(doing, command):
    state = given(cohort_opened("DL1-IP"), subject_registered(S), subject_prescreened(S))

    with pytest.raises(RuleViolated) as refused:
        decide(command, state)

    assert refused.value.rule == "consent-before-study-procedures"
    assert refused.value.message == (
        f"subject {S} has not signed the informed consent: cannot {doing} "
        "(only registration and pre-screening come before consent)"
    )


# ---------------------------------------------------------------- eligibility


def test_an_eligible_subject_has_every_criterion_recorded_as_met_with_its_evidence():
    (event,) = decide(assessment(), consented_subject())

    assert event.stream_id == STREAM
    assert isinstance(event.payload, EligibilityAssessed)
    criteria = {c.criterion: c for c in event.payload.criteria}
    assert list(criteria) == [
        "msln-ihc",
        "peritoneal-carcinomatosis",
        "prior-lines",
        "recist-lesion",
        "age",
        "ecog",
        "lab:absolute_neutrophil_count_10e9_per_l",
        "lab:alt_x_uln",
        "lab:creatinine_clearance_ml_per_min",
        "lab:hemoglobin_g_per_dl",
        "lab:platelets_10e9_per_l",
        "lab:total_bilirubin_x_uln",
        "no-active-infection",
        "consent-before-screening",
    ]
    assert all(c.met for c in criteria.values())
    assert criteria["msln-ihc"].evidence == "60% of tumour cells (pre-screening)"
    assert criteria["ecog"] == CriterionResult(
        criterion="ecog",
        met=True,
        requirement="ECOG performance status <= 1",
        evidence="ECOG 0",
        value=0,
    )
    assert criteria["lab:total_bilirubin_x_uln"].requirement == "total_bilirubin_x_uln <= 1.5"
    assert criteria["peritoneal-carcinomatosis"].evidence == "shown by imaging"
    assert evolve(consented_subject(), event.payload).subjects[S].eligible


def labs(**changes: float) -> dict[str, float]:
    return {**PASSING_LABS, **changes}


# (criterion that fails, the evidence that fails it)
ONE_CRITERION_FAILS = [
    ("peritoneal-carcinomatosis", {"peritoneal_carcinomatosis_by": ()}),
    ("prior-lines", {"prior_lines": 0}),
    ("recist-lesion", {"recist_lesion": "none"}),
    ("age", {"age_years": 17}),
    ("ecog", {"ecog": 2}),
    (
        "lab:absolute_neutrophil_count_10e9_per_l",
        {"labs": labs(absolute_neutrophil_count_10e9_per_l=0.9)},
    ),
    ("lab:platelets_10e9_per_l", {"labs": labs(platelets_10e9_per_l=74.0)}),
    ("lab:hemoglobin_g_per_dl", {"labs": labs(hemoglobin_g_per_dl=7.9)}),
    ("lab:creatinine_clearance_ml_per_min", {"labs": labs(creatinine_clearance_ml_per_min=49.0)}),
    ("lab:total_bilirubin_x_uln", {"labs": labs(total_bilirubin_x_uln=1.6)}),
    ("lab:alt_x_uln", {"labs": labs(alt_x_uln=3.1)}),
    ("no-active-infection", {"active_infection": True}),
    ("consent-before-screening", {"screening_started_at": CONSENT_SIGNED - timedelta(hours=1)}),
]


@pytest.mark.parametrize(
    ("criterion", "evidence"), ONE_CRITERION_FAILS, ids=[c for c, _ in ONE_CRITERION_FAILS]
)
def test_a_criterion_not_met_is_a_screen_failure_naming_it(criterion, evidence):
    assessed, failed = decide(assessment(**evidence), consented_subject())

    unmet = [c for c in assessed.payload.criteria if not c.met]
    assert [c.criterion for c in unmet] == [criterion]
    assert failed == NewEvent(
        STREAM,
        SubjectScreenFailed(
            subject_id=S,
            stage="screening",
            reason_code="criteria-not-met",
            failed_criteria=tuple(unmet),
        ),
        MONDAY_9AM,
    )


AT_THE_LIMIT = [
    ("cytology only", {"peritoneal_carcinomatosis_by": ("cytology",)}),
    ("imaging and cytology", {"peritoneal_carcinomatosis_by": ("imaging", "cytology")}),
    ("one prior line", {"prior_lines": 1}),
    ("an evaluable lesion", {"recist_lesion": "evaluable"}),
    ("18 years old", {"age_years": 18}),
    ("ECOG 1", {"ecog": 1}),
    (
        "every lab exactly at its limit",
        {
            "labs": {
                "absolute_neutrophil_count_10e9_per_l": 1.0,
                "platelets_10e9_per_l": 75.0,
                "hemoglobin_g_per_dl": 8.0,
                "creatinine_clearance_ml_per_min": 50.0,
                "total_bilirubin_x_uln": 1.5,
                "alt_x_uln": 3.0,
            }
        },
    ),
    ("screening starts as consent is signed", {"screening_started_at": CONSENT_SIGNED}),
]


@pytest.mark.parametrize("evidence", [e for _, e in AT_THE_LIMIT], ids=[w for w, _ in AT_THE_LIMIT])
def test_evidence_at_the_limit_of_a_criterion_is_eligible(evidence):
    (assessed,) = decide(assessment(**evidence), consented_subject())

    assert all(c.met for c in assessed.payload.criteria)


def test_every_criterion_not_met_is_named():
    _, failed = decide(assessment(ecog=3, age_years=16, prior_lines=0), consented_subject())

    assert [c.criterion for c in failed.payload.failed_criteria] == ["prior-lines", "age", "ecog"]


def test_thresholds_come_from_the_trial_file():
    # Given a trial file that admits ECOG 2
    lenient = TRIAL.model_copy(
        update={"eligibility": TRIAL.eligibility.model_copy(update={"ecog_max": 2})}
    )

    (assessed,) = make_decider(lenient).decide(assessment(ecog=2), consented_subject())

    ecog = next(c for c in assessed.payload.criteria if c.criterion == "ecog")
    assert (ecog.met, ecog.requirement) == (True, "ECOG performance status <= 2")


@pytest.mark.parametrize(
    ("given_labs", "details"),
    [
        (
            {k: v for k, v in PASSING_LABS.items() if k != "alt_x_uln"},
            {"missing": ["alt_x_uln"]},
        ),
        ({**PASSING_LABS, "ast_x_uln": 1.0}, {"unknown": ["ast_x_uln"]}),
    ],
    ids=["a lab missing", "a lab the trial file does not know"],
)
def test_the_labs_assessed_are_exactly_those_of_the_trial_file(given_labs, details):
    with pytest.raises(RuleViolated) as refused:
        decide(assessment(labs=given_labs), consented_subject())

    assert refused.value.rule == "labs-from-trial-file"
    assert refused.value.details == {"subject_id": S, **details}


@pytest.mark.parametrize(
    ("fact", "rule"),
    [
        ("assessed eligible", "eligibility-assessed-once"),
        ("screen failed", "subject-screen-failed"),
        ("withdrawn", "subject-withdrawn"),
    ],
)
def test_eligibility_is_assessed_once_and_only_for_a_subject_still_in_screening(fact, rule):
    state = given(*eligible_subject(S)) if fact == "assessed eligible" else consented_subject()
    if fact == "screen failed":
        state = evolve(state, subject_screen_failed(S).payload)
    if fact == "withdrawn":
        state = evolve(state, subject_withdrawn(S).payload)

    with pytest.raises(RuleViolated) as refused:
        decide(assessment(), state)

    assert refused.value.rule == rule


def test_screening_cannot_start_after_its_assessment():
    with pytest.raises(ValidationError, match="screening_started_at is after occurred_at"):
        assessment(screening_started_at=MONDAY_9AM + timedelta(days=1))


# ---------------------------------------------------------------- explicit screen failure


def screen_failure(reason_code="consent-declined", reason=None) -> RecordScreenFailure:
    return RecordScreenFailure(
        subject_id=S, reason_code=reason_code, reason=reason, occurred_at=MONDAY_9AM
    )


def test_a_subject_who_declines_consent_leaves_as_a_pre_screening_failure():
    state = given(subject_registered(S), subject_prescreened(S))

    (event,) = decide(screen_failure("consent-declined"), state)

    assert event.payload == SubjectScreenFailed(
        subject_id=S, stage="prescreening", reason_code="consent-declined"
    )


def test_a_consented_subject_fails_screening_with_the_investigators_reason():
    (event,) = decide(screen_failure("investigator-decision", "rapid decline"), consented_subject())

    assert event.payload.stage == "screening"
    assert event.payload.reason_code == "investigator-decision"


def test_a_screen_failure_takes_a_waiting_subject_off_the_waiting_list():
    state = given(cohort_opened("DL1-IP", 1), *eligible_subject(S))
    state = evolve(state, subject_waitlisted(S, "DL1-IP", 1).payload)

    (event,) = decide(screen_failure("investigator-decision"), state)

    assert evolve(state, event.payload).waiting == ()


def test_an_enrolled_subject_is_withdrawn_not_screen_failed():
    state = given(cohort_opened("DL1-IP"), *eligible_subject(S), subject_enrolled(S, "DL1-IP", 1))

    with pytest.raises(RuleViolated) as refused:
        decide(screen_failure("investigator-decision"), state)

    assert refused.value.rule == "screen-failure-before-enrollment"
    assert refused.value.details == {"subject_id": S, "cohort_id": "DL1-IP"}


def test_a_screen_failure_is_recorded_once():
    state = evolve(consented_subject(), subject_screen_failed(S).payload)

    with pytest.raises(RuleViolated) as refused:
        decide(screen_failure("other", "moved abroad"), state)

    assert refused.value.rule == "subject-screen-failed"


def test_a_reason_code_of_other_needs_the_reason_in_words():
    with pytest.raises(ValidationError, match="reason is required when reason_code is 'other'"):
        screen_failure("other")
