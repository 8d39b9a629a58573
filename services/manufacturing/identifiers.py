"""The two identifiers every hand-off presents: the chain-of-identity id and the bag's DIN.

Both take the form of an ISBT 128 Donation Identification Number (ICCBBA ST-001; IG-033): a
five-character Facility Identification Number (a letter and four digits), a two-digit year, a
six-digit sequence number, then the eye-readable check character of ISO 7064 modulus 37-2
computed over those thirteen characters (JPAC Red Book, annex 2: "G123498654321" checks "H").
The exact data structure of the ISBT 128 chain-of-identity identifier (ICCBBA ST-028) is not in
the public record, so the COI follows the DIN's form: the project's documented default. The check
character catches a mistyped or transposed character at a hand-off before any rule runs.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

CHECK_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
"""ISO 7064 mod 37-2 values 0..36, in order."""

_FORM = re.compile(r"^[A-Z][0-9]{4}[0-9]{2}[0-9]{6}[0-9A-Z*]$")


def check_character(body: str) -> str:
    """ISO 7064 modulus 37-2 check character of ``body`` (weights 2^n, n from the right)."""
    total = sum(CHECK_ALPHABET.index(ch) * 2**n for n, ch in enumerate(reversed(body), start=1))
    return CHECK_ALPHABET[(38 - total % 37) % 37]


def with_check_character(body: str) -> str:
    """``body`` (FIN, year, sequence) followed by its check character: for labels and tests."""
    return body + check_character(body)


def _isbt_128_form(value: str) -> str:
    if not _FORM.match(value):
        raise ValueError(
            "expected ISBT 128 form: facility id (a letter and 4 digits), 2-digit year, "
            "6-digit sequence and a check character, e.g. W123425000007S"
        )
    if check_character(value[:-1]) != value[-1]:
        raise ValueError(
            "check character does not match (ISO 7064 mod 37-2): the identifier is mistyped"
        )
    return value


IsbtIdentifier = Annotated[str, AfterValidator(_isbt_128_form)]
