"""Bitemporal replay on a real broker: "what had happened by T" (business time) and "what the
system had recorded by T" (recorded time) differ exactly by the events recorded late."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit.replay import ReplayStats, replay
from events.enrollment import SubjectRegistered
from infra.topic_admin import ensure_topics
from tests.integration.raw_events import RawWriter

pytestmark = pytest.mark.kafka

NINE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FIVE_PM = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def subjects(document) -> list[str]:
    return [s["subject_id"] for s in document["subjects"]]


def test_an_event_recorded_late_is_in_business_time_but_not_in_recorded_time(settings):
    ensure_topics(settings.bootstrap_servers, settings.namespace)
    writer = RawWriter(settings)
    # Given MSK-0001 registered at 9:00 and recorded at once,
    writer.append("subject-MSK-0001", SubjectRegistered(subject_id="MSK-0001", site_id="MSK"),
                  occurred_at=NINE, recorded_at=NINE)
    # and MSK-0002 registered at 9:00 at the site but only entered at 17:00
    writer.append("subject-MSK-0002", SubjectRegistered(subject_id="MSK-0002", site_id="MSK"),
                  occurred_at=NINE, recorded_at=FIVE_PM)
    writer.producer.flush()

    # When both timelines are replayed as of noon
    stats = ReplayStats()
    by_business_time = replay(settings, "patient-timeline", as_of=NOON, axis="occurred")
    by_recorded_time = replay(settings, "patient-timeline", as_of=NOON, axis="recorded",
                              stats=stats)

    # Then what had happened by noon includes MSK-0002, what the system knew does not
    assert subjects(by_business_time) == ["MSK-0001", "MSK-0002"]
    assert subjects(by_recorded_time) == ["MSK-0001"]
    assert (stats.events, stats.applied) == (2, 1)
    # and as of 17:00 both agree
    assert replay(settings, "patient-timeline", as_of=FIVE_PM) == by_business_time


def test_replay_all_reads_the_log_once_and_gives_each_projection_its_own_replay(settings):
    """Issue 12: ``replay --all`` reads every topic once and each document is, byte for byte,
    the one ``replay NAME`` gives (decision 6: one serialisation for live and replay)."""
    from audit.replay import replay_all
    from events.manufacturing import ApheresisReceived, LotHarvested
    from projections.base import to_json
    from projections.catalog import NAMES

    ensure_topics(settings.bootstrap_servers, settings.namespace)
    enrollment = RawWriter(settings)
    manufacturing = RawWriter(settings, context="manufacturing")
    # Given events on two topics, two of them recorded at the same instant (a tie the merge
    # must break the same way as each projection's own replay does),
    enrollment.append("subject-MSK-0007", SubjectRegistered(subject_id="MSK-0007", site_id="MSK"),
                      occurred_at=NINE, recorded_at=NINE)
    manufacturing.append("lot-LOT-0007-A", ApheresisReceived(lot_id="LOT-0007-A",
                                                             subject_id="MSK-0007"),
                         occurred_at=NINE, recorded_at=NINE)
    manufacturing.append("lot-LOT-0007-A", LotHarvested(lot_id="LOT-0007-A", subject_id="MSK-0007",
                                                        total_viable_cells=9.5e8),
                         occurred_at=NOON, recorded_at=FIVE_PM)
    enrollment.append("subject-MSK-0008", SubjectRegistered(subject_id="MSK-0008", site_id="MSK"),
                      occurred_at=NOON, recorded_at=NOON)
    enrollment.producer.flush()
    manufacturing.producer.flush()

    # When every projection is replayed from one read, now and as of noon,
    for as_of in (None, NOON):
        stats = ReplayStats()
        documents = replay_all(settings, as_of=as_of, now=FIVE_PM, stats=stats)
        # Then every record was read once (four records, not once per projection)
        assert stats.events == 4
        assert list(documents) == list(NAMES)
        # and each document is the projection's own replay, byte for byte.
        for name in NAMES:
            alone = replay(settings, name, as_of=as_of, now=FIVE_PM)
            assert to_json(documents[name]) == to_json(alone), name
    assert subjects(replay_all(settings, ("patient-timeline",))["patient-timeline"]) == [
        "MSK-0007", "MSK-0008"
    ]
