"""Each trial's views are read by that trial's users only (decision 65), as its commands are
issued by them (decision 60): the worker folds the access topic per trial, and a token of one
trial's user is 401 on another trial's views, its inbox and its status, even where the two
trials share a user id. Without a broker: access events sealed as the services seal them, and
the worker's views served by Faust's web app in process."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer

from events.access import UserAdded
from events.registry import read
from projections.catalog import build_trials
from projections.inbox import Desk
from projections.live_inbox import serve_inboxes
from projections.views import TrialReaders, _serve
from projections.worker import access_by_trial
from services.access.decider import EMPTY
from services.auth import LiveUsers, User, UserDirectory, hash_token
from trial.config import load_trial

from .builders import event_id, sealed

FIRST = load_trial()
SECOND = FIRST.model_copy(update={"trial_id": "NCT00000001"})
TRIALS = {FIRST.trial_id: FIRST, SECOND.trial_id: SECOND}


def added(trial_id: str, n: int, user_id: str, role: str, token: str):
    """A ``UserAdded`` of ``trial_id``'s access log, read back as a reader reads it."""
    payload = UserAdded(user_id=user_id, role=role, token_hash=hash_token(token))
    return read(sealed(payload, event_id=event_id(n), trial_id=trial_id,
                       stream_id=f"user-{user_id}"))


def test_the_access_topic_is_folded_per_trial_even_for_a_shared_user_id():
    # Given one access topic holding both trials' users, one user id in both with two roles
    log = [
        added(FIRST.trial_id, 1, "dr-lee", "auditor", "token-lee-first"),
        added(SECOND.trial_id, 2, "dr-lee", "investigator", "token-lee-second"),
        added(SECOND.trial_id, 3, "monitor-kim", "monitor", "token-kim"),
    ]
    states = access_by_trial(log)
    assert sorted(states) == sorted(TRIALS)
    first, second = states[FIRST.trial_id], states[SECOND.trial_id]
    assert sorted(first) == ["dr-lee"] and first["dr-lee"].role == "auditor"
    assert sorted(second) == ["dr-lee", "monitor-kim"]
    assert second["dr-lee"].role == "investigator"
    assert access_by_trial([]) == {}


def user(user_id: str, role: str, token: str) -> User:
    return User(user_id=user_id, role=role, token_hash=hash_token(token), printed_name=None)


READERS = TrialReaders({
    FIRST.trial_id: UserDirectory([user("first-auditor", "auditor", "first-token")]),
    SECOND.trial_id: UserDirectory([user("second-auditor", "auditor", "second-token")]),
})


class StandInDesk:
    """The live inbox's desk, empty: what the inbox answers does not matter here, who gets
    an answer does."""

    async def catch_up(self) -> Desk:
        return Desk()

    def halts(self) -> list[str]:
        return []


def answers(requests: list[tuple[str, str | None]]) -> list[int]:
    """The status of each GET (path, token) from a worker serving both trials' views and
    inbox with ``READERS``."""
    app = faust.App("test-readers-per-trial", broker="memory://", web_tables_enabled=False,
                    web_router_enabled=False, web_graph_enabled=False,
                    web_stats_enabled=False)
    positions: collections.defaultdict[str, int] = collections.defaultdict(int)
    by_trial = build_trials(TRIALS)
    for name in ("cohort-occupancy", "patient-timeline"):
        _serve(app, by_trial[FIRST.trial_id][name], {}, positions, READERS,
               trials={t: built[name] for t, built in by_trial.items()})
    serve_inboxes(app, {t: (StandInDesk(), trial) for t, trial in TRIALS.items()},  # type: ignore[misc]
                  READERS)

    async def go() -> list[int]:
        statuses = []
        async with TestClient(TestServer(app.web.web_app)) as client:  # type: ignore[attr-defined]
            for path, token in requests:
                headers = {} if token is None else {"Authorization": f"Bearer {token}"}
                answer = await client.get(path, headers=headers)
                await answer.read()
                statuses.append(answer.status)
        return statuses

    return asyncio.run(go())


@pytest.mark.parametrize("view", ["cohort-occupancy", "patient-timeline",
                                  "inbox?role=auditor&"])
def test_a_trials_user_reads_its_trials_views_and_is_nobody_in_the_others(view):
    path = f"/projections/{view}" + ("" if view.endswith("&") else "?")
    first, second = f"{path}trial_id={FIRST.trial_id}", f"{path}trial_id={SECOND.trial_id}"
    assert answers([
        (first, "first-token"), (second, "second-token"),
        (second, "first-token"), (first, "second-token"),
        (first, None), (first, "nobodys-token"),
    ]) == [200, 200, 401, 401, 401, 401]


def test_the_401_comes_before_the_trial_is_looked_at():
    # An unknown token learns nothing of the trials: 401 whether the trial is named or not
    assert answers([
        ("/projections/cohort-occupancy", "nobodys-token"),
        ("/projections/cohort-occupancy?trial_id=NCT99999999", "nobodys-token"),
        ("/projections/cohort-occupancy", "first-token"),
    ]) == [401, 401, 400]


def test_a_trial_whose_log_holds_no_user_yet_is_read_by_the_seed():
    # The worker's readers before the first start recorded anyone: the seed answers per trial
    seed = UserDirectory([user("seed-auditor", "auditor", "seed-token")])
    states: dict[str, Any] = {}
    readers = TrialReaders({
        t: LiveUsers(lambda t=t: states.get(t, EMPTY), seed=seed) for t in TRIALS})
    assert readers.for_trial(SECOND.trial_id).authenticate("seed-token") is not None
    # and once a trial's log holds its users, the seed is nobody there, still somebody in the
    # other trial
    states[FIRST.trial_id] = access_by_trial(
        [added(FIRST.trial_id, 1, "dr-lee", "auditor", "token-lee")])[FIRST.trial_id]
    assert readers.for_trial(FIRST.trial_id).authenticate("seed-token") is None
    assert readers.for_trial(FIRST.trial_id).authenticate("token-lee") is not None
    assert readers.for_trial(SECOND.trial_id).authenticate("token-lee") is None
    assert readers.for_trial(SECOND.trial_id).authenticate("seed-token") is not None
