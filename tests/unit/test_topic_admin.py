"""What makes an event topic able to lose events (infra.topic_admin), without a broker."""

from __future__ import annotations

import pytest

from infra.topic_admin import (
    configured_replication_factor,
    event_topic_configs,
    topic_problems,
    wanted_replication,
)

SAFE_SINGLE = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
    "min.insync.replicas": "1",
    "unclean.leader.election.enable": "false",
    "flush.messages": "1",
}
SAFE_REPLICATED = {
    **SAFE_SINGLE, "min.insync.replicas": "2", "flush.messages": "9223372036854775807"
}


def found(configs, replication=1, brokers=1):
    return [(p.key, p.found, p.needed) for p in topic_problems("t", configs, replication, brokers)]


@pytest.mark.parametrize(("brokers", "wanted"), [(1, 1), (2, 2), (3, 3), (5, 3)])
def test_event_topics_want_min_3_and_the_brokers_replicas(brokers, wanted):
    assert wanted_replication(brokers) == wanted


def test_a_new_replicated_topic_wants_two_in_sync_replicas_and_a_single_one_flushes():
    assert event_topic_configs(3) == {
        "retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete",
        "min.insync.replicas": "2",
    }
    assert event_topic_configs(2)["min.insync.replicas"] == "2"
    assert event_topic_configs(1) == {
        "retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete",
        "flush.messages": "1",
    }


def test_safe_topics_have_no_problem():
    assert found(SAFE_SINGLE) == []
    assert found(SAFE_REPLICATED, replication=3, brokers=3) == []
    assert found(SAFE_REPLICATED, replication=2, brokers=2) == []


@pytest.mark.parametrize(
    ("key", "value", "needed"),
    [
        ("retention.ms", "604800000", "-1"),
        ("retention.bytes", "1073741824", "-1"),
        ("cleanup.policy", "compact", "delete"),
        ("cleanup.policy", "compact,delete", "delete"),
        ("flush.messages", "9223372036854775807", "1"),
    ],
)
def test_each_setting_that_drops_events_is_named_with_its_value(key, value, needed):
    assert found({**SAFE_SINGLE, key: value}) == [(key, value, needed)]


def test_a_compacted_topic_says_compaction_keeps_only_the_last_event():
    (problem,) = topic_problems("t", {**SAFE_SINGLE, "cleanup.policy": "compact"}, 1, 1)
    assert "compaction" in problem.risk
    assert str(problem).startswith("t: cleanup.policy is compact, needs delete (")


def test_too_few_replicas_on_a_cluster():
    assert found(SAFE_SINGLE, replication=1, brokers=3) == [
        ("replication.factor", "1", ">= 3 on 3 brokers")
    ]
    assert found(SAFE_REPLICATED, replication=2, brokers=3) == [
        ("replication.factor", "2", ">= 3 on 3 brokers")
    ]


def test_a_replicated_topic_needs_two_in_sync_replicas_and_no_unclean_election():
    assert found({**SAFE_REPLICATED, "min.insync.replicas": "1"}, 3, 3) == [
        ("min.insync.replicas", "1", ">= 2")
    ]
    assert found({**SAFE_REPLICATED, "unclean.leader.election.enable": "true"}, 3, 3) == [
        ("unclean.leader.election.enable", "true", "false")
    ]


def test_a_replicated_topic_does_not_need_to_flush_every_message():
    assert found({**SAFE_REPLICATED, "flush.messages": "9223372036854775807"}, 3, 3) == []


def test_the_replication_factor_comes_from_the_environment_only_when_set(monkeypatch):
    monkeypatch.delenv("TRIALOPS_REPLICATION_FACTOR", raising=False)
    assert configured_replication_factor() is None
    monkeypatch.setenv("TRIALOPS_REPLICATION_FACTOR", "")
    assert configured_replication_factor() is None
    monkeypatch.setenv("TRIALOPS_REPLICATION_FACTOR", "2")
    assert configured_replication_factor() == 2
    for bad in ("0", "three"):
        monkeypatch.setenv("TRIALOPS_REPLICATION_FACTOR", bad)
        with pytest.raises(ValueError, match="TRIALOPS_REPLICATION_FACTOR"):
            configured_replication_factor()
