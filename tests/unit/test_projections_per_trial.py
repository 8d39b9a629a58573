"""Many trials in one deployment, read side (decision 61): each event is folded by its own
trial's projections into keys scoped by its trial, by the worker and by the replay alike; each
view and replay renders one trial's document, which is what a one-trial deployment renders
from that trial's events alone.

The reference is the one-trial replay (decision 6): the pure fold (``projections.base.fold``)
of one trial's events, with the projections built from that trial's file. Two simulated trials
share their stream ids (cohort "DL1-IP", subjects "MSK-0001"...), the case that mixes them if
anything does. Where a trial's events sit: Kafka's default partitioner for its id
(``events.topics.partition_of``, decision 60): with 2 partitions NCT06623396 is on partition 1
and NCT03054298 on partition 0. No broker: the worker's tables are dicts, its views are served
by a Faust app that is never started."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import faust
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from events.dosing import InfusionRecorded
from events.envelope import GENESIS_HASH
from events.registry import Recorded, read
from events.topics import event_topic, partition_of
from projections.applying import Batch, TrialTable, states
from projections.base import Projection, fold, fold_trials, of_trial, to_json, trial_states
from projections.catalog import (
    NAMES,
    TrialNotNamed,
    UnknownTrial,
    build,
    build_trials,
    chosen_trial,
    fold_version,
)
from projections.owner import holder_in, holds_all, holds_trial, trial_holder_in
from projections.paging import NEXT, assemble
from projections.views import _serve
from services.auth import UserDirectory
from trial.config import SHIPPED, TrialConfig, load_trial, load_trials

from .builders import sealed
from .test_simulate_plan import run_in_process

SHIPPED_TRIAL = "NCT06623396"
SECOND_TRIAL = "NCT03054298"
PARTITIONS = 2
SECOND_WINDOW_DAYS = 21
"""The second trial's DLT window (the shipped file's is 28 days): its documents must be made
with its own file."""
AUDITOR = {"Authorization": "Bearer demo-auditor"}

Entry = tuple[str, int, Recorded]


def test_the_two_trials_sit_in_different_partitions():
    # Kafka's default partitioner (checked in test_trial_partitions.py) parts them at N=2
    assert partition_of(SHIPPED_TRIAL, PARTITIONS) != partition_of(SECOND_TRIAL, PARTITIONS)


def two_trial_files(folder: Path) -> Path:
    """``folder`` made a deployment's folder of two trial files (TRIALOPS_TRIALS): the shipped
    one, and a copy as ``SECOND_TRIAL`` with a DLT window of ``SECOND_WINDOW_DAYS``."""
    (folder / "shipped.json").write_bytes(SHIPPED.read_bytes())
    data = orjson.loads(SHIPPED.read_bytes())
    data["trial_id"] = SECOND_TRIAL
    data["dlt"]["window_days"] = SECOND_WINDOW_DAYS
    (folder / "second.json").write_bytes(orjson.dumps(data))
    return folder


@pytest.fixture(scope="module")
def trials(tmp_path_factory) -> dict[str, TrialConfig]:
    return load_trials(two_trial_files(tmp_path_factory.mktemp("trials")))


def trial_log(trial_id: str, seed: int, first_event: int) -> list[Entry]:
    """A simulated trial's events, sealed with ``trial_id``, each at its offset of its
    context topic's partition for that trial."""
    api, _report, _lines = run_in_process(6, seed)
    partition = partition_of(trial_id, PARTITIONS)
    heads: dict[tuple[str, str], tuple[int, str]] = {}
    offsets: dict[str, int] = {}
    log = []
    for n, ((context, stream, _type, at, _user), payload) in enumerate(
        zip(api.appended, api.payloads, strict=True), start=first_event
    ):
        seq, prev = heads.get((context, stream), (0, GENESIS_HASH))
        envelope = sealed(payload, event_id=UUID(int=n), stream_id=stream, stream_seq=seq + 1,
                          occurred_at=at, recorded_at=at, prev_hash=prev, trial_id=trial_id)
        heads[(context, stream)] = (seq + 1, envelope.hash)
        source = f"{event_topic(context)}:{partition}"
        offsets[source] = offsets.get(source, -1) + 1
        log.append((source, offsets[source], read(envelope)))
    return log


@pytest.fixture(scope="module")
def logs() -> dict[str, list[Entry]]:
    return {SHIPPED_TRIAL: trial_log(SHIPPED_TRIAL, 7, 1),
            SECOND_TRIAL: trial_log(SECOND_TRIAL, 11, 100_000)}


def interleaved(logs: Mapping[str, list[Entry]]) -> list[Entry]:
    """Both trials' events, taken in turns, as a worker reading both partitions gets them."""
    first, second = logs.values()
    mixed: list[Entry] = []
    for n in range(max(len(first), len(second))):
        mixed += first[n:n + 1] + second[n:n + 1]
    return mixed


def topic_of(source: str) -> str:
    return source.rsplit(":", 1)[0]


def reads(projection: Projection, source: str) -> bool:
    return any(event_topic(c) == topic_of(source) for c in projection.contexts)


def one_trial_replay(trial: TrialConfig, log: list[Entry]) -> dict[str, dict]:
    """The reference: each projection of ``trial``'s file folded over its events alone."""
    return {name: fold(p, [r for s, _o, r in log if reads(p, s)])
            for name, p in build(trial).items()}


def worker_tables(
    trials: Mapping[str, TrialConfig], log: list[Entry], errors: list[str] | None = None
) -> tuple[dict[str, dict], dict]:
    """The worker's tables after applying ``log`` as its agents do (projections/worker.py):
    per topic, each event to its own trial's projections that read the topic."""
    by_trial = build_trials(trials)
    readers = {
        event_topic(context): {
            trial_id: [p for p in built.values() if context in p.contexts]
            for trial_id, built in by_trial.items()
        }
        for context in ("enrollment", "manufacturing", "dosing", "safety")
    }
    tables: dict[str, dict] = {name: {} for name in NAMES}
    applied: dict = {}
    batch = Batch(tables, applied, {})
    for source, offset, recorded in log:
        own = of_trial(readers[topic_of(source)], recorded, errors) or ()
        batch.apply(own, source, offset, recorded, errors)
        batch.pass_over(source, offset)
    batch.flush()
    return tables, applied


def as_of(logs: Mapping[str, list[Entry]]):
    return max(r.envelope.recorded_at for log in logs.values() for _s, _o, r in log)


# ------------------------------------------------------------------ the worker's tables


def test_two_trials_with_the_same_cohort_and_subject_ids_keep_their_facts_apart(trials, logs):
    tables, _applied = worker_tables(trials, interleaved(logs))

    occupancy = tables["cohort-occupancy"]
    assert {f"{SHIPPED_TRIAL}/cohort:DL1-IP", f"{SECOND_TRIAL}/cohort:DL1-IP"} <= set(occupancy)
    for name in NAMES:
        for trial_id, log in logs.items():
            expected = one_trial_replay(trials[trial_id], log)[name]
            assert states(tables[name], trial_id) == expected, (name, trial_id)


def test_each_trial_renders_what_a_one_trial_replay_of_its_events_renders(trials, logs):
    tables, _applied = worker_tables(trials, interleaved(logs))
    moment = as_of(logs)

    for trial_id, log in logs.items():
        reference = one_trial_replay(trials[trial_id], log)
        for name, projection in build(trials[trial_id]).items():
            live = projection.document(states(tables[name], trial_id), moment)
            assert to_json(live) == to_json(projection.document(reference[name], moment)), (
                name, trial_id)


def test_each_trial_is_folded_by_its_own_trial_file(trials, logs):
    # The second trial's DLT window is 21 days, the shipped file's 28: a day past its first
    # window, its safety board shows its own windows' ends, not the shipped file's.
    infused = min(r.envelope.recorded_at for _s, _o, r in logs[SECOND_TRIAL]
                  if isinstance(r.payload, InfusionRecorded))
    moment = infused + timedelta(days=SECOND_WINDOW_DAYS + 1)
    until = {t: [e for e in log if e[2].envelope.recorded_at <= moment]
             for t, log in logs.items()}
    tables, _applied = worker_tables(trials, interleaved(until))
    mine = build(trials[SECOND_TRIAL])["safety"]
    shipped_files = build(trials[SHIPPED_TRIAL])["safety"]
    events = [r for s, _o, r in until[SECOND_TRIAL] if reads(mine, s)]

    live = to_json(mine.document(states(tables["safety"], SECOND_TRIAL), moment))

    assert live == to_json(mine.document(fold(mine, events), moment))
    assert live != to_json(shipped_files.document(fold(shipped_files, events), moment))


def test_a_stream_id_both_trials_use_is_applied_in_each_partition(trials, logs):
    # Both trials write the stream cohort-DL1-IP from seq 1: a marker named by topic and id alone
    # would take the second trial's seq 1 for a copy of the first's and skip it.
    _tables, applied = worker_tables(trials, interleaved(logs))

    topic = event_topic("enrollment")
    cohort = [key for key in applied if key.startswith(f"{topic}|cohort-DL1-IP")]
    assert sorted(cohort) == [f"{topic}|cohort-DL1-IP", f"{topic}|cohort-DL1-IP@1"]


def test_one_trial_alone_keeps_its_markers_and_documents_as_before(trials, logs):
    one = {SHIPPED_TRIAL: trials[SHIPPED_TRIAL]}
    # the shipped trial on a topic of one partition, as every deployment had it
    log = [(f"{topic_of(s)}:0", o, r) for s, o, r in logs[SHIPPED_TRIAL]]
    tables, applied = worker_tables(one, log)

    assert all("@" not in key for key in applied)
    reference = one_trial_replay(trials[SHIPPED_TRIAL], log)
    for name in NAMES:
        assert states(tables[name], SHIPPED_TRIAL) == reference[name]


def test_an_event_of_a_trial_the_deployment_does_not_run_is_reported_not_folded(trials, logs):
    only_shipped = {SHIPPED_TRIAL: trials[SHIPPED_TRIAL]}
    errors: list[str] = []

    tables, _applied = worker_tables(only_shipped, interleaved(logs), errors)

    assert len(errors) == len(logs[SECOND_TRIAL])
    assert f"is of trial {SECOND_TRIAL}, which this deployment does not run" in errors[0]
    assert not any(key.startswith(f"{SECOND_TRIAL}/") for t in tables.values() for key in t)
    reference = one_trial_replay(trials[SHIPPED_TRIAL], logs[SHIPPED_TRIAL])
    for name in NAMES:
        assert states(tables[name], SHIPPED_TRIAL) == reference[name]


# ------------------------------------------------------------------ the replay's fold


def test_the_replay_folds_each_trial_into_its_own_keys_like_the_worker(trials, logs):
    by_trial = build_trials(trials)
    tables, _applied = worker_tables(trials, interleaved(logs))

    for name in NAMES:
        events = [r for s, _o, r in interleaved(logs) if reads(by_trial[SHIPPED_TRIAL][name], s)]
        replayed = fold_trials({t: built[name] for t, built in by_trial.items()}, events)
        assert replayed == states(tables[name]), name
        for trial_id, log in logs.items():
            assert trial_states(replayed, trial_id) == one_trial_replay(
                trials[trial_id], log)[name]


def test_the_replay_of_one_trial_passes_over_the_others_and_reports_unknown_ones(
    trials, logs, monkeypatch
):
    from audit import replay as replaying

    mixed = [r for _s, _o, r in interleaved(logs)]

    def recorded(_settings, contexts, stats, as_of=None, axis="recorded"):
        topics = {event_topic(c) for c in contexts}
        return iter([r for (s, _o, _r), r in zip(interleaved(logs), mixed, strict=True)
                     if topic_of(s) in topics])

    monkeypatch.setattr(replaying, "recorded_events", recorded)
    moment = as_of(logs)
    stats = replaying.ReplayStats()

    second = replaying.replay(None, "safety", trial_id=SECOND_TRIAL, trials=trials, now=moment,
                              stats=stats)

    reference = one_trial_replay(trials[SECOND_TRIAL], logs[SECOND_TRIAL])["safety"]
    projection = build(trials[SECOND_TRIAL])["safety"]
    assert to_json(second) == to_json(projection.document(reference, moment))
    assert stats.fold_errors == []
    with pytest.raises(TrialNotNamed):
        replaying.replay(None, "safety", trials=trials)

    alone = replaying.ReplayStats()
    replaying.replay(None, "cohort-occupancy", trials={SHIPPED_TRIAL: trials[SHIPPED_TRIAL]},
                     stats=alone)
    assert alone.fold_errors and all(f"trial {SECOND_TRIAL}" in e for e in alone.fold_errors)


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
            f"/projections/cohort-occupancy?trial_id={trial_id}",
            f"/projections/cohort-occupancy?trial_id={trial_id}&cohort_id=DL1-IP",
            f"/projections/safety?trial_id={trial_id}&as_of={moment}&limit=1000",
        )
        assert status == 200
        assert occupancy == to_json(built["cohort-occupancy"].render(
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

    assert answers == [(200, to_json(built["cohort-occupancy"].render(
                            reference["cohort-occupancy"]))),
                       (200, to_json(built["dose-escalation"].render(
                            reference["dose-escalation"]))),
                       (200, to_json(built["cohort-occupancy"].render(
                            reference["cohort-occupancy"])))]


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


# ------------------------------------------------------------------ choosing the trial


def test_the_trial_may_be_left_out_only_when_the_deployment_runs_one():
    assert chosen_trial([SHIPPED_TRIAL], None) == SHIPPED_TRIAL
    assert chosen_trial([SHIPPED_TRIAL, SECOND_TRIAL], SECOND_TRIAL) == SECOND_TRIAL
    with pytest.raises(TrialNotNamed, match=f"{SECOND_TRIAL}, {SHIPPED_TRIAL}: name one"):
        chosen_trial([SHIPPED_TRIAL, SECOND_TRIAL], None)
    with pytest.raises(UnknownTrial, match="does not run trial 'NCT0'"):
        chosen_trial([SHIPPED_TRIAL], "NCT0")


def test_a_one_trial_deployments_fold_version_is_its_trials(trials):
    shipped = trials[SHIPPED_TRIAL]
    assert fold_version({SHIPPED_TRIAL: shipped}) == fold_version(shipped)
    assert fold_version(trials) != fold_version(shipped)


def run_cli(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TRIALOPS_TRIALS": str(folder),
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "TRIALOPS_PROJECTIONS_URL": "http://127.0.0.1:1"}
    return subprocess.run(
        [sys.executable, "-c", "from trialops.cli import app; app()", *arguments],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )


def test_replay_and_show_of_a_deployment_of_two_trials_need_the_trial(trials, tmp_path):
    for trial_id, trial in trials.items():
        (tmp_path / f"{trial_id}.json").write_text(trial.model_dump_json())

    for arguments in (("replay", "--all"), ("replay", "safety"), ("show", "cohorts")):
        done = run_cli(tmp_path, *arguments)
        assert done.returncode == 2, (arguments, done.stderr)
        assert "--trial" in done.stderr and "name one" in done.stderr

    done = run_cli(tmp_path, "replay", "safety", "--trial", "NCT0")
    assert done.returncode == 2 and "--trial: this deployment does not run trial" in done.stderr


# ------------------------------------------------------------------ verify


def test_verify_passes_on_a_log_of_two_trials_in_two_partitions(logs, monkeypatch):
    # Both trials write streams cohort-DL1-IP and subject-MSK-0001 from seq 1, each in its own
    # partition: verify names a stream as the reading rule does and finds nothing wrong.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit import verify as verifying
    from events.envelope import to_bytes
    from events.reading import NO_QUARANTINE, Where
    from events.signing import Keyring, Signer
    from events.topics import CONTEXTS

    signers = {c: Signer(f"{c}-1", Ed25519PrivateKey.generate()) for c in CONTEXTS}
    keyring = Keyring(keys=tuple(s.public(c) for c, s in signers.items()))
    context_of = {event_topic(c): c for c in CONTEXTS}
    records = sorted(
        (Where(topic_of(s), int(s.rsplit(":", 1)[1]), o),
         to_bytes(signers[context_of[topic_of(s)]].sign(r.envelope)))
        for log in logs.values() for s, o, r in log
    )

    def read_to_end(_servers, topics):
        return ((where, None, value) for where, value in records if where.topic in topics)

    monkeypatch.setattr(verifying, "read_to_end", read_to_end)
    monkeypatch.setattr(verifying, "load_keyring", lambda _path: keyring)
    monkeypatch.setattr(verifying, "load_quarantine", lambda *_args: NO_QUARANTINE)
    settings = type("S", (), {"namespace": "trialops", "keyring": None,
                              "bootstrap_servers": "unused"})()

    report = verifying.verify(settings, contexts=CONTEXTS)

    assert report.problems == []
    assert report.events == sum(len(log) for log in logs.values())
    streams = {(topic_of(s), r.envelope.trial_id, r.envelope.stream_id)
               for log in logs.values() for s, _o, r in log}
    assert report.streams == len(streams)


# ------------------------------------------------------------------ the live inbox


def test_the_live_inbox_of_two_trials_answers_each_from_its_own_events():
    # One trial with a fatal AE on its 7-day clock; the second trial's log holds the same
    # subjects' events up to before that AE (the same ids, under its own trial id).
    from infra.settings import Settings
    from projections.inbox import DESK_CONTEXTS, inbox
    from projections.inbox import document as inbox_document
    from projections.live_inbox import LiveDesk, serve_inboxes
    from projections.views import _answer_errors_as_problems

    from .test_inbox import with_a_fatal_ae
    from .test_inbox_desk import FakeTail, in_recorded_order

    trial, events, received = with_a_fatal_ae()
    first = trial.trial_id
    second = trial.model_copy(update={"trial_id": SECOND_TRIAL})
    mine = [r for r in in_recorded_order(events) if type(r.payload).context in DESK_CONTEXTS]
    assert {r.envelope.trial_id for r in mine} == {first}
    others = [type(r)(r.envelope.model_copy(update={"trial_id": SECOND_TRIAL}), r.payload)
              for r in mine if r.envelope.recorded_at < received]
    log = sorted([*mine, *others], key=lambda r: r.envelope.recorded_at)
    as_of = received + timedelta(days=9)

    app = faust.App("test-inbox-per-trial", broker="memory://", web_tables_enabled=False,
                    web_router_enabled=False, web_graph_enabled=False, web_stats_enabled=False)
    _answer_errors_as_problems(app)
    settings = Settings("unused:9092", namespace="t")
    serve_inboxes(app, {
        t: (LiveDesk(settings, open_tail=lambda: FakeTail([list(log)]), trial_id=t), config)
        for t, config in ((first, trial), (SECOND_TRIAL, second))
    }, UserDirectory.demo())
    query = f"role=safety_officer&as_of={as_of.isoformat().replace('+', '%2B')}"

    async def go():
        async with TestClient(TestServer(app.web.web_app)) as client:
            answers = []
            for path in (f"/projections/inbox?{query}",
                         f"/projections/inbox?{query}&trial_id={first}",
                         f"/projections/inbox?{query}&trial_id={SECOND_TRIAL}"):
                answer = await client.get(path, headers=AUDITOR)
                answers.append((answer.status, await answer.json(content_type=None)))
            return answers

    [(missing, problem), (ok_first, of_first), (ok_second, of_second)] = asyncio.run(go())

    assert (missing, problem["error"]) == (400, "bad-query")
    assert problem["detail"].startswith("trial_id: ")
    assert (ok_first, ok_second) == (200, 200)
    assert of_first == inbox_document(inbox(mine, trial, as_of, "safety_officer"),
                                      "safety_officer", as_of)
    assert of_second == inbox_document(inbox(others, second, as_of, "safety_officer"),
                                       "safety_officer", as_of)
    assert of_first["overdue"] >= 1 and of_second["overdue"] == 0
