"""AdverseEventReported version 1 -> 2: version 1 reports carry no ``ctcae_version``; every
one of them was graded on CTCAE v5.0 (the trial's grading scale, DOMAIN.md section 3)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from events.registry import read
from events.safety import AdverseEventReported

from .builders import sealed

V1 = {
    "ae_id": "AE-0001-01", "subject_id": "MSK-0001", "term": "Pericarditis", "grade": 3,
    "onset_at": "2026-03-05T08:00:00Z", "serious_criteria": ["hospitalisation"],
    "attribution": "probable", "expected": False, "sponsor_received_at": "2026-03-05T15:00:00Z",
    "special_interest": "serositis", "haematological": False, "conditioning_lab_effect": False,
}


def test_a_version_1_report_is_read_as_version_2_on_ctcae_5():
    example = AdverseEventReported.model_validate({**V1, "ctcae_version": "5.0"})
    recorded = read(sealed(example, schema_version=1, payload=V1))
    assert recorded.payload.ctcae_version == "5.0"
    assert recorded.payload == example


def test_a_version_2_report_must_name_its_ctcae_version():
    with pytest.raises(ValidationError, match="ctcae_version"):
        AdverseEventReported.model_validate(V1)
    assert AdverseEventReported.schema_version == 2
