"""Scale-out on a three-node cluster (issue 13): two trials (the shipped folder's, on topics of
four partitions, decision 60), two instances of the services and two Faust workers in one
namespace, a bounded load across both trials sent to both instances, and the instance holding
the first trial and the worker holding its partition SIGKILLed in the middle of it.

The survivors must take the partitions over (decisions 58 and 59); every acknowledged command's
events must be on the log exactly once and nothing else of the clients' (by ``Idempotency-Key``
and by subject), no cohort may hold more subjects than the trial file's cohort size, ``verify``
must pass, and every projection asked through the surviving worker must be the replay's,
byte for byte. Started again, the killed instance and worker stand by for the survivors, and
every projection asked through either worker is the replay's. The figures are printed for the
record.

The loads are planned per trial (``TRIALS``) and per instance; each trial's commands go to
``/trials/<trial id>`` on whichever instance the client sends to.
"""

from __future__ import annotations

import difflib
import itertools
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from audit.replay import replay
from audit.verify import verify
from clients.http import DEMO_READER, call, wait_until_up
from events.topics import event_topic, partition_of
from infra.topic_admin import check_event_topics
from projections.base import to_json
from projections.catalog import NAMES
from tests.conftest import free_port
from tests.integration import test_faults
from tests.integration.helpers import (
    CONSENT_SIGNED,
    COORDINATOR,
    ELIGIBLE_EVIDENCE,
    INVESTIGATOR,
    NOW,
    events_of,
    eventually,
    whole_view,
)
from tests.integration.test_faults import COMMAND_RETRY_SECONDS, Load, stack_on
from trial.config import SHIPPED, load_trials
from trialops.stack import Stack

pytestmark = pytest.mark.kafka

own_broker = test_faults.own_broker
"""test_faults' cluster fixture: ``nodes`` from the parametrisation, replication from
``stack_on`` (3 replicas, 2 in sync on three nodes)."""


@dataclass(frozen=True)
class TrialPlan:
    """One trial's share of the load: its subjects' prefix and the cohort they race for."""

    trial_id: str
    prefix: str
    cohort_id: str
    dose_level: str


TRIALS = (TrialPlan("NCT06623396", "MSK", "DL1-IP", "DL1"),
          TrialPlan("NCT04577326", "MPM", "DL1-IP", "DL1"))
PARTITIONS = 4
"""The trials fall on partitions 1 and 3 of four (``events.topics.partition_of``)."""
SUBJECTS_PER_CLIENT = 12
ENROLLED_EVERY = 4
"""Every fourth subject of a client goes the whole way (pre-screening, consent, eligibility)
and asks for a slot in its trial's cohort: 6 candidates for each cohort's 3 slots, from two
clients."""


@dataclass(frozen=True)
class Command:
    path: str
    body: dict
    token: str
    key: str = field(default_factory=lambda: str(uuid.uuid4()))


def journey(subject_id: str, plan: TrialPlan, enrols: bool) -> list[Command]:
    """A subject registered; a candidate also made eligible (the path of
    tests/integration/helpers.make_eligible) and enrolled in the plan's cohort."""
    commands = [Command("/enrollment/subjects", {"subject_id": subject_id, "site_id": "MSK"},
                        COORDINATOR)]
    if enrols:
        commands += [
            Command("/enrollment/prescreenings", {"subject_id": subject_id,
                    "msln_ihc_percent": 60.0, "occurred_at": CONSENT_SIGNED}, COORDINATOR),
            Command("/enrollment/consents", {"subject_id": subject_id, "form_version": "ICF-v1",
                    "signed_at": CONSENT_SIGNED, "occurred_at": CONSENT_SIGNED}, COORDINATOR),
            Command("/enrollment/eligibility-assessments",
                    {"subject_id": subject_id, **ELIGIBLE_EVIDENCE, "occurred_at": NOW},
                    INVESTIGATOR),
            Command("/enrollment/enrollments",
                    {"subject_id": subject_id, "cohort_id": plan.cohort_id}, COORDINATOR),
        ]
    at = f"/trials/{plan.trial_id}"
    return [Command(at + c.path, c.body, c.token, c.key) for c in commands]


@dataclass
class Client(Load):
    """test_faults' careful client, sending a trial's subjects' commands to one instance first:
    each command with its own ``Idempotency-Key``, sent again with it on a 503 (to the same
    instance, which passes it on or says the group is rebalancing) or on a broken connection
    (to the next instance it knows, as a client given every instance's address would).
    ``acknowledged`` holds the keys answered 201, ``refused`` the refusals' problems."""

    plan: TrialPlan | None = None
    urls: tuple[str, ...] = ()
    sent: dict[str, Command] = field(default_factory=dict)
    events_of_key: dict[str, int] = field(default_factory=dict)
    refused: dict[str, dict] = field(default_factory=dict)
    enrolled: list[str] = field(default_factory=list)

    def post(self, url: str, command: Command) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{url}{command.path}", data=orjson.dumps(command.body), method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": command.key,
                     "Authorization": f"Bearer {command.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, orjson.loads(err.read() or b"{}")
        except OSError:
            return 0, {}  # refused, reset or timed out: the outcome is unknown

    def decide(self, command: Command) -> tuple[int, dict]:
        """Send ``command`` until it is answered 201 or 4xx, or the client gives up (0)."""
        self.sent[command.key] = command
        at = 0
        deadline = time.monotonic() + COMMAND_RETRY_SECONDS
        while True:
            status, answer = self.post(self.urls[at], command)
            self.statuses[status] += 1
            if status not in (0, 503):
                return status, answer
            if time.monotonic() > deadline:
                self.given_up.append(command.key)
                return 0, {}
            self.retries += 1
            if status == 0:
                at = (at + 1) % len(self.urls)
            time.sleep(0.2)

    def run(self) -> None:
        assert self.plan is not None
        try:
            for n in range(self.total):
                subject_id = f"{self.prefix}-{n:04d}"
                for command in journey(subject_id, self.plan, n % ENROLLED_EVERY == 1):
                    status, answer = self.decide(command)
                    if status == 0:
                        break  # given up: the subject's later commands would be refused
                    if status == 201:
                        self.acknowledged.append(command.key)
                        self.ack_times.append(time.monotonic())
                        self.events_of_key[command.key] = len(answer["events"])
                        if command.path.endswith("/enrollment/enrollments"):
                            self.enrolled.append(subject_id)
                        continue
                    # The one refusal expected: the cohort is full (its slots went to others)
                    assert (status, answer.get("error"), command.path) == (
                        409, "cohort-capacity",
                        f"/trials/{self.plan.trial_id}/enrollment/enrollments"), (command, answer)
                    self.refused[command.key] = answer
        finally:
            self.done.set()


def ready(url: str) -> tuple[int, dict] | None:
    """``/ready`` of a service instance or a worker: (status, body), None when it does not
    answer."""
    try:
        return call("GET", f"{url}/ready", token=DEMO_READER, timeout=10)
    except OSError:
        return None


def holds(url: str, trial_id: str | None = None) -> bool:
    """Whether the instance at ``url`` holds ``trial_id`` (every trial, when None)."""
    trials = [p.trial_id for p in TRIALS] if trial_id is None else [trial_id]
    for trial in trials:
        try:
            said = call("GET", f"{url}/ready?trial_id={trial}", token=DEMO_READER, timeout=10)
        except OSError:
            return False
        if said[0] != 200 or "standby_for" in said[1]:
            return False
    return True


def trial_holders(urls: dict[str, str]) -> dict[str, str] | None:
    """Which instance holds each trial, once every trial is held by one and the others stand by
    for it; else None."""
    found = {}
    for plan in TRIALS:
        holding = [name for name, url in urls.items() if holds(url, plan.trial_id)]
        if len(holding) != 1:
            return None
        found[plan.trial_id] = holding[0]
    return found


def worker_holding(urls: dict[str, str], topic: str, partition: int) -> str | None:
    """The worker whose ``/ready`` lists ``topic:partition`` among its assigned partitions."""
    holding = []
    for name, url in urls.items():
        said = ready(url)
        if said is not None and said[0] == 200 and f"{topic}:{partition}" in said[1]["lag"]:
            holding.append(name)
    return holding[0] if len(holding) == 1 else None


def open_cohorts(url: str) -> None:
    """The review opens each trial's first cohort, at the design's start level (no
    recommendation to cite: the protocol's own start)."""
    for plan in TRIALS:
        status, answer = call("POST", f"{url}/trials/{plan.trial_id}/enrollment/cohorts", {
            "cohort_id": plan.cohort_id, "dose_level": plan.dose_level, "occurred_at": NOW,
        }, token=INVESTIGATOR)
        assert status == 201, answer


@pytest.mark.parametrize("own_broker", [3], indirect=True)
def test_a_killed_holder_instance_and_worker_leave_the_trials_whole_to_the_survivors(
    own_broker, tmp_path, capsys, monkeypatch
):
    # Given a three-node cluster (event topics with 3 replicas, 2 in sync), two trials on
    # topics of four partitions, two instances of the services and two workers, all in one
    # namespace
    monkeypatch.setenv("TRIALOPS_TRIALS", str(SHIPPED.parent))
    monkeypatch.setenv("TRIALOPS_PARTITIONS", str(PARTITIONS))
    assert sorted(load_trials()) == sorted(plan.trial_id for plan in TRIALS)
    stack = stack_on(own_broker, tmp_path)
    try:
        assert check_event_topics(stack.settings.bootstrap_servers, stack.settings.namespace) == []
        services = {"services": stack.service_url,
                    "services-2": _spawn_service(stack, "services-2", _local_url(free_port()))}
        data_dirs = {"projections": stack.work_dir, "worker-2": stack.work_dir / "worker-2"}
        data_dirs["worker-2"].mkdir()
        workers = {"projections": stack.projections_url,
                   "worker-2": _spawn_worker(stack, "worker-2", _local_url(free_port()),
                                             data_dirs["worker-2"])}
        # and the instances share the trials, one each (the group shares the trials'
        # partitions out evenly)
        first = TRIALS[0].trial_id
        held = eventually(lambda: trial_holders(services), timeout=90, interval=0.5)
        assert sorted(held.values()) == sorted(services), held
        holder = held[first]
        [standby] = [name for name in services if name != holder]
        # and one worker holds the first trial's partition
        topic = event_topic("enrollment", stack.settings.namespace)
        worker_holder = eventually(
            lambda: worker_holding(workers, topic, partition_of(first, PARTITIONS)),
            timeout=90, interval=0.5)
        [worker_standby] = [name for name in workers if name != worker_holder]
        open_cohorts(services[standby])

        # When clients send a bounded load to both instances
        clients = [
            Client(url, SUBJECTS_PER_CLIENT, f"{plan.prefix}{n}", plan=plan,
                   urls=(url, *(u for u in services.values() if u != url)))
            for plan in TRIALS for n, url in enumerate(services.values(), start=1)
        ]
        threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        # and, once some subjects hold a slot, the holding instance and the holding worker are
        # SIGKILLed
        eventually(lambda: sum(len(c.acknowledged) for c in clients) >= 20
                   and any(c.enrolled for c in clients), timeout=120, interval=0.2)
        acknowledged_before = sum(len(c.acknowledged) for c in clients)
        enrolled_before = sum(len(c.enrolled) for c in clients)
        killed_at = time.monotonic()
        stack.kill(holder)
        stack.kill(worker_holder)

        # Then the survivors take the partitions over: the instance holds both trials, the
        # worker the first trial's partition
        eventually(lambda: holds(services[standby]), timeout=90, interval=0.25)
        service_takeover = time.monotonic() - killed_at
        eventually(lambda: worker_holding({worker_standby: workers[worker_standby]}, topic,
                                          partition_of(first, PARTITIONS)),
                   timeout=120, interval=0.25)
        worker_takeover = time.monotonic() - killed_at
        for thread in threads:
            thread.join(timeout=COMMAND_RETRY_SECONDS * 2)
        assert all(c.done.is_set() for c in clients)
        assert holds(services[standby])

        log = events_of(stack.settings, "enrollment")
        numbers = {
            "faults": [f"SIGKILL {holder} (writing {first})",
                       f"SIGKILL {worker_holder} (folding {first}'s partition)"],
            "acknowledged_before_the_kills": acknowledged_before,
            "enrolled_before_the_kills": enrolled_before,
            **_figures(clients, log),
            "service_takeover_seconds": round(service_takeover, 1),
            "worker_takeover_seconds": round(worker_takeover, 1),
        }
        with capsys.disabled():
            print("\nscale-out (three nodes): " + orjson.dumps(numbers).decode())

        # and every acknowledged command's events are on the log once, nothing else of theirs
        _each_acknowledged_command_once(clients, log)
        # and no cohort holds more subjects than the trial file's cohort size
        _no_cohort_overbooked(clients, log)
        # and the log verifies
        result = verify(stack.settings)
        assert result.ok, result.as_dict()
        # and every projection, asked through the surviving worker, is the replay's
        _every_view_is_the_replay(stack, {worker_standby: workers[worker_standby]})

        # When the killed instance and worker are started again, at their addresses
        _spawn_service(stack, f"{holder}-again", services[holder])
        _spawn_worker(stack, f"{worker_holder}-again", workers[worker_holder],
                      data_dirs[worker_holder])
        # Then the group shares the trials out again, each instance and worker answering
        eventually(lambda: trial_holders(services), timeout=90, interval=0.5)
        eventually(lambda: all(ready(u) is not None and ready(u)[0] == 200
                               for u in workers.values()), timeout=90, interval=0.5)
        # and every projection, asked through either worker, is the replay's
        _every_view_is_the_replay(stack, {worker_standby: workers[worker_standby],
                                          f"{worker_holder}-again": workers[worker_holder]})
    finally:
        stack.stop()


def _local_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def _spawn_service(stack: Stack, name: str, url: str) -> str:
    """``trialops serve`` as test_fencing starts its second instance, at ``url``."""
    stack.spawn(name, ["serve", "--demo", "--port", _port(url)])
    wait_until_up(f"{url}/health", 90, name, stack.check_alive)
    return url


def _spawn_worker(stack: Stack, name: str, url: str, data_dir: Path) -> str:
    """A Faust worker with a data dir of its own, as test_two_workers starts its second;
    started once its web server answers (a standby's views answer only once it stands by)."""
    stack.spawn(name, ["worker", "--demo", "--loglevel", "info", "--web-port", _port(url),
                       "--data-dir", str(data_dir)])

    def answers() -> bool:
        stack.check_alive()
        return ready(url) is not None

    eventually(answers, timeout=90, interval=0.5)
    return url


def _figures(clients: list[Client], log: list) -> dict:
    on_log = Counter(e.idempotency.key for e in log if e.idempotency is not None)
    acknowledged = {k for c in clients for k in c.acknowledged}
    statuses: Counter = Counter()
    for c in clients:
        statuses.update(c.statuses)
    return {
        "commands": sum(len(c.sent) for c in clients),
        "acknowledged": len(acknowledged),
        "refused_cohort_full": sum(len(c.refused) for c in clients),
        "given_up_by_client": sum(len(c.given_up) for c in clients),
        "lost": len(acknowledged - set(on_log)),
        "appended_without_acknowledgement": len(set(on_log) - acknowledged),
        "client_retries": sum(c.retries for c in clients),
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "longest_outage_seconds": max(round(c.longest_outage(), 1) for c in clients),
    }


def _each_acknowledged_command_once(clients: list[Client], log: list) -> None:
    on_log = Counter(e.idempotency.key for e in log if e.idempotency is not None)
    sent = {k: c for client in clients for k, c in client.sent.items()}
    assert set(on_log) <= set(sent), "events under keys no client sent"
    for client in clients:
        assert not client.given_up, client.given_up
        for key in client.acknowledged:
            assert on_log[key] == client.events_of_key[key], sent[key]
        for key in client.refused:
            assert on_log[key] == 0, sent[key]
    # and each subject was registered once, by the client that planned it
    registered = Counter(e.payload["subject_id"] for e in log
                         if e.event_type == "SubjectRegistered")
    planned = {f"{c.prefix}-{n:04d}" for c in clients for n in range(c.total)}
    assert set(registered) == planned and set(registered.values()) == {1}, registered


def _no_cohort_overbooked(clients: list[Client], log: list) -> None:
    # Source: each trial file's escalation.cohort_size (3 in both: the 3+3 design, DOMAIN.md
    # section 4, and NCT04577326's groups of three)
    trials = load_trials()
    size = {t: trials[t].escalation.cohort_size for t in trials}
    capacity = {(e.trial_id, e.payload["cohort_id"]): e.payload["capacity"] for e in log
                if e.event_type == "CohortOpened"}
    assert capacity == {(p.trial_id, p.cohort_id): size[p.trial_id] for p in TRIALS}
    held: Counter = Counter()
    for e in log:
        if e.event_type == "SubjectEnrolled":
            held[(e.trial_id, e.payload["cohort_id"])] += 1
        elif e.event_type in ("SlotReleased", "CohortExpanded"):
            raise AssertionError(f"the load neither withdraws nor expands: {e.event_type}")
    # Six candidates raced for each cohort's slots: every slot taken, none twice
    assert held == {(p.trial_id, p.cohort_id): size[p.trial_id] for p in TRIALS}, held
    enrolled = sorted(e.payload["subject_id"] for e in log if e.event_type == "SubjectEnrolled")
    assert enrolled == sorted(s for c in clients for s in c.enrolled)
    slots = [(e.trial_id, e.payload["cohort_id"], e.payload["slot"]) for e in log
             if e.event_type == "SubjectEnrolled"]
    assert len(set(slots)) == len(slots), slots


def _every_view_is_the_replay(stack: Stack, workers: dict[str, str]) -> None:
    # Read at one moment: the clock-dependent views (safety) render at ``as_of`` live and at
    # ``now`` in the replay.
    as_of = datetime.now(UTC).replace(microsecond=0)
    query = f"as_of={as_of.isoformat().replace('+00:00', 'Z')}"
    trials = load_trials()
    replayed = {(t, name): to_json(replay(stack.settings, name, now=as_of, trial_id=t,
                                         trials=trials))
                for t in trials for name in NAMES}
    for (name_of_worker, worker), (trial_id, name) in itertools.product(workers.items(),
                                                                       replayed):
        expected = replayed[(trial_id, name)]
        url = f"{worker}/projections/{name}?{query}&trial_id={trial_id}"

        def live(url: str = url) -> bytes | None:
            try:
                return whole_view(url, token=DEMO_READER)
            except OSError:
                return None

        def same(url: str = url, expected: bytes = expected) -> bool:
            return live(url) == expected

        try:
            eventually(same, timeout=90, interval=1)
        except AssertionError:
            tail = (stack.work_dir / f"{name_of_worker}.log").read_text(errors="replace")[-3000:]
            got = live(url)
            said = (_difference(got, expected) if got is not None
                    else str(call("GET", url, token=DEMO_READER))[:1500])
            where = {path: str(call("GET", f"{worker}{path}", token=DEMO_READER))[:2000]
                     for path in ("/ready", "/projections")}
            raise AssertionError(
                f"{name} of {trial_id} through {name_of_worker} is not the replay:\n{said}\n"
                f"{where}\n{tail}"
            ) from None


def _difference(live: bytes, replayed: bytes) -> str:
    """The lines where the live document and the replay's differ (a unified diff)."""
    lines = difflib.unified_diff(replayed.decode().splitlines(), live.decode().splitlines(),
                                 "replay", "live", n=6, lineterm="")
    return "\n".join(itertools.islice(lines, 120))
