"""Prior therapies and their washout (issue 11 item 5).

Sources: the shipped trial file's ``washout`` (the project's defaults, each explained in its
``defaults_chosen``): checkpoint inhibitors 28 days before leukapheresis and before infusion,
chemotherapy 14 and 14, investigational agents 28 and 28, systemic steroids above physiological
doses 7 before leukapheresis and 3 before infusion. Days are calendar days in the trial's time
zone (America/New_York): a last dose on day D allows the milestone from day D + N. Calendar
facts used below: 2025 has no 29 February; New York is on EST (UTC-5) until 9 March 2025 and on
EDT (UTC-4) from then.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from events.enrollment import PriorTherapyRecorded
from services.decider import NewEvent
from services.enrollment.commands import RecordPriorTherapy
from services.enrollment.decider import fold, make_decider
from services.enrollment.washout import (
    WashoutRules,
    require_washout,
    washout_violations,
    with_prior_therapy,
)
from services.errors import RuleViolated
from trial.config import SHIPPED, TrialConfig, load_trial

from .builders import (
    MONDAY_9AM,
    subject_consented,
    subject_prescreened,
    subject_registered,
    subject_withdrawn,
)

TRIAL = load_trial(SHIPPED)
RULES = WashoutRules.of(TRIAL)
decide = make_decider(TRIAL).decide
S = "MSK-0007"


def given(*facts: NewEvent):
    return fold([fact.payload for fact in facts])


def consented():
    return given(subject_registered(S), subject_prescreened(S), subject_consented(S))


def prior(therapy_class="checkpoint-inhibitor", last_dose_on=date(2025, 2, 3), **fields):
    values = {
        "subject_id": S,
        "therapy_class": therapy_class,
        "agent": "nivolumab",
        "last_dose_on": last_dose_on,
        "occurred_at": MONDAY_9AM,  # 2025-03-03 09:00 UTC, 04:00 in New York
    }
    return RecordPriorTherapy(**{**values, **fields})


# ---------------------------------------------------------------- the trial file


def test_the_shipped_trial_file_names_the_washout_of_each_therapy_class():
    days = {k: (w.before_leukapheresis_days, w.before_infusion_days)
            for k, w in TRIAL.washout.items()}
    assert days == {
        "checkpoint-inhibitor": (28, 28),
        "chemotherapy": (14, 14),
        "investigational-agent": (28, 28),
        "systemic-steroid": (7, 3),
    }
    assert all(f"washout.{k}" in TRIAL.defaults_chosen for k in TRIAL.washout)


def test_a_negative_washout_is_refused_when_the_trial_file_is_loaded():
    data = TRIAL.model_dump(mode="json")
    data["washout"] = {"chemotherapy": {"before_leukapheresis_days": -1,
                                        "before_infusion_days": 14}}
    with pytest.raises(ValidationError, match=r"washout\.chemotherapy\.before_leukapheresis_days"):
        TrialConfig.model_validate(data)


def test_a_trial_file_without_washout_gets_the_projects_defaults():
    data = TRIAL.model_dump(mode="json")
    del data["washout"]
    assert TrialConfig.model_validate(data).washout == TRIAL.washout


# ---------------------------------------------------------------- recording a prior therapy


def test_a_consented_subjects_prior_therapy_is_recorded_with_its_last_dose():
    [event] = decide(prior(), consented())
    assert event == NewEvent(
        f"subject-{S}",
        PriorTherapyRecorded(subject_id=S, therapy_class="checkpoint-inhibitor",
                             agent="nivolumab", last_dose_on=date(2025, 2, 3)),
        MONDAY_9AM,
    )


def test_a_prior_therapy_is_screening_data_recorded_after_consent():
    state = given(subject_registered(S), subject_prescreened(S))
    with pytest.raises(RuleViolated) as refused:
        decide(prior(), state)
    assert refused.value.rule == "consent-before-study-procedures"


def test_a_withdrawn_subjects_prior_therapy_is_not_recorded():
    state = given(subject_registered(S), subject_prescreened(S), subject_consented(S),
                  subject_withdrawn(S))
    with pytest.raises(RuleViolated) as refused:
        decide(prior(), state)
    assert refused.value.rule == "subject-withdrawn"


def test_a_therapy_class_the_trial_file_does_not_name_is_refused_with_the_known_classes():
    with pytest.raises(RuleViolated) as refused:
        decide(prior("radioligand"), consented())
    assert refused.value.rule == "therapy-class-in-trial-file"
    assert refused.value.details["classes"] == [
        "checkpoint-inhibitor", "chemotherapy", "investigational-agent", "systemic-steroid"]


def test_a_last_dose_after_the_day_it_is_recorded_is_refused_in_the_trials_time_zone():
    # 2025-03-03 03:00 UTC is still 2 March (22:00 EST) in New York
    late_evening = datetime(2025, 3, 3, 3, 0, tzinfo=UTC)
    with pytest.raises(RuleViolated) as refused:
        decide(prior(last_dose_on=date(2025, 3, 3), occurred_at=late_evening), consented())
    assert refused.value.rule == "last-dose-not-after-record"
    assert refused.value.details == {"subject_id": S, "last_dose_on": "2025-03-03",
                                     "recorded_on": "2025-03-02"}
    assert decide(prior(last_dose_on=date(2025, 3, 2), occurred_at=late_evening), consented())


def test_the_agent_name_is_free_text_that_identifies_nobody():
    with pytest.raises(ValidationError) as refused:
        prior(agent="call 212-555-0142")
    assert [e["type"] for e in refused.value.errors()] == ["identifying-data"]


# ---------------------------------------------------------------- counting the days

# (therapy, last dose, milestone, milestone at (UTC), days since, required or None if complete)
CASES = [
    # 28 days: 3 Feb -> 3 Mar 2025 (February 2025 has 28 days)
    ("checkpoint-inhibitor", date(2025, 2, 3), "leukapheresis", datetime(2025, 3, 3, 14), 28, None),
    ("checkpoint-inhibitor", date(2025, 2, 4), "leukapheresis", datetime(2025, 3, 3, 14), 27, 28),
    # 22:30 EST on 3 March is 03:30 UTC on 4 March: still day 27 in New York
    ("checkpoint-inhibitor", date(2025, 2, 4), "leukapheresis", datetime(2025, 3, 4, 3, 30), 27,
     28),
    ("chemotherapy", date(2025, 3, 24), "infusion", datetime(2025, 4, 7, 14), 14, None),
    ("chemotherapy", date(2025, 3, 25), "infusion", datetime(2025, 4, 7, 14), 13, 14),
    # 22:00 EDT on 7 April is 02:00 UTC on 8 April
    ("chemotherapy", date(2025, 3, 25), "infusion", datetime(2025, 4, 8, 2), 13, 14),
    ("systemic-steroid", date(2025, 2, 24), "leukapheresis", datetime(2025, 3, 3, 14), 7, None),
    ("systemic-steroid", date(2025, 2, 25), "leukapheresis", datetime(2025, 3, 3, 14), 6, 7),
    ("systemic-steroid", date(2025, 4, 4), "infusion", datetime(2025, 4, 7, 14), 3, None),
    ("systemic-steroid", date(2025, 4, 5), "infusion", datetime(2025, 4, 7, 14), 2, 3),
    ("investigational-agent", date(2025, 3, 10), "infusion", datetime(2025, 4, 7, 14), 28, None),
    ("investigational-agent", date(2025, 3, 11), "infusion", datetime(2025, 4, 7, 14), 27, 28),
]


@pytest.mark.parametrize(("therapy", "last", "milestone", "at", "since", "required"), CASES)
def test_a_washout_counts_calendar_days_in_the_trials_time_zone(
    therapy, last, milestone, at, since, required
):
    found = washout_violations({therapy: last}, milestone, at.replace(tzinfo=UTC), RULES)
    if required is None:
        assert found == []
    else:
        [violation] = found
        assert (violation.days_since, violation.required_days) == (since, required)


def test_the_refusal_names_each_therapy_with_its_last_dose_and_the_first_allowed_day():
    doses = {"checkpoint-inhibitor": date(2025, 2, 20), "systemic-steroid": date(2025, 3, 1),
             "chemotherapy": date(2025, 1, 2)}
    with pytest.raises(RuleViolated) as refused:
        require_washout(S, doses, "leukapheresis", datetime(2025, 3, 3, 14, tzinfo=UTC), RULES)
    error = refused.value
    assert error.rule == "washout-complete"
    assert error.details["violations"] == [
        {"therapy_class": "checkpoint-inhibitor", "last_dose_on": "2025-02-20",
         "days_since": 11, "required_days": 28, "earliest_on": "2025-03-20"},
        {"therapy_class": "systemic-steroid", "last_dose_on": "2025-03-01",
         "days_since": 2, "required_days": 7, "earliest_on": "2025-03-08"},
    ]
    assert "checkpoint-inhibitor last given 2025-02-20, 11 of 28 days" in error.message


def test_a_record_of_an_earlier_course_does_not_shorten_the_washout_of_a_later_one():
    later = PriorTherapyRecorded(subject_id=S, therapy_class="chemotherapy",
                                 last_dose_on=date(2025, 3, 25))
    earlier = PriorTherapyRecorded(subject_id=S, therapy_class="chemotherapy",
                                   last_dose_on=date(2024, 11, 2))
    known = with_prior_therapy(with_prior_therapy({}, later), earlier)
    assert known == {S: {"chemotherapy": date(2025, 3, 25)}}
    assert with_prior_therapy(with_prior_therapy({}, earlier), later) == known
