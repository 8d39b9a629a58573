"""The topic catalogue (events/topics.py, DESIGN.md section 3): one event topic per bounded
context, named ``<namespace>.<context>.events``, keeping events forever, never compacted."""

from __future__ import annotations

import pytest

from events.topics import CONTEXTS, catalogue, event_topic

# DESIGN.md section 3 names the four topics of the trial.
DESIGNED_TOPICS = {
    "trialops.enrollment.events",
    "trialops.dosing.events",
    "trialops.manufacturing.events",
    "trialops.safety.events",
}


def test_the_catalogue_holds_the_designed_event_topics_the_quarantine_access_and_alerts():
    names = [spec.name for spec in catalogue()]

    assert sorted(names) == sorted(
        [
            *DESIGNED_TOPICS,
            "trialops.quarantine.events",
            "trialops.access.events",
            "trialops.notifications.events",
            "trialops.checkpoints",
        ]
    )


@pytest.mark.parametrize("namespace", ["trialops", "staging", "site-audit-2025"])
def test_one_topic_per_context_named_namespace_context_events(namespace):
    names = [spec.name for spec in catalogue(namespace)]

    assert names == [
        *(
            f"{namespace}.{context}.events"
            for context in (*CONTEXTS, "quarantine", "access", "notifications")
        ),
        f"{namespace}.checkpoints",
    ]


@pytest.mark.parametrize("context", CONTEXTS)
def test_event_topic_name_for_each_context(context):
    assert event_topic(context) == f"trialops.{context}.events"
    assert event_topic(context, "staging") == f"staging.{context}.events"


@pytest.mark.parametrize("spec", catalogue(), ids=lambda spec: spec.name)
def test_event_topics_keep_events_forever_and_are_never_compacted(spec):
    assert spec.configs["retention.ms"] == "-1"
    assert spec.configs["cleanup.policy"] == "delete"
    assert "compact" not in spec.configs["cleanup.policy"]


def test_each_topic_gets_its_own_copy_of_the_configuration():
    first, second, *_ = catalogue()

    first.configs["retention.ms"] = "604800000"

    assert second.configs["retention.ms"] == "-1"
    assert all(spec.configs["retention.ms"] == "-1" for spec in catalogue())


@pytest.mark.parametrize("context", ["pharmacy", "Enrollment", "enrollment.events", ""])
def test_event_topic_refuses_an_unknown_context(context):
    with pytest.raises(ValueError, match="unknown bounded context") as refused:
        event_topic(context)

    assert repr(context) in str(refused.value)


def test_context_topics_get_the_partitions_asked_for_and_the_checkpoints_one(monkeypatch):
    # Decision 60: a trial's partition is the same number in every context topic
    from infra.topic_admin import configured_partitions

    specs = catalogue("ns", 4)
    assert {spec.partitions for spec in specs if spec.name.endswith(".events")} == {4}
    assert [spec.partitions for spec in specs if spec.name == "ns.checkpoints"] == [1]
    monkeypatch.delenv("TRIALOPS_PARTITIONS", raising=False)
    assert configured_partitions() == 1
    monkeypatch.setenv("TRIALOPS_PARTITIONS", "4")
    assert configured_partitions() == 4
    for wrong in ("0", "four", "-2"):
        monkeypatch.setenv("TRIALOPS_PARTITIONS", wrong)
        with pytest.raises(ValueError, match="TRIALOPS_PARTITIONS"):
            configured_partitions()
    with pytest.raises(ValueError):
        catalogue("ns", 0)
