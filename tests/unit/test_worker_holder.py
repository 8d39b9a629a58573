"""Which worker of the group answers the views (decision 58): the one member the assignor's
map says holds partitions of every event topic; nobody while they are spread or unheld."""

from __future__ import annotations

from projections.owner import holder_in

TOPICS = ("t.enrollment.events", "t.dosing.events")


def test_the_member_holding_every_event_topic_answers():
    distribution = {
        "http://a:6066/": {"t.enrollment.events": [0], "t.dosing.events": [0]},
        "http://b:6066": {"t.enrollment.events": [], "t.dosing.events": []},
    }
    assert holder_in(distribution, TOPICS) == "http://a:6066"


def test_nobody_answers_while_no_member_holds_them():
    assert holder_in({}, TOPICS) is None
    assert holder_in({"http://a:6066": {"t.enrollment.events": []}}, TOPICS) is None


def test_nobody_answers_from_tables_when_the_topics_are_spread_over_members():
    distribution = {
        "http://a:6066": {"t.enrollment.events": [0]},
        "http://b:6066": {"t.dosing.events": [0]},
    }
    assert holder_in(distribution, TOPICS) is None


def test_a_member_holding_only_some_of_the_topics_is_not_the_holder():
    assert holder_in({"http://a:6066": {"t.enrollment.events": [0]}}, TOPICS) is None


def test_other_topics_a_member_holds_do_not_matter():
    distribution = {
        "http://a:6066": {"t.enrollment.events": [0], "t.dosing.events": [0]},
        "http://b:6066": {"other.topic": [0, 1]},
    }
    assert holder_in(distribution, TOPICS) == "http://a:6066"


def test_a_worker_answers_from_its_tables_only_holding_every_partition_of_every_topic():
    from projections.owner import holds_all

    assert holds_all({("t.enrollment.events", 0), ("t.dosing.events", 0)},
                     {"t.enrollment.events": 1, "t.dosing.events": 1})
    # half of a two-partition topic is half of each view
    assert not holds_all({("t.enrollment.events", 0), ("t.dosing.events", 0)},
                         {"t.enrollment.events": 2, "t.dosing.events": 1})
    # a topic whose partitions are not known yet is not held
    assert not holds_all({("t.enrollment.events", 0)}, {"t.enrollment.events": None})
    assert not holds_all(set(), {"t.enrollment.events": 1})
