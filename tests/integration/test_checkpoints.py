"""Anchored checkpoints on the real broker: what the chain alone cannot show (a topic wiped and
re-created, a last event rewritten with a fresh hash and a valid signature) is caught by
``verify --checkpoint``, naming the stream."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from events.enrollment import CohortOpened, SubjectRegistered
from events.envelope import to_bytes
from events.topics import event_topic
from infra.topic_admin import ensure_topics
from tests.integration.helpers import eventually
from tests.integration.raw_events import RawWriter

pytestmark = pytest.mark.kafka


def trialops(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trialops", *args],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120,
    )


def recreate(settings, topic: str) -> None:
    """Delete the topic and create it again, empty, as someone with admin rights could."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()

    def created() -> bool:
        try:
            return topic in ensure_topics(settings.bootstrap_servers, settings.namespace)
        except (TopicAlreadyExistsError, UnknownTopicOrPartitionError):
            return False

    eventually(created, timeout=60, interval=1)


def history(settings) -> tuple[RawWriter, list]:
    ensure_topics(settings.bootstrap_servers, settings.namespace)
    writer = RawWriter(settings, "enrollment")
    sent = [
        writer.envelope("cohort-DL1-IP", CohortOpened(
            cohort_id="DL1-IP", dose_level="DL1", dose_cells_per_kg=1e6,
            route="intraperitoneal", capacity=3)),
        writer.envelope("subject-MSK-0301", SubjectRegistered(subject_id="MSK-0301",
                                                              site_id="MSK")),
    ]
    for envelope in sent:
        writer.resend(envelope)
    writer.producer.flush()
    return writer, sent


@pytest.fixture
def checkpointed(settings, tmp_path):
    writer, sent = history(settings)
    path = tmp_path / "checkpoint.json"
    taken = trialops(settings, "checkpoint", "--output", str(path))
    assert taken.returncode == 0, taken.stderr
    assert trialops(settings, "verify", "--checkpoint", str(path)).returncode == 0
    return writer, sent, path


def problems(result) -> dict[str, list[str]]:
    report = orjson.loads(result.stdout)
    found: dict[str, list[str]] = {}
    for problem in report["problems"]:
        found.setdefault(problem["kind"], []).append(problem["where"])
    return found


def test_a_rewritten_last_event_with_a_fresh_hash_and_signature_is_caught(settings, checkpointed):
    writer, sent, path = checkpointed
    topic = event_topic("enrollment", settings.namespace)
    # Someone with the writer's key re-creates the topic: the same first event, and the last
    # event of the subject's stream rewritten (another site), hashed and signed anew
    recreate(settings, topic)
    writer.heads.clear()
    writer.resend(sent[0])
    rewritten = writer.envelope(
        "subject-MSK-0301", SubjectRegistered(subject_id="MSK-0301", site_id="SITE-99"),
        event_id=sent[1].event_id,
    )
    writer.send_bytes(rewritten.stream_id, to_bytes(rewritten))
    writer.producer.flush()

    # The chain and the signatures hold: verify alone finds nothing
    assert trialops(settings, "verify").returncode == 0
    # The checkpoint does
    result = trialops(settings, "verify", "--json", "--checkpoint", str(path))
    assert result.returncode == 1
    assert problems(result)["checkpoint-rewritten"] == [f"{topic} stream subject-MSK-0301"]


def test_a_wiped_topic_is_caught(settings, checkpointed):
    _writer, _sent, path = checkpointed
    topic = event_topic("enrollment", settings.namespace)

    recreate(settings, topic)

    result = trialops(settings, "verify", "--json", "--checkpoint", str(path))
    assert result.returncode == 1
    found = problems(result)
    assert found["checkpoint-truncated"] == [f"{topic}@0"]
    assert sorted(found["checkpoint-missing"]) == [
        f"{topic} stream cohort-DL1-IP", f"{topic} stream subject-MSK-0301"
    ]


def test_an_altered_checkpoint_file_is_refused(settings, checkpointed):
    _writer, _sent, path = checkpointed
    document = orjson.loads(path.read_bytes())
    document["statement"]["taken_at"] = "2020-01-01T00:00:00Z"
    path.write_bytes(orjson.dumps(document))

    result = trialops(settings, "verify", "--json", "--checkpoint", str(path))

    assert result.returncode == 1
    assert "checkpoint-signature" in problems(result)


def test_a_running_system_takes_checkpoints_on_a_schedule_and_each_verifies(settings, tmp_path):
    # Given some history, and the checkpointer running every 2 seconds
    writer, _sent = history(settings)
    folder = tmp_path / "checkpoints"
    process = subprocess.Popen(
        [sys.executable, "-m", "trialops", "checkpoint", "--every", "2s", "--into", str(folder)],
        env={**os.environ, **settings.env()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # When more is appended while it runs
        eventually(lambda: len(list(folder.glob("checkpoint-*.json"))) >= 1, timeout=60)
        writer.resend(writer.envelope("subject-MSK-0302", SubjectRegistered(
            subject_id="MSK-0302", site_id="MSK")))
        writer.producer.flush()
        eventually(lambda: len(list(folder.glob("checkpoint-*.json"))) >= 3, timeout=60)
    finally:
        process.terminate()
        process.wait(timeout=30)

    # Then every file is a whole, signed checkpoint that the log still satisfies, and the later
    # ones cover the stream appended after the first
    files = sorted(folder.glob("checkpoint-*.json"))
    assert not list(folder.glob("*.partial"))
    streams = []
    for path in files:
        assert trialops(settings, "verify", "--checkpoint", str(path)).returncode == 0, path
        topics = orjson.loads(path.read_bytes())["statement"]["topics"]
        streams.append(set(topics[event_topic("enrollment", settings.namespace)]["streams"]))
    assert "subject-MSK-0302" not in streams[0]
    assert "subject-MSK-0302" in streams[-1]
