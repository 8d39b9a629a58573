"""Free text never identifies a patient (services/phi.py, services/fields.py): obvious
identifiers are refused, dates and the trial's own codes are not.

Source of the identifier kinds: the HIPAA Safe Harbor list, 45 CFR 164.514(b)(2)(i) (names,
dates directly related to an individual such as a birth date, telephone numbers, e-mail
addresses, medical record numbers). A pattern cannot find a name; the README says what the
trial must never type."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from services.fields import Reason, free_text
from services.phi import identifying_data
from tests.unit.test_http_validation import AE, CLOSE, REGISTER, post

REFUSED = [
    # text                                                        what it holds
    ("Patient John Smith, DOB 1961-02-03, MRN 4471203",          "a date-of-birth label"),
    ("dob: 03/02/1961",                                          "a date-of-birth label"),
    ("D.O.B. 3 Feb 1961",                                        "a date-of-birth label"),
    ("date of birth checked against the chart",                  "a date-of-birth label"),
    ("Birthdate confirmed by the site",                          "a date-of-birth label"),
    ("born on 3 February 1961",                                  "a date-of-birth label"),
    ("MRN 00447120 re-entered",                                  "a medical record number label"),
    ("mrn: 4471203",                                             "a medical record number label"),
    ("medical record number 4471203",                            "a medical record number label"),
    ("medical record no. 4471203",                               "a medical record number label"),
    ("medical record # 4471203",                                 "a medical record number label"),
    ("wife reachable at jane.smith@example.org",                  "an e-mail address"),
    ("sent to J_Smith+trial@mail.example.co.uk",                 "an e-mail address"),
    ("call back on +1 212 555 0100",                             "a telephone number"),
    ("call +44 20 7946 0958 for the courier",                    "a telephone number"),
    ("phone +33123456789",                                       "a telephone number"),
    ("call 212-555-0100 after 5 pm",                             "a telephone number"),
    ("call (212) 555-0100",                                      "a telephone number"),
    ("daughter 020 7946 0958",                                   "a telephone number"),
    ("mobile 06 12 34 56 78",                                    "a telephone number"),
    ("pager 212.555.0100",                                       "a telephone number"),
]

ACCEPTED = [
    "3 of 3 treated, no DLT",
    "onset 2026-03-01, resolved 2026-03-04",
    "from 2026-03-01 2026-03-04 both sites agreed",
    "infused 2026-04-01T10:30:00Z at MSK",
    "visit on 01.03.2026 moved to 04.03.2026",
    "visit on 03/01/2026",
    "MSK-0101 withdrew consent; lot LOT-MSK-0101-A destroyed",
    "DIN W1234 26 123456 checked at the bedside",
    "ANC 500-1000 on day 14-21",
    "dose 10 000 000 cells/kg, 1.250.000 viable",
    "per the medical record, onset was on day 3",
    "dobutamine started for hypotension",
    "grade 2 CRS, tocilizumab 8 mg/kg",
    "+3 days after infusion",
    "recorded by the site at 10:30",
    "courier reference 123-456",
]


@pytest.mark.parametrize(("text", "kind"), REFUSED)
def test_text_with_an_obvious_identifier_is_recognised(text, kind):
    assert identifying_data(text) == kind


@pytest.mark.parametrize("text", ACCEPTED)
def test_dates_codes_and_clinical_text_are_not_mistaken_for_identifiers(text):
    assert identifying_data(text) is None


@pytest.mark.parametrize(
    "field_type", [Reason, free_text(1, 200), free_text(10, 2000)], ids=["reason", "location",
                                                                        "rationale"]
)
def test_every_free_text_type_refuses_an_identifier_without_repeating_it(field_type):
    with pytest.raises(ValidationError) as refused:
        TypeAdapter(field_type).validate_python("patient reachable at jane.smith@example.org")

    [error] = refused.value.errors(include_url=False)
    assert error["type"] == "identifying-data"
    assert "an e-mail address" in error["msg"] and "jane.smith" not in error["msg"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # the envelope's reason, on a route whose command has no reason field
        ("/register", {**REGISTER, "reason": "DOB 1961-02-03"}, "reason"),
        # a command's own reason field
        ("/close", {**CLOSE, "reason": "see MRN 4471203"}, "reason"),
        # a free-text field that is not a reason
        ("/ae", {**AE, "term": "CRS, call +1 212 555 0100"}, "term"),
    ],
)
def test_the_api_refuses_identifying_text_with_422_naming_the_field(path, body, field):
    status, answer, recorder = post(path, body)

    assert status == 422
    assert answer["error"] == "invalid-command"
    assert [(f["field"], f["rule"]) for f in answer["fields"]] == [(field, "identifying-data")]
    assert "1961" not in str(answer) and "4471203" not in str(answer)
    assert "555" not in str(answer)
    assert recorder.calls == []


def test_the_api_accepts_a_reason_that_cites_a_date():
    status, _answer, recorder = post("/close", {**CLOSE, "reason": "closed on 2026-03-01"})

    assert status == 201
    assert len(recorder.calls) == 1
