"""Key rotation on the real services, worker and broker (events/keys.py): ``trialops keys
rotate`` makes the next key, the writer rotates when it next opens its topic, the running
worker picks the new key up from the keyring, and verify, replay and the live view agree. An
event signed with the retired key after the rotation is refused by every reader."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import orjson
import pytest

from clients.http import DEMO_READER, TOKEN_ENV, get_bytes
from events.enrollment import SubjectRegistered
from events.topics import event_topic
from infra.keys import init_keys, load_keyring, load_signer
from projections.base import to_json
from tests.conftest import free_port
from tests.integration.raw_events import RawWriter
from trialops.stack import Stack

from .helpers import enrollment_events, eventually, register, whole_view

pytestmark = pytest.mark.kafka


def trialops(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trialops", *args],
        env={**os.environ, **settings.env()}, capture_output=True, timeout=120, check=False,
    )


def test_a_rotated_key_signs_after_its_rotation_and_the_retired_one_no_more(
    settings, tmp_path, monkeypatch
):
    from audit.replay import replay

    monkeypatch.setenv(TOKEN_ENV, DEMO_READER)
    keyring, writers = init_keys(tmp_path / "keys")
    settings = replace(settings, keyring=str(keyring), writer_keys=str(writers))
    stack = Stack(settings, tmp_path, service_port=free_port(), web_port=free_port(),
                  say=lambda _m: None)
    stack.start(timeout=120)
    try:
        # Given a subject registered under the enrollment writer's first key
        register(stack, "MSK-0701")
        old = load_signer(str(writers), "enrollment", load_keyring(str(keyring)))

        # When its key is rotated and the services start again
        rotated = trialops(settings, "keys", "rotate", "enrollment")
        assert rotated.returncode == 0, rotated.stderr.decode()
        stack.kill("services")
        stack.restart_services()
        register(stack, "MSK-0702")

        # Then the log holds the rotation, signed with the old key, and later events signed
        # with the new one
        log = enrollment_events(settings)
        kinds = [(e.event_type, e.writer_signature.key_id) for e in log]
        at = kinds.index(("WriterKeyRotated", "enrollment-1"))
        assert ("SubjectRegistered", "enrollment-1") in kinds[:at]
        assert kinds[at + 1:] == [("SubjectRegistered", "enrollment-2")]

        # And the running worker, which started with the old keyring, applies the new events
        topic = event_topic("enrollment", settings.namespace)
        url = f"{stack.projections_url}/projections/patient-timeline"
        eventually(lambda: b"MSK-0702" in get_bytes(url), timeout=60, interval=1)
        # And verify finds nothing wrong; the replay is the live view
        assert trialops(settings, "verify").returncode == 0
        assert to_json(replay(settings, "patient-timeline")) == whole_view(url)

        # When someone appends an event signed with the retired key
        forged = RawWriter(settings, "enrollment", signer=old)
        forged.resend(forged.envelope("subject-MSK-0799", SubjectRegistered(
            subject_id="MSK-0799", site_id="MSK")))
        forged.producer.flush()

        # Then verify reports it, and no projection shows it
        result = trialops(settings, "verify", "--json")
        assert result.returncode == 1
        assert "retired-key" in {p["kind"] for p in orjson.loads(result.stdout)["problems"]}
        assert b"MSK-0799" not in get_bytes(url)
        assert topic in result.stdout.decode()
    finally:
        stack.stop()


def test_a_topic_of_several_partitions_keeps_its_writers_key_until_rotation_is_per_partition(
    settings, tmp_path, monkeypatch
):
    # Decision 60: a rotation would retire the key for the other partitions' (trials') records
    monkeypatch.setenv(TOKEN_ENV, DEMO_READER)
    monkeypatch.setenv("TRIALOPS_PARTITIONS", "2")
    keyring, writers = init_keys(tmp_path / "keys")
    settings = replace(settings, keyring=str(keyring), writer_keys=str(writers))
    stack = Stack(settings, tmp_path, service_port=free_port(), web_port=free_port(),
                  say=lambda _m: None)
    stack.start(timeout=120)
    try:
        register(stack, "MSK-0711")
        rotated = trialops(settings, "keys", "rotate", "enrollment")
        assert rotated.returncode == 0, rotated.stderr.decode()
        stack.kill("services")
        stack.restart_services()
        register(stack, "MSK-0712")
        kinds = [(e.event_type, e.writer_signature.key_id) for e in enrollment_events(settings)]
        assert kinds == [("SubjectRegistered", "enrollment-1")] * 2
        log = (tmp_path / "services.log").read_text()
        assert "does not rotate its writer's key yet" in log
        assert trialops(settings, "verify").returncode == 0
    finally:
        stack.stop()
