"""The DLT rule as a decision table, each criterion at and around its boundary.

Source: DOMAIN.md section 3 "DLT" (the project's default, in the trial file's ``dlt``): an AE
at least possibly related, with onset in the DLT window (infusion day 0 to day 28), that is
grade 5; or grade >= 4 CRS or ICANS; or grade 3 CRS/ICANS not improving to grade <= 2 within
72 hours; or other grade >= 3 non-haematological toxicity not resolving to grade <= 2 within 7
days (expected laboratory effects of conditioning excluded). Expected verdicts are read off that
text, not from running the code.

Given an AE's facts, When the rule is applied, Then the verdict and the criterion that decided.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.safety.dlt import DltFacts, assess_dlt, study_day, window_ends_at

from .test_safety_givens import INFUSED_AT, TRIAL, day

RULE = TRIAL.dlt
ZONE = TRIAL.zone()  # New York: the infusion (2 March, 05:30 EST) is on 2 March there
H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SEVERE = day(1)  # the AE is grade >= 3 from here


def facts(**overrides) -> DltFacts:
    values = {
        "syndrome": "other",
        "grade": 3,
        "attribution": "possible",
        "onset_at": day(1),
        "infused_at": INFUSED_AT,
        "as_of": day(20),
        "severe_since": SEVERE,
        "improved_at": None,
    }
    return DltFacts(**{**values, **overrides})


def test_the_shipped_rule_is_the_project_default():
    assert (RULE.window_days, RULE.min_attribution, RULE.grade5) == (28, "possible", True)
    assert RULE.crs_or_icans_min_grade == 4
    assert RULE.crs_or_icans_grade3_resolution_hours == 72
    assert (RULE.other_nonhematologic_min_grade, RULE.other_resolution_days) == (3, 7)


TABLE = [
    # --- attribution: at least possible
    ("grade 5 unlikely", dict(grade=5, attribution="unlikely"), "not-dlt", "below-attribution"),
    ("grade 5 unrelated", dict(grade=5, attribution="unrelated"), "not-dlt", "below-attribution"),
    ("grade 5 possible", dict(grade=5, attribution="possible"), "dlt", "grade5"),
    ("grade 5 definite", dict(grade=5, attribution="definite"), "dlt", "grade5"),
    # --- the window: infusion day 0 to day 28
    ("grade 5 on day 0 after the infusion", dict(grade=5, onset_at=day(0, 2)), "dlt", "grade5"),
    ("grade 5 on day 28", dict(grade=5, onset_at=day(28, 13)), "dlt", "grade5"),
    (
        "grade 5 late on day 28 in New York, already 31 March in UTC",
        dict(grade=5, onset_at=day(29, -10)),  # 2026-03-31 00:30 UTC = 30 March 20:30 EDT
        "dlt",
        "grade5",
    ),
    (
        "grade 5 on day 29 in New York",
        dict(grade=5, onset_at=day(28, 18)),  # 2026-03-31 04:30 UTC = 31 March 00:30 EDT
        "not-dlt",
        "onset-outside-window",
    ),
    (
        "grade 5 before the infusion (conditioning)",
        dict(grade=5, onset_at=day(-1)),
        "not-dlt",
        "onset-before-infusion",
    ),
    (
        "grade 5 on day 0 before the infusion",
        dict(grade=5, onset_at=day(0, -2)),
        "not-dlt",
        "onset-before-infusion",
    ),
    # --- CRS / ICANS grade >= 4
    ("grade 4 CRS", dict(syndrome="crs", grade=4), "dlt", "crs-icans-grade"),
    ("grade 4 ICANS", dict(syndrome="icans", grade=4), "dlt", "crs-icans-grade"),
    (
        "grade 4 CRS unlikely",
        dict(syndrome="crs", grade=4, attribution="unlikely"),
        "not-dlt",
        "below-attribution",
    ),
    ("grade 2 CRS", dict(syndrome="crs", grade=2, severe_since=None), "not-dlt", "below-grade"),
    # --- grade 3 CRS / ICANS: improved to <= 2 within 72 h of becoming grade 3
    (
        "grade 3 CRS improved at 71 h",
        dict(syndrome="crs", improved_at=SEVERE + 71 * H),
        "not-dlt",
        "crs-icans-grade3-improved",
    ),
    (
        "grade 3 CRS improved at exactly 72 h",
        dict(syndrome="crs", improved_at=SEVERE + 72 * H),
        "not-dlt",
        "crs-icans-grade3-improved",
    ),
    (
        "grade 3 CRS improved at 72 h 1 min",
        dict(syndrome="crs", improved_at=SEVERE + 72 * H + MINUTE),
        "dlt",
        "crs-icans-grade3-not-improved",
    ),
    (
        "grade 3 ICANS improved at 73 h",
        dict(syndrome="icans", improved_at=SEVERE + 73 * H),
        "dlt",
        "crs-icans-grade3-not-improved",
    ),
    (
        "grade 3 CRS not improved, adjudicated at 72 h 1 min",
        dict(syndrome="crs", as_of=SEVERE + 72 * H + MINUTE),
        "dlt",
        "crs-icans-grade3-not-improved",
    ),
    (
        "grade 3 CRS not improved, adjudicated at exactly 72 h",
        dict(syndrome="crs", as_of=SEVERE + 72 * H),
        "pending",
        "crs-icans-grade3-pending",
    ),
    (
        "grade 3 CRS not improved, adjudicated at 48 h",
        dict(syndrome="crs", as_of=SEVERE + 48 * H),
        "pending",
        "crs-icans-grade3-pending",
    ),
    (
        "grade 3 CRS 72 h counted from grade 3, not from the grade 1 onset",
        dict(syndrome="crs", onset_at=day(1), severe_since=day(2), improved_at=day(2) + 71 * H),
        "not-dlt",
        "crs-icans-grade3-improved",
    ),
    # --- other grade >= 3 non-haematological: resolved to <= 2 within 7 days
    (
        "grade 3 pericarditis improved on day 6 of 7",
        dict(improved_at=SEVERE + timedelta(days=6)),
        "not-dlt",
        "non-haematological-improved",
    ),
    (
        "grade 3 pericarditis improved at exactly 7 days",
        dict(improved_at=SEVERE + timedelta(days=7)),
        "not-dlt",
        "non-haematological-improved",
    ),
    (
        "grade 3 pericarditis improved at 7 days 1 min",
        dict(improved_at=SEVERE + timedelta(days=7) + MINUTE),
        "dlt",
        "non-haematological-not-improved",
    ),
    (
        "grade 4 pneumonitis not improved after 8 days",
        dict(grade=4, as_of=SEVERE + timedelta(days=8)),
        "dlt",
        "non-haematological-not-improved",
    ),
    (
        "grade 3 pericarditis not improved, adjudicated on day 5 of 7",
        dict(as_of=SEVERE + timedelta(days=5)),
        "pending",
        "non-haematological-pending",
    ),
    ("grade 2 pericarditis", dict(grade=2, severe_since=None), "not-dlt", "below-grade"),
    (
        "grade 4 neutropenia (haematological)",
        dict(grade=4, haematological=True),
        "not-dlt",
        "haematological",
    ),
    (
        "grade 3 hypophosphataemia expected from conditioning",
        dict(conditioning_lab_effect=True),
        "not-dlt",
        "conditioning-lab-effect",
    ),
    (
        "grade 5 haematological event, possibly related",
        dict(grade=5, haematological=True),
        "dlt",
        "grade5",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "verdict", "criterion"),
    [pytest.param(o, v, c, id=name) for name, o, v, c in TABLE],
)
def test_dlt_rule_table(overrides, verdict, criterion):
    assessment = assess_dlt(facts(**overrides), RULE, ZONE)

    assert (assessment.verdict, assessment.criterion) == (verdict, criterion)


def test_the_verdict_records_every_finding_with_its_values():
    # Given grade 3 CRS from day 1 that improved only after 80 h
    assessment = assess_dlt(facts(syndrome="crs", improved_at=SEVERE + 80 * H), RULE, ZONE)

    # Then the findings say why, with the numbers of the rule
    assert assessment.findings == (
        "attribution possible is at least possible",
        "onset on day 1 after infusion, inside the DLT window (day 0 to 28)",
        "grade 3 CRS improved to grade <= 2 only after 80 h, later than 72 h",
    )


def test_a_pending_verdict_says_until_when():
    assessment = assess_dlt(facts(syndrome="icans", as_of=SEVERE + 10 * H), RULE, ZONE)

    assert assessment.findings[-1] == (
        "grade 3 ICANS since 2026-03-03T10:30:00+00:00 has until "
        "2026-03-06T10:30:00+00:00 (72 h) to improve to grade <= 2"
    )


def test_the_rule_follows_the_trial_configuration():
    # Given a trial with a 21-day window and a "probable" attribution threshold
    stricter = RULE.model_copy(update={"window_days": 21, "min_attribution": "probable"})

    # Then day 22 is outside and "possible" is not enough
    late = facts(grade=5, attribution="probable", onset_at=day(22))
    assert assess_dlt(late, stricter, ZONE).criterion == ("onset-outside-window")
    assert assess_dlt(facts(grade=5), stricter, ZONE).criterion == "below-attribution"
    assert assess_dlt(facts(grade=5, attribution="probable"), stricter, ZONE).verdict == "dlt"


def test_grade_3_crs_is_a_dlt_outright_when_the_trial_says_grade_3():
    rule = RULE.model_copy(update={"crs_or_icans_min_grade": 3})

    assert assess_dlt(facts(syndrome="crs", improved_at=SEVERE + H), rule, ZONE).criterion == (
        "crs-icans-grade"
    )


def test_study_days_are_counted_in_the_sponsors_time_zone_whatever_the_offset_written():
    # Given an infusion at 10:00 in New York (EST, UTC-5) on 2 March
    infused_at = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=-5)))
    # When the AE begins at 21:00 in New York (EDT, UTC-4) on 30 March, 01:00 UTC on 31 March
    onset = datetime(2026, 3, 30, 21, 0, tzinfo=timezone(timedelta(hours=-4)))

    # Then it is day 28 in the sponsor's calendar, inside the window, however it is written
    assert study_day(onset, infused_at, ZONE) == 28
    assert study_day(onset.astimezone(UTC), infused_at.astimezone(UTC), ZONE) == 28
    verdict = assess_dlt(facts(grade=5, onset_at=onset.astimezone(UTC), infused_at=infused_at),
                         RULE, ZONE)
    assert verdict.verdict == "dlt"


def test_the_window_ends_when_day_28_ends_in_new_york():
    # Given an infusion on 2 March (05:30 EST), day 28 is 30 March; EDT (UTC-4) from 8 March
    ends = window_ends_at(INFUSED_AT, RULE.window_days, ZONE)
    # Then the window ends at midnight in New York, 04:00 UTC on 31 March
    assert ends == datetime(2026, 3, 31, 4, 0, tzinfo=UTC)
