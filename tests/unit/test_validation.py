"""What the HTTP layer refuses besides a command model's shape (services/validation.py):
control and bidirectional formatting characters in any string of the body, an envelope reason
that is not a short non-blank string, and business times outside the trial's window.

Sources: Unicode bidirectional formatting characters (UAX #9) and the "Trojan Source" attack
(CVE-2021-42574); the trial file's ``records`` (earliest business time, clock skew)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import AwareDatetime, BaseModel

from services.enrollment.commands import RecordConsent
from services.safety.commands import RegradeAdverseEvent, ReportAdverseEvent
from services.validation import BusinessTimeWindow, character_problems, checked_reason, datetimes

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WINDOW = BusinessTimeWindow(datetime(2024, 10, 1, tzinfo=UTC), timedelta(minutes=10))


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\x00", "NUL"),
        ("\r", "CR"),
        ("\n", "LF"),
        ("\t", "TAB"),
        ("\x1b", "ESC"),
        ("\x7f", "DEL"),
        ("\x85", "NEL (C1)"),
        ("\u202a", "LRE"),
        ("\u202b", "RLE"),
        ("\u202c", "PDF"),
        ("\u202d", "LRO"),
        ("\u202e", "RLO"),
        ("\u2066", "LRI"),
        ("\u2067", "RLI"),
        ("\u2068", "FSI"),
        ("\u2069", "PDI"),
        ("\u200e", "LRM"),
        ("\u200f", "RLM"),
        ("\u061c", "ALM"),
    ],
)
def test_a_control_or_bidi_character_in_a_nested_string_is_refused_naming_the_field(char, name):
    body = {"observation": {"notes": ["fine", f"grade 2{char}"]}, "site_id": "MSK"}

    [problem] = character_problems(body)

    assert problem.field == "observation.notes.1", name
    assert problem.rule == "forbidden-character"
    assert f"U+{ord(char):04X}" in problem.message
    assert "position 7" in problem.message


def test_a_forbidden_character_in_a_key_is_refused_and_the_key_is_shown_escaped():
    [problem] = character_problems({"labs": {"alt\u202e": 1.0}})

    assert problem.field == "labs.alt<U+202E>"
    assert "key" in problem.message


@pytest.mark.parametrize(
    "text", ["Grade 3 CRS, résolu en 48 h", "Ödem \u2013 Grad 2", "発熱", "😀 ok", "a\u00a0b"]
)
def test_ordinary_text_in_any_script_passes(text):
    assert character_problems({"reason": text, "list": [text], text: 1}) == []


def test_the_refused_value_is_never_repeated_in_the_message():
    [problem] = character_problems({"signature": {"token": "s3cret\ntoken"}})

    assert problem.field == "signature.token"
    assert "s3cret" not in problem.message


@pytest.mark.parametrize(
    ("reason", "rule"),
    [
        (123, "string_type"),
        (["why"], "string_type"),
        ("", "string_too_short"),
        ("   ", "string_too_short"),
        ("x" * 2001, "string_too_long"),
        ("x" * 1_047_000, "string_too_long"),
    ],
)
def test_an_envelope_reason_must_be_a_short_non_blank_string(reason, rule):
    value, [problem] = checked_reason(reason)

    assert value is None
    assert (problem.field, problem.rule) == ("reason", rule)


@pytest.mark.parametrize(("reason", "kept"), [(None, None), ("  moved abroad ", "moved abroad")])
def test_an_absent_or_good_reason_passes_without_surrounding_blanks(reason, kept):
    assert checked_reason(reason) == (kept, [])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def report(**times) -> ReportAdverseEvent:
    fields = {
        "occurred_at": NOW,
        "onset_at": NOW - timedelta(hours=5),
        "sponsor_received_at": NOW - timedelta(hours=1),
        **times,
    }
    return ReportAdverseEvent(
        ae_id="AE-0001-01",
        subject_id="MSK-0001",
        term="Cytokine release syndrome",
        grade=2,
        attribution="probable",
        expected=True,
        **fields,
    )


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("onset_at", at("9999-01-01T00:00:00+00:00"), "business-time-in-future"),
        ("onset_at", at("0001-01-01T00:00:00+00:00"), "business-time-before-trial-start"),
        ("sponsor_received_at", NOW + timedelta(days=4), "business-time-in-future"),
        ("sponsor_received_at", NOW + timedelta(minutes=11), "business-time-in-future"),
        ("occurred_at", at("9999-12-31T23:59:59-05:00"), "business-time-in-future"),
        ("occurred_at", at("2024-09-30T23:59:59+00:00"), "business-time-before-trial-start"),
    ],
)
def test_every_business_time_of_a_command_must_lie_in_the_trials_window(field, value, rule):
    command = report(**{field: value})

    [problem] = WINDOW.problems(command, NOW)

    assert (problem.field, problem.rule) == (field, rule)
    assert field in problem.message and value.isoformat() in problem.message


@pytest.mark.parametrize(
    "value", [NOW + timedelta(minutes=10), NOW, at("2024-10-01T00:00:00+00:00")]
)
def test_a_time_at_the_edges_of_the_window_passes(value):
    command = report(onset_at=value, sponsor_received_at=value, occurred_at=value)
    assert WINDOW.problems(command, NOW) == []


def test_optional_and_other_named_times_are_checked_too():
    regrade = RegradeAdverseEvent(
        occurred_at=NOW, ae_id="AE-0001-01", reason="corrected",
        effective_at=NOW + timedelta(days=3),
    )
    consent = RecordConsent(
        occurred_at=NOW, subject_id="MSK-0001", form_version="ICF-v1",
        signed_at=at("0001-01-01T00:00:00+00:00"),
    )

    assert [p.field for p in WINDOW.problems(regrade, NOW)] == ["effective_at"]
    assert [p.field for p in WINDOW.problems(consent, NOW)] == ["signed_at"]


class Dose(BaseModel):
    given_at: AwareDatetime


class Course(BaseModel):
    occurred_at: AwareDatetime
    doses: tuple[Dose, ...]
    by_day: dict[str, Dose]


def test_times_inside_nested_models_and_collections_are_found_with_their_path():
    late = NOW + timedelta(days=1)
    course = Course(
        occurred_at=NOW, doses=(Dose(given_at=NOW), Dose(given_at=late)),
        by_day={"d2": Dose(given_at=late)},
    )

    assert [f for f, _ in datetimes(course)] == [
        "occurred_at", "doses.0.given_at", "doses.1.given_at", "by_day.d2.given_at",
    ]
    assert [p.field for p in WINDOW.problems(course, NOW)] == [
        "doses.1.given_at", "by_day.d2.given_at",
    ]
