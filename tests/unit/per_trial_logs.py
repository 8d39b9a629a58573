"""Two simulated trials' logs for the many-trials read-side tests (decision 61): the
deployment's two trial files, each trial's events at their offsets of that trial's partition,
the one-trial replay they are checked against, and the worker's tables folded as its agents
fold them. Shared by test_projections_per_trial.py (the folds) and test_views_per_trial.py
(the views)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from uuid import UUID

import orjson
import pytest

from events.envelope import GENESIS_HASH
from events.registry import Recorded, read
from events.topics import event_topic, partition_of
from projections.applying import Batch
from projections.base import Projection, fold, of_trial
from projections.catalog import (
    NAMES,
    build,
    build_trials,
)
from tests.unit.builders import sealed
from tests.unit.test_simulate_plan import run_in_process
from trial.config import SHIPPED, TrialConfig, load_trials

SHIPPED_TRIAL = "NCT06623396"
SECOND_TRIAL = "NCT03054298"
PARTITIONS = 2
SECOND_WINDOW_DAYS = 21
"""The second trial's DLT window (the shipped file's is 28 days): its documents must be made
with its own file."""
AUDITOR = {"Authorization": "Bearer demo-auditor"}

Entry = tuple[str, int, Recorded]


def two_trial_files(folder: Path) -> Path:
    """``folder`` made a deployment's folder of two trial files (TRIALOPS_TRIALS): the shipped
    one, and a copy as ``SECOND_TRIAL`` with a DLT window of ``SECOND_WINDOW_DAYS``."""
    (folder / "shipped.json").write_bytes(SHIPPED.read_bytes())
    data = orjson.loads(SHIPPED.read_bytes())
    data["trial_id"] = SECOND_TRIAL
    data["dlt"]["window_days"] = SECOND_WINDOW_DAYS
    (folder / "second.json").write_bytes(orjson.dumps(data))
    return folder


@pytest.fixture(scope="module", name="trials")
def trials_fixture(tmp_path_factory) -> dict[str, TrialConfig]:
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


@pytest.fixture(scope="module", name="logs")
def logs_fixture() -> dict[str, list[Entry]]:
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
    batch.advance()
    return tables, applied


def as_of(logs: Mapping[str, list[Entry]]):
    return max(r.envelope.recorded_at for log in logs.values() for _s, _o, r in log)


