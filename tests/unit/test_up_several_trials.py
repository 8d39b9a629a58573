"""``trialops up --trials``: where each trial of the stack is reached, and the demo's client
reading one trial's views.

Source: decision 60 (a trial's commands at ``/trials/<trial id>/<route>``, and at ``/<route>``
when the deployment runs one trial; a view takes ``?trial_id=``, required with several trials)
and the board's own address (``/?trial_id=...``, projections/dashboard.html)."""

from __future__ import annotations

import urllib.parse

from clients.http import DEMO_READER
from clients.simulate_report import WorkerView
from trial.config import load_trial
from trialops.stack import TRIALS_PARTITIONS, trial_addresses

SERVICES = "http://127.0.0.1:8081"
VIEWS = "http://127.0.0.1:6066"


def test_one_trial_keeps_the_bare_addresses_it_always_had():
    (only,) = trial_addresses(SERVICES, VIEWS, ["NCT06623396"])
    assert only.service_url == "http://127.0.0.1:8081"
    assert only.view_query == ""
    assert only.dashboard_url == f"http://127.0.0.1:6066/#token={DEMO_READER}"


def test_each_of_two_trials_is_reached_under_its_own_id():
    mesothelioma, gastric = trial_addresses(SERVICES, VIEWS, ["NCT06623396", "NCT04577326"])
    assert mesothelioma.trial_id == "NCT04577326"
    assert mesothelioma.service_url == "http://127.0.0.1:8081/trials/NCT04577326"
    assert mesothelioma.view_query == "?trial_id=NCT04577326"
    assert gastric.service_url == "http://127.0.0.1:8081/trials/NCT06623396"
    assert gastric.dashboard_url == (
        f"http://127.0.0.1:6066/?trial_id=NCT06623396#token={DEMO_READER}")


def test_the_shipped_trials_fit_the_partitions_up_gives_them():
    # Decision 60's numbers: partitions 1 and 3 of 4.
    from events.topics import partition_of

    assert TRIALS_PARTITIONS == 4
    assert (partition_of("NCT06623396", 4), partition_of("NCT04577326", 4)) == (1, 3)


def asked(monkeypatch, view: WorkerView) -> list[dict[str, list[str]]]:
    seen: list[str] = []

    def answer(method, url, body=None, *, token=None):
        seen.append(url)
        return 200, {"cohorts": []}

    monkeypatch.setattr("clients.simulate_report.call", answer)
    view.document("cohort-occupancy", {"trialops.enrollment.events": (3, 41)})
    return [urllib.parse.parse_qs(urllib.parse.urlsplit(u).query) for u in seen]


def test_the_simulation_reads_its_own_trial_s_views_when_told_which(monkeypatch):
    view = WorkerView(VIEWS, load_trial(), trial_id="NCT04577326")
    queries = asked(monkeypatch, view)
    assert queries and all(q["trial_id"] == ["NCT04577326"] for q in queries)
    assert queries[0]["wait_for"] == ["trialops.enrollment.events:3:41"]


def test_a_one_trial_simulation_asks_as_before(monkeypatch):
    queries = asked(monkeypatch, WorkerView(VIEWS, load_trial()))
    assert all("trial_id" not in q for q in queries)
