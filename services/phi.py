"""Free text never identifies a patient: obvious identifiers are refused before they reach a
topic, where they could never be erased.

A subject is known by a pseudonymous code (``MSK-0101``) only. Free text (reasons, rationales,
summaries, locations, terms) is kept forever on the topics, so it must never hold a name, a
birth date, a medical record number or contact details. A pattern check cannot find a name; it
refuses the identifiers that have a recognisable shape (the HIPAA Safe Harbor list,
45 CFR 164.514(b)(2), names dates of birth, medical record numbers, telephone numbers and
e-mail addresses among them):

- a birth-date label: ``DOB``, ``D.O.B.``, ``date of birth``, ``birth date``, ``born on``;
- a medical-record label: ``MRN``, ``medical record number``/``no``/``#``;
- an e-mail address;
- a telephone number: ``+`` and a country code with at least 8 digits, or 7 or more digits in
  groups of 2 to 4 digits separated by spaces, dots, dashes or brackets.

False positives are kept low on purpose: a date alone is not refused (business times are dates
and a reason may cite one), nor are ISO dates and thousands (``10 000 000``), nor "the medical
record" without a number label.
"""

from __future__ import annotations

import re

_LABELS = (
    ("a date-of-birth label",
     re.compile(r"\bD\.?O\.?B\b|\bdate\s+of\s+birth\b|\bbirth\s*date\b|\bborn\s+on\b",
                re.IGNORECASE)),
    ("a medical record number label",
     re.compile(r"\bMRN\b|\bmedical\s+record\s*(?:number|num\b|no\b|#)", re.IGNORECASE)),
    ("an e-mail address",
     re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("a telephone number",
     re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.()-]{0,2}\d){7,14}(?!\d)")),
)
_DIGIT_GROUPS = re.compile(r"(?<![\w.+-])\(?\d{2,4}\)?(?:[\s.-]\(?\d{2,4}\)?){2,5}(?![\w-])")
_DATE = re.compile(r"(?<!\d)(?:\d{4}([-./])\d{1,2}\1\d{1,2}|\d{1,2}([-./])\d{1,2}\2\d{4})(?!\d)")


def identifying_data(text: str) -> str | None:
    """What obvious identifier ``text`` holds ("an e-mail address"), or None. The text itself is
    never repeated by the caller: it is the very thing that must not be kept."""
    for kind, pattern in _LABELS:
        if pattern.search(text):
            return kind
    # Dates first: a date, or two in a row, is not a telephone number.
    for found in _DIGIT_GROUPS.finditer(_DATE.sub("#", text)):
        if _looks_like_a_phone_number(found.group()):
            return "a telephone number"
    return None


def _looks_like_a_phone_number(run: str) -> bool:
    groups = re.findall(r"\d+", run)
    if sum(len(g) for g in groups) < 7:
        return False
    # 10 000 000 or 1.250.000: a number grouped by thousands, not a telephone number.
    return not all(len(g) == 3 for g in groups[1:])
