"""Many trials in one deployment, the worker's views (decision 61): each trial's view answers
what a one-trial replay of that trial's events renders, byte for byte and page by page; a view
without its trial in a deployment of two is a 400; and a trial's views are answered by the
group member holding its partition of every topic. The logs and the reference are those of
test_projections_per_trial.py (tests/unit/per_trial_logs.py). No broker: the views are served
by a Faust app that is never started."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping

import faust
import orjson
from aiohttp.test_utils import TestClient, TestServer

from events.topics import partition_of
from projections.applying import TrialTable
from projections.base import to_json
from projections.catalog import (
    NAMES,
    build,
    build_trials,
)
from projections.owner import holder_in, holds_all, holds_trial, trial_holder_in
from projections.paging import NEXT, assemble
from projections.views import _serve
from services.auth import UserDirectory
from tests.unit.per_trial_logs import (  # noqa: F401 (fixtures)
    AUDITOR,
    PARTITIONS,
    SECOND_TRIAL,
    SHIPPED_TRIAL,
    as_of,
    interleaved,
    logs_fixture,
    one_trial_replay,
    topic_of,
    trials_fixture,
    worker_tables,
)
from trial.config import TrialConfig, load_trial

# ------------------------------------------------------------------ the views


def serve_tables(trials: Mapping[str, TrialConfig] | None, tables: dict[str, dict]) -> faust.App:
    app = faust.App("test-views-per-trial", broker="memory://", web_tables_enabled=False,
                    web_router_enabled=False, web_graph_enabled=False, web_stats_enabled=False)
    positions: collections.defaultdict[str, int] = collections.defaultdict(int)
    if trials is None:  # a deployment of the one trial file, as before
        for name, projection in build(load_trial()).items():
            _serve(app, projection, tables[name], positions, UserDirectory.demo())
        return app
    by_trial = build_trials(trials)
    for name in NAMES:
        _serve(app, by_trial[SHIPPED_TRIAL][name], tables[name], positions,
               UserDirectory.demo(), trials={t: built[name] for t, built in by_trial.items()})
    return app


def get(
    trials: Mapping[str, TrialConfig] | None, tables: dict[str, dict], *paths: str,
    follow: str | None = None,
) -> list[tuple[int, bytes]]:
    """The answers to GETs of ``paths`` from a worker serving ``tables``; with ``follow``, the
    pages of that view, each asked with the cursor the previous one gave."""
    app = serve_tables(trials, tables)

    async def go():
        answers = []
        async with TestClient(TestServer(app.web.web_app)) as client:
            for path in paths:
                answer = await client.get(path, headers=AUDITOR)
                answers.append((answer.status, await answer.read()))
            cursor = None
            while follow is not None:
                path = follow + ("" if cursor is None else f"&cursor={cursor}")
                answer = await client.get(path, headers=AUDITOR)
                answers.append((answer.status, await answer.read()))
                cursor = orjson.loads(answers[-1][1])[NEXT]
                if cursor is None:
                    break
        return answers

    return asyncio.run(go())


def test_a_view_without_its_trial_in_a_deployment_of_two_is_a_400_naming_trial_id(
    trials, logs
):
    tables, _applied = worker_tables(trials, interleaved(logs))
    [(missing, body), (unknown, other)] = get(
        trials, tables, "/projections/cohort-occupancy",
        "/projections/cohort-occupancy?trial_id=NCT0")

    problem = orjson.loads(body)
    assert (missing, problem["error"]) == (400, "bad-query")
    assert problem["message"].startswith("trial_id: ")
    assert SHIPPED_TRIAL in problem["message"] and SECOND_TRIAL in problem["message"]
    assert (unknown, orjson.loads(other)["error"]) == (404, "not-found")


def test_each_trials_view_answers_the_one_trial_replay_byte_for_byte(trials, logs):
    tables, _applied = worker_tables(trials, interleaved(logs))
    moment = as_of(logs).isoformat().replace("+", "%2B")

    for trial_id, log in logs.items():
        reference = one_trial_replay(trials[trial_id], log)
        built = build(trials[trial_id])
        [(status, occupancy), (_s, dl1), (_t, safety)] = get(
            trials, tables,
            f"/projections/cohort-occupancy?trial_id={trial_id}&limit=1000",
            f"/projections/cohort-occupancy?trial_id={trial_id}&cohort_id=DL1-IP",
            f"/projections/safety?trial_id={trial_id}&as_of={moment}&limit=1000",
        )
        assert status == 200
        assert one_page(occupancy) == to_json(built["cohort-occupancy"].render(
            reference["cohort-occupancy"]))
        whole = built["cohort-occupancy"].render(reference["cohort-occupancy"])
        assert orjson.loads(dl1) == built["cohort-occupancy"].select(whole, "DL1-IP")
        safety_doc = orjson.loads(safety)
        del safety_doc[NEXT]
        assert to_json(safety_doc) == to_json(
            built["safety"].document(reference["safety"], as_of(logs)))


def test_a_trials_pages_follow_their_cursors_within_the_trial(trials, logs):
    tables, _applied = worker_tables(trials, interleaved(logs))
    timeline = build(trials[SECOND_TRIAL])["patient-timeline"]
    view = f"/projections/patient-timeline?trial_id={SECOND_TRIAL}&limit=2"

    pages = [orjson.loads(body) for _status, body in get(trials, tables, follow=view)]

    assert len(pages) > 2
    reference = one_trial_replay(trials[SECOND_TRIAL], logs[SECOND_TRIAL])["patient-timeline"]
    assert timeline.listing is not None
    assert to_json(assemble(timeline.listing, pages)) == to_json(timeline.render(reference))


def test_a_one_trial_deployment_answers_without_trial_id_as_before(trials, logs):
    one = {SHIPPED_TRIAL: trials[SHIPPED_TRIAL]}
    log = [(f"{topic_of(s)}:0", o, r) for s, o, r in logs[SHIPPED_TRIAL]]
    tables, _applied = worker_tables(one, log)
    reference = one_trial_replay(trials[SHIPPED_TRIAL], log)
    built = build(trials[SHIPPED_TRIAL])

    answers = get(None, tables, "/projections/cohort-occupancy",
                  "/projections/dose-escalation",
                  f"/projections/cohort-occupancy?trial_id={SHIPPED_TRIAL}")

    occupancy = to_json(built["cohort-occupancy"].render(reference["cohort-occupancy"]))
    escalation = to_json(built["dose-escalation"].render(reference["dose-escalation"]))
    [(first, one), (second, two), (third, three)] = answers
    assert (first, second, third) == (200, 200, 200)
    assert (one_page(one), two, one_page(three)) == (occupancy, escalation, occupancy)


def one_page(body: bytes) -> bytes:
    """A list view's answer that is its whole list (its one page), without ``next_cursor``."""
    document = orjson.loads(body)
    assert document.pop(NEXT) is None
    return to_json(document)


def test_a_trial_table_lists_and_reads_one_trials_keys_only():
    table = {f"{SHIPPED_TRIAL}/DL1-IP": {"state": {"n": 1}, "at": {}},
             f"{SECOND_TRIAL}/DL1-IP": {"state": {"n": 2}, "at": {}}}
    second = TrialTable(table, SECOND_TRIAL)

    assert list(second) == ["DL1-IP"] and len(second) == 1
    assert second["DL1-IP"]["state"] == {"n": 2} and second.get("DL2-IP") is None
    assert dict(second.items()) == {"DL1-IP": table[f"{SECOND_TRIAL}/DL1-IP"]}


# ------------------------------------------------------------------ which worker answers


TOPICS = ("t.enrollment.events", "t.dosing.events")


def test_a_trials_views_are_answered_by_the_member_holding_its_partition():
    distribution = {
        "http://a:6066": {"t.enrollment.events": [0], "t.dosing.events": [0]},
        "http://b:6066/": {"t.enrollment.events": [1], "t.dosing.events": [1]},
    }
    wanted = {topic: partition_of(SHIPPED_TRIAL, PARTITIONS) for topic in TOPICS}
    assert trial_holder_in(distribution, wanted) == "http://b:6066"
    assert trial_holder_in(
        distribution, {topic: partition_of(SECOND_TRIAL, PARTITIONS) for topic in TOPICS}
    ) == "http://a:6066"
    # no member answers for the whole log from its tables
    assert holder_in(distribution, TOPICS) is None


def test_a_member_holding_a_trials_partition_of_some_topics_only_does_not_answer():
    distribution = {"http://a:6066": {"t.enrollment.events": [1], "t.dosing.events": [0]},
                    "http://b:6066": {"t.enrollment.events": [0], "t.dosing.events": [1]}}
    assert trial_holder_in(distribution, {t: 1 for t in TOPICS}) is None


def test_holding_a_trial_is_holding_its_partition_of_every_topic():
    counts = {topic: PARTITIONS for topic in TOPICS}
    mine = partition_of(SHIPPED_TRIAL, PARTITIONS)
    assigned = {(topic, mine) for topic in TOPICS}

    assert holds_trial(assigned, counts, SHIPPED_TRIAL)
    assert not holds_trial(assigned, counts, SECOND_TRIAL)
    assert not holds_trial(assigned, {**counts, "t.safety.events": None}, SHIPPED_TRIAL)
    # one partition: holding the trial is holding everything, as decision 58 has it
    one = {(topic, 0) for topic in TOPICS}
    single = dict.fromkeys(TOPICS, 1)
    assert holds_trial(one, single, SECOND_TRIAL) == holds_all(one, single) is True


class GroupMember:
    """A worker as the group left it, seen by ``held_here``/``holder_of``: its assignment and
    the assignor's map; like a member that is not the group's leader, its consumer knows no
    partition count (aiokafka keeps that metadata on the leader only)."""

    def __init__(self, assigned: set[tuple[str, int]], distribution: dict) -> None:
        from faust.types import TP

        self.consumer = type("Consumer", (), {
            "assignment": lambda _self: {TP(t, p) for t, p in assigned},
            "topic_partitions": lambda _self, _topic: None,
        })()
        self.assignor = type("Assignor", (), {
            "external_topics_metadata": lambda _self: distribution})()


def test_a_member_that_is_not_the_leader_knows_which_trials_it_holds_and_who_holds_the_rest():
    from projections.owner import held_here, holder_of

    mine = partition_of(SHIPPED_TRIAL, PARTITIONS)
    distribution = {
        "http://a:6066": {t: [mine] for t in TOPICS},
        "http://b:6066": {t: [1 - mine] for t in TOPICS},
    }
    member = GroupMember({(t, mine) for t in TOPICS}, distribution)

    assert held_here(member, TOPICS, SHIPPED_TRIAL, PARTITIONS)
    assert not held_here(member, TOPICS, SECOND_TRIAL, PARTITIONS)
    assert holder_of(member, TOPICS, SECOND_TRIAL, PARTITIONS) == "http://b:6066"
    # one partition, one holder: the standby finds it by the trial as decision 58 did
    standby = GroupMember(set(), {"http://a:6066": {t: [0] for t in TOPICS},
                                  "http://b:6066": {t: [] for t in TOPICS}})
    assert not held_here(standby, TOPICS, SHIPPED_TRIAL)
    assert holder_of(standby, TOPICS, SHIPPED_TRIAL) == "http://a:6066"


