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
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer

from events.dosing import InfusionRecorded
from events.topics import event_topic, partition_of
from projections.applying import states
from projections.base import fold, fold_trials, to_json, trial_states
from projections.catalog import (
    NAMES,
    TrialNotNamed,
    UnknownTrial,
    build,
    build_trials,
    chosen_trial,
    fold_version,
)
from services.auth import UserDirectory
from tests.unit.per_trial_logs import (  # noqa: F401 (fixtures)
    AUDITOR,
    PARTITIONS,
    SECOND_TRIAL,
    SECOND_WINDOW_DAYS,
    SHIPPED_TRIAL,
    as_of,
    interleaved,
    logs_fixture,
    one_trial_replay,
    reads,
    topic_of,
    trials_fixture,
    worker_tables,
)


def test_the_two_trials_sit_in_different_partitions():
    # Kafka's default partitioner (checked in test_trial_partitions.py) parts them at N=2
    assert partition_of(SHIPPED_TRIAL, PARTITIONS) != partition_of(SECOND_TRIAL, PARTITIONS)



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
