"""No business time in the future, in every context (issue 11 item 8, the cross-cutting part):
``services.validation.BusinessTimeWindow``, which the HTTP layer applies to every route.

Sources: the trial file's ``records`` (no business time before 2024-10-01, at most 10 minutes
ahead of the server's clock); a command records what has already happened, so none of its
business times lies after its own ``occurred_at``, except the sponsor's receipt of an adverse
event, which may follow the site's report (21 CFR 312.32(c), DOMAIN.md section 3). Calendar
facts: 14:00 UTC on 2 March 2026 is already 3 March at UTC+14 (Line Islands) and still 2 March
at UTC-12.

Given a command of each context, When one of its business times (a datetime or a calendar date,
top level or nested) lies in the future or after the record, Then it is refused naming the field.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import AwareDatetime, BaseModel

from services.auth import ROLES, UserDirectory
from services.dosing.decider import RecordInfusion
from services.enrollment.commands import RecordConsent, RecordPriorTherapy
from services.http import MAX_BODY_BYTES, authentication, command_endpoint, json_errors
from services.manufacturing.commands import RecordApheresis, RecordHarvest
from services.safety.commands import (
    DetermineExpeditedReport,
    RecordAeResolution,
    RegradeAdverseEvent,
    ReportAdverseEvent,
)
from services.validation import BusinessTimeWindow, business_times
from trial.config import load_trial

TRIAL = load_trial()
WINDOW = BusinessTimeWindow(
    TRIAL.records.earliest_business_time,
    timedelta(minutes=TRIAL.records.max_future_skew_minutes),
)
NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
AHEAD = NOW + timedelta(minutes=11)
"""One minute past the trial file's 10-minute skew."""
EARLIER = NOW - timedelta(hours=6)
"""A record dated six hours ago: its other times must not be later."""


def refusals(command: BaseModel) -> list[tuple[str, str]]:
    return [(p.field, p.rule) for p in WINDOW.problems(command, NOW)]


# ---------------------------------------------------------------- one command of each context

ENROLLMENT: dict[str, Any] = dict(
    subject_id="MSK-0007", therapy_class="chemotherapy", agent="carboplatin"
)
AE: dict[str, Any] = dict(ae_id="AE-0007-01", subject_id="MSK-0007",
                          term="Cytokine release syndrome", grade=2, attribution="probable",
                          expected=True)

CASES = [
    # (context, command, field refused, rule)
    ("enrollment", RecordPriorTherapy(**ENROLLMENT, last_dose_on=date(2026, 3, 4),
                                      occurred_at=NOW),
     "last_dose_on", "business-time-in-future"),
    ("enrollment", RecordPriorTherapy(**ENROLLMENT, last_dose_on=date(2026, 3, 3),
                                      occurred_at=NOW),
     "last_dose_on", "business-time-after-record"),
    ("enrollment", RecordPriorTherapy(**ENROLLMENT, last_dose_on=date(2024, 9, 29),
                                      occurred_at=NOW),
     "last_dose_on", "business-time-before-trial-start"),
    ("enrollment", RecordConsent(subject_id="MSK-0007", form_version="ICF-v1",
                                 signed_at=datetime(2024, 9, 30, tzinfo=UTC), occurred_at=NOW),
     "signed_at", "business-time-before-trial-start"),
    ("manufacturing", RecordHarvest(lot_id="LOT-0007-A", total_viable_cells=9.5e8,
                                    occurred_at=NOW + timedelta(days=1)),
     "occurred_at", "business-time-in-future"),
    ("dosing", RecordInfusion(subject_id="MSK-0007", lot_id="LOT-0007-A", weight_kg=70,
                              cells_infused=7e7, route="intraperitoneal", occurred_at=AHEAD),
     "occurred_at", "business-time-in-future"),
    ("safety", ReportAdverseEvent(**AE, onset_at=AHEAD, sponsor_received_at=NOW,
                                  occurred_at=NOW),
     "onset_at", "business-time-in-future"),
    ("safety", ReportAdverseEvent(**AE, onset_at=NOW - timedelta(hours=2),
                                  sponsor_received_at=EARLIER, occurred_at=EARLIER),
     "onset_at", "business-time-after-record"),
    ("safety", RegradeAdverseEvent(ae_id="AE-0007-01", reason="grade corrected",
                                   effective_at=NOW, occurred_at=EARLIER),
     "effective_at", "business-time-after-record"),
    ("safety", RecordAeResolution(ae_id="AE-0007-01", outcome="grade-2-or-less",
                                  improved_at=NOW - timedelta(hours=1), occurred_at=EARLIER),
     "improved_at", "business-time-after-record"),
    ("safety", DetermineExpeditedReport(ae_id="AE-0007-01",
                                        follow_up_information_received_at=NOW,
                                        occurred_at=NOW - timedelta(days=2)),
     "follow_up_information_received_at", "business-time-after-record"),
]


@pytest.mark.parametrize(("context", "command", "field", "rule"), CASES,
                         ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CASES])
def test_a_business_time_in_the_future_or_after_the_record_is_refused(context, command, field,
                                                                       rule):
    assert refusals(command) == [(field, rule)]


def test_a_last_dose_today_somewhere_on_earth_is_not_in_the_future():
    # 14:00 UTC on 2 March is 3 March at UTC+14: the date 3 March exists somewhere already,
    # and the record written in that offset is not after it either
    far_east = NOW.astimezone(datetime.fromisoformat("2026-03-03T04:00:00+14:00").tzinfo)
    command = RecordPriorTherapy(**ENROLLMENT, last_dose_on=date(2026, 3, 3), occurred_at=far_east)
    assert refusals(command) == []


def test_times_of_a_well_formed_record_pass_in_every_context():
    good = [
        RecordPriorTherapy(**ENROLLMENT, last_dose_on=date(2026, 2, 1), occurred_at=NOW),
        RecordApheresis(subject_id="MSK-0007", lot_id="LOT-0007-A", coi_id="W123425000007S",
                        din="A9999251234569", collection_site="MSK", volume_ml=250,
                        total_nucleated_cells=1.2e10, cd3_cells=6e9, weight_kg=70,
                        occurred_at=NOW + timedelta(minutes=10)),
        ReportAdverseEvent(**AE, onset_at=NOW - timedelta(hours=5),
                           sponsor_received_at=NOW, occurred_at=NOW),
        # the sponsor may receive the information after the site reported it
        ReportAdverseEvent(**AE, onset_at=NOW - timedelta(days=1),
                           sponsor_received_at=NOW, occurred_at=EARLIER),
        RecordAeResolution(ae_id="AE-0007-01", outcome="grade-2-or-less",
                           improved_at=NOW - timedelta(hours=1), occurred_at=NOW),
    ]
    assert [refusals(c) for c in good] == [[], [], [], [], []]


class Course(BaseModel):
    occurred_at: AwareDatetime
    stopped_on: frozenset[date]
    doses: tuple[dict[str, date], ...]


def test_dates_and_times_are_found_however_deep_and_in_sets_too():
    course = Course(occurred_at=NOW, stopped_on=frozenset({date(2026, 3, 9)}),
                    doses=({"last": date(2026, 2, 27)},))
    assert [f for f, _ in business_times(course)] == [
        "occurred_at", "stopped_on.0", "doses.0.last"]
    assert refusals(course) == [("stopped_on.0", "business-time-in-future")]


# ---------------------------------------------------------------- at the HTTP edge


def test_the_http_edge_refuses_a_last_dose_after_the_record_with_422():
    async def go():
        app = web.Application(middlewares=[json_errors(MAX_BODY_BYTES),
                                           authentication(UserDirectory.demo())])
        calls = []

        class Recorder:
            async def handle(self, command, actor, **_):
                calls.append(command)
                return []

        app.router.add_post("/prior", command_endpoint(
            Recorder(), RecordPriorTherapy, frozenset(ROLES), clock=lambda: NOW, window=WINDOW))
        body = {**ENROLLMENT, "last_dose_on": "2026-03-03", "occurred_at": NOW.isoformat()}
        async with TestClient(TestServer(app)) as client:
            answer = await client.post("/prior", data=orjson.dumps(body),
                                       headers={"Authorization": "Bearer demo-investigator"})
            return answer.status, await answer.json(), calls

    status, answer, calls = asyncio.run(go())
    assert status == 422 and calls == []
    assert "last_dose_on" in answer["message"] and "after occurred_at" in answer["message"]
