"""Schema evolution on a real broker: AdverseEventReported version 1 (before ``ctcae_version``)
and version 2 side by side on the safety topic are read alike by verify, replay and the live
worker, version 1 upcast at the edge."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from audit.replay import replay
from audit.verify import verify
from events.safety import AdverseEventReported
from tests.integration.helpers import eventually, whole_view
from tests.integration.raw_events import START, RawWriter

pytestmark = pytest.mark.kafka


def report(ae_id: str, subject: str) -> AdverseEventReported:
    return AdverseEventReported(
        ae_id=ae_id, subject_id=subject, term="Pericarditis", grade=2, ctcae_version="5.0",
        onset_at=START, serious_criteria=(), attribution="possible", expected=True,
        sponsor_received_at=START, special_interest="serositis", haematological=False,
        conditioning_lab_effect=False,
    )


def test_version_1_and_2_events_are_read_alike(stack, settings):
    writer = RawWriter(settings, "safety")
    old = report("AE-0001-01", "MSK-0001")
    v1_payload = {k: v for k, v in old.model_dump(mode="json").items() if k != "ctcae_version"}
    writer.append("ae-AE-0001-01", old, schema_version=1, payload=v1_payload)
    last = writer.append("ae-AE-0002-01", report("AE-0002-01", "MSK-0002"))
    writer.producer.flush()

    report_ = verify(settings)
    assert report_.ok, report_.problems
    assert report_.topics[last.topic] == 2  # (the access topic holds the demo users too)

    as_of = "2027-01-01T00:00:00Z"
    url = (f"{stack.projections_url}/projections/safety?as_of={as_of}"
           f"&wait_for={last.topic}:{last.partition}:{last.offset}")
    live = orjson.loads(whole_view(url))
    assert [ae["ae_id"] for ae in live["adverse_events"]["list"]] == ["AE-0001-01", "AE-0002-01"]

    replayed = replay(settings, "safety", now=datetime.fromisoformat(as_of))
    assert replayed == live
    timeline = eventually(lambda: replay(settings, "patient-timeline")["subjects"])
    v1_entry = timeline[0]["entries"][0]
    assert v1_entry["details"]["ctcae_version"] == "5.0"
