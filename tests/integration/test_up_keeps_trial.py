"""``trialops up`` keeps the trial between runs: the demo is seeded only into a namespace whose
event topics hold nothing, and says why it is skipped otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clients import simulate
from events.enrollment import SubjectRegistered
from infra.topic_admin import ensure_topics, record_counts
from tests.integration.raw_events import RawWriter
from trialops import stack

pytestmark = pytest.mark.kafka


class Simulated(Exception):
    """Raised instead of running the simulated trial."""


@pytest.fixture
def no_simulation(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise Simulated

    monkeypatch.setattr(simulate, "simulate", refuse)


def test_the_demo_is_not_seeded_into_a_trial_that_has_events(settings, no_simulation, capsys):
    ensure_topics(settings.bootstrap_servers, settings.namespace)
    writer = RawWriter(settings)
    try:
        writer.append("subject-MSK-0001", SubjectRegistered(subject_id="MSK-0001", site_id="MSK"))
    finally:
        writer.close()
    assert sum(record_counts(settings.bootstrap_servers, settings.namespace).values()) == 1

    stack._demo(SimpleNamespace(projections_url="http://127.0.0.1:1"), 0.0, settings)

    said = capsys.readouterr().out
    assert f"demo not run: the trial in namespace '{settings.namespace}' already holds 1" in said
    assert "--fresh" in said


def test_the_demo_is_seeded_into_an_empty_trial(settings, no_simulation):
    ensure_topics(settings.bootstrap_servers, settings.namespace)
    assert sum(record_counts(settings.bootstrap_servers, settings.namespace).values()) == 0

    with pytest.raises(Simulated):
        stack._demo(
            SimpleNamespace(projections_url="http://127.0.0.1:1", service_url="http://x"),
            0.0,
            settings,
        )


def test_the_access_log_alone_does_not_count_as_a_trial(settings, no_simulation):
    """The services record the demo users on the access topic before the demo starts."""
    from events.access import UserAdded

    ensure_topics(settings.bootstrap_servers, settings.namespace)
    writer = RawWriter(settings, "access")
    try:
        writer.append("user-demo-auditor", UserAdded(
            user_id="demo-auditor", role="auditor",
            token_hash="scrypt$16384$8$1$" + "a" * 32 + "$" + "b" * 64))
    finally:
        writer.close()

    with pytest.raises(Simulated):
        stack._demo(
            SimpleNamespace(projections_url="http://127.0.0.1:1", service_url="http://x"),
            0.0,
            settings,
        )
