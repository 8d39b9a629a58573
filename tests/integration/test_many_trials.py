"""Two trials in one deployment on the real broker (decision 60): topics of four partitions,
each trial's events in its own partition, two instances of the services sharing the trials
through the writers' group, one worker. The same subject id and cohort id in both trials never
meet, a user of one trial is nobody in the other, each trial's views equal its replay, and
``verify`` passes on the whole log.

The second trial is the shipped trial file under another trial id (``SECOND``): the test is
about keeping trials apart, not about a second design."""

from __future__ import annotations

import difflib
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import orjson
import pytest

from audit.replay import replay
from audit.verify import verify
from clients.http import DEMO_READER, TOKEN_ENV, call, get_bytes, wait_until_up
from events.envelope import from_bytes
from events.topics import WRITERS, event_topic, partition_of
from infra.kafka_io import read_to_end
from projections.base import to_json
from tests.conftest import free_port
from tests.integration.helpers import (
    CONSENT_SIGNED,
    enroll,
    eventually,
    make_eligible,
    open_cohort,
    posted,
    whole_view,
)
from trial.config import SHIPPED, load_trials
from trialops.stack import Stack

pytestmark = pytest.mark.kafka

FIRST = "NCT06623396"
SECOND = "NCT00000001"
PARTITIONS = 4


@pytest.fixture
def two_trials(settings, tmp_path, monkeypatch) -> Iterator[Stack]:
    folder = tmp_path / "trials"
    folder.mkdir()
    shutil.copy(SHIPPED, folder / "first.json")
    data = orjson.loads(SHIPPED.read_bytes())
    (folder / "second.json").write_bytes(orjson.dumps({**data, "trial_id": SECOND}))
    monkeypatch.setenv("TRIALOPS_TRIALS", str(folder))
    monkeypatch.setenv("TRIALOPS_PARTITIONS", str(PARTITIONS))
    monkeypatch.setenv(TOKEN_ENV, DEMO_READER)
    running = Stack(settings, tmp_path, service_port=free_port(), web_port=free_port(),
                    say=lambda _m: None)
    running.start(timeout=120)
    try:
        yield running
    finally:
        running.stop()


def differs(stack: Stack, url: str, expected: bytes, trial_id: str) -> str:
    """Why a view is not its replay: the difference, the worker's status of the trial and the
    end of its log."""
    live = whole_view(url)
    diff = "\n".join(difflib.unified_diff(expected.decode().splitlines(),
                                          live.decode().splitlines(), "replay", "live",
                                          lineterm="", n=2))
    status = get_bytes(f"{stack.projections_url}/projections?trial_id={trial_id}").decode()
    log = (stack.work_dir / "projections.log").read_text(errors="replace")[-4000:]
    return (f"{url} differs from the replay:\n{diff[:5000]}\n--- status: {status}\n"
            f"--- the worker's log, its end:\n{log}")


def ready(url: str, trial_id: str) -> dict:
    return call("GET", f"{url}/ready?trial_id={trial_id}")[1]


def test_two_trials_share_a_deployment_and_never_meet(two_trials, settings):
    stack = two_trials
    assert partition_of(FIRST, PARTITIONS) != partition_of(SECOND, PARTITIONS)
    # Given a second instance of the services: the group gives each one trial
    port = free_port()
    stack.spawn("services-2", ["serve", "--demo", "--port", str(port)])
    other = f"http://127.0.0.1:{port}"
    wait_until_up(f"{other}/health", timeout=90, still_starting=stack.check_alive)

    def split() -> bool:
        standing = {t: ready(other, t).get("standby_for") for t in (FIRST, SECOND)}
        return sorted(v is None for v in standing.values()) == [False, True]

    eventually(split, timeout=60)

    # When each trial, through either instance, opens cohort DL1-IP and enrolls MSK-0001
    for trial_id, url in ((FIRST, other), (SECOND, stack.service_url)):
        at = SimpleNamespace(service_url=f"{url}/trials/{trial_id}")
        open_cohort(at, "DL1-IP")
        make_eligible(at, "MSK-0001")
        status, answer = enroll(at, "MSK-0001", "DL1-IP")
        assert status == 201, answer

    # Then each trial's events are in its own partition of every topic, and only there
    for context in WRITERS:
        for where, _key, value in read_to_end(settings.bootstrap_servers,
                                              [event_topic(context, settings.namespace)]):
            trial_id = from_bytes(value).trial_id
            assert trial_id in (FIRST, SECOND), (where, trial_id)
            assert where.partition == partition_of(trial_id, PARTITIONS), (where, trial_id)

    # and a user added to the second trial acts in it, and is nobody in the first
    added = posted(
        SimpleNamespace(service_url=f"{stack.service_url}/trials/{SECOND}"), "/access/users",
        {"user_id": "second-coordinator", "role": "site_coordinator",
         "reason": "joins the second trial"}, token="demo-administrator",
    )
    token = added["token"]
    subject = {"subject_id": "MSK-0002", "site_id": "MSK"}
    status, _ = call("POST", f"{other}/trials/{SECOND}/enrollment/subjects", subject, token=token)
    assert status == 201
    status, answer = call("POST", f"{other}/trials/{FIRST}/enrollment/subjects", subject,
                          token=token)
    assert status == 401, answer
    # and an auditor added to the second trial reads its views on the worker, and is nobody
    # in the first trial's (decision 65)
    auditor = posted(
        SimpleNamespace(service_url=f"{stack.service_url}/trials/{SECOND}"), "/access/users",
        {"user_id": "second-auditor", "role": "auditor", "reason": "audits the second trial"},
        token="demo-administrator",
    )["token"]
    view = f"{stack.projections_url}/projections/cohort-occupancy?trial_id="
    eventually(lambda: call("GET", view + SECOND, token=auditor)[0] == 200, timeout=60)
    status, answer = call("GET", view + FIRST, token=auditor)
    assert status == 401, answer

    # When both trials register subjects at the same time while the worker is down, and it
    # starts again (its catch-up batches then hold events of both partitions), and the
    # subjects are pre-screened once it is up (each subject's stream moves on)
    def each_subject(trial_id: str, url: str, path: str, body) -> None:
        for n in range(10, 30):
            status, answer = call("POST", f"{url}/trials/{trial_id}{path}", body(f"MSK-00{n}"),
                                  token="demo-site_coordinator")
            assert status == 201, answer

    def both(path: str, body) -> None:
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(each_subject, FIRST, stack.service_url, path, body),
                         pool.submit(each_subject, SECOND, other, path, body)]:
                done.result()

    stack.kill("projections")
    both("/enrollment/subjects", lambda s: {"subject_id": s, "site_id": "MSK"})
    stack.spawn("projections", ["worker", "--demo", "--loglevel", "info", "--web-port",
                                str(stack.web_port), "--data-dir", str(stack.work_dir)])
    wait_until_up(f"{stack.projections_url}/projections/cohort-occupancy?trial_id={FIRST}",
                  timeout=90, still_starting=stack.check_alive, token=DEMO_READER)
    both("/enrollment/prescreenings", lambda s: {"subject_id": s, "msln_ihc_percent": 60.0,
                                                 "occurred_at": CONSENT_SIGNED})

    # Then the worker reads every event of both (no partition halts: each batch writes a
    # partition's keys under that partition), and each trial's views, asked of the worker,
    # equal its replay; without a trial: 400
    trials = load_trials()
    for trial_id in (FIRST, SECOND):
        for name in ("cohort-occupancy", "patient-timeline"):
            url = f"{stack.projections_url}/projections/{name}?trial_id={trial_id}"
            expected = to_json(replay(settings, name, trial_id=trial_id, trials=trials))
            try:
                eventually(lambda url=url, expected=expected: whole_view(url) == expected,
                           timeout=60)
            except AssertionError:
                raise AssertionError(differs(stack, url, expected, trial_id)) from None
        occupancy = orjson.loads(get_bytes(
            f"{stack.projections_url}/projections/cohort-occupancy?trial_id={trial_id}"))
        [cohort] = occupancy["cohorts"]
        assert cohort["cohort_id"] == "DL1-IP" and cohort["enrolled"] == ["MSK-0001"]
    status, answer = call("GET", f"{stack.projections_url}/projections/cohort-occupancy",
                          token=DEMO_READER)
    assert status == 400 and "trial_id" in answer["detail"], answer

    # and the whole log verifies
    result = verify(settings)
    assert result.ok, result.as_dict()
    status, said = call("GET", f"{stack.projections_url}/ready")
    assert status == 200, said
    stack.check_alive()
