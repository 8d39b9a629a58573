"""Who writes which partitions: the writers' group's assignment (decision 59), without a broker,
and kafka-python's assignor protocol round trip (subscription out, assignment back)."""

from __future__ import annotations

import orjson
from kafka.coordinator.assignors.abstract import ConsumerProtocolSubscription

from services.writer_group import CoPartitioned, Holding, Member, assign, counts_agree

TOPICS = {"ns.enrollment.events": 1, "ns.dosing.events": 1, "ns.access.events": 1}


def member(member_id: str, url: str, holds=(), since=-1, topics=TOPICS) -> Member:
    return Member(member_id, url, frozenset(topics), frozenset(holds), since)


def test_a_lone_member_holds_every_partition_of_every_topic():
    by_member, owners = assign(TOPICS, [member("m-1", "http://a")])
    assert by_member == {"m-1": {t: [0] for t in sorted(TOPICS)}}
    assert owners == {0: "http://a"}


def test_a_partition_number_goes_to_one_member_for_every_topic():
    topics = {"ns.enrollment.events": 4, "ns.dosing.events": 4}
    by_member, owners = assign(topics, [member("m-1", "http://a", topics=topics),
                                        member("m-2", "http://b", topics=topics)])
    for mid, url in (("m-1", "http://a"), ("m-2", "http://b")):
        numbers = {n for n, u in owners.items() if u == url}
        assert len(numbers) == 2
        assert by_member[mid] == {t: sorted(numbers) for t in sorted(topics)}
    assert set(owners) == {0, 1, 2, 3}


def test_a_joining_member_does_not_take_what_another_holds():
    # m-0 sorts first, but m-9 holds partition 0: it keeps it
    by_member, owners = assign(TOPICS, [member("m-0", "http://new"),
                                        member("m-9", "http://old", holds=[0], since=3)])
    assert owners == {0: "http://old"}
    assert by_member["m-0"] == {t: [] for t in sorted(TOPICS)}


def test_of_two_claimants_the_later_grant_wins():
    # m-1 was evicted while stalled (granted at generation 3) and came back claiming it still;
    # m-2 was given it at generation 5
    _by_member, owners = assign(TOPICS, [member("m-1", "http://stalled", holds=[0], since=3),
                                         member("m-2", "http://taker", holds=[0], since=5)])
    assert owners == {0: "http://taker"}


def test_a_joining_member_takes_a_fair_share_of_the_trials_partitions():
    topics = {"ns.enrollment.events": 4, "ns.access.events": 4}
    # the first instance held every partition; two trials sit on partitions 1 and 3
    old = member("m-0", "http://old", holds=[0, 1, 2, 3], since=2, topics=topics)
    new = member("m-9", "http://new", topics=topics)
    _by_member, owners = assign(topics, [old, new], busy={1, 3})
    assert sorted(owners[n] for n in (1, 3)) == ["http://new", "http://old"]
    assert sorted(owners[n] for n in (0, 2)) == ["http://new", "http://old"]
    # what the old one keeps it held already: only what must move moves
    assert owners[1] == "http://old"


def test_a_member_gets_only_the_topics_it_subscribed_to():
    narrow = {"ns.access.events": 1}
    by_member, _owners = assign(TOPICS, [member("m-1", "http://a", topics=narrow)])
    assert by_member == {"m-1": {"ns.access.events": [0]}}


def test_nobody_in_the_group_holds_nothing():
    assert assign(TOPICS, []) == ({}, {})


def test_the_holder_of_all_is_one_url_or_none():
    assert Holding(frozenset({0}), {0: "http://a"}, True).holder_of_all({0}) == "http://a"
    split = Holding(frozenset({0}), {0: "http://a", 1: "http://b"}, True)
    assert split.holder_of_all({0, 1}) is None
    assert Holding().holder_of_all({0}) is None


class FakeCluster:
    def partitions_for_topic(self, topic):
        return {0} if topic in TOPICS else None


class JoinMember:
    def __init__(self, member_id: str, metadata: ConsumerProtocolSubscription):
        self.member_id = member_id
        self.group_instance_id = None
        self.metadata = metadata


def test_the_assignor_sends_its_url_and_claims_and_hands_back_the_owners():
    held = CoPartitioned("http://held", lambda: (frozenset({0}), 7), ["NCT06623396"])
    fresh = CoPartitioned("http://fresh", lambda: (frozenset(), -1), ["NCT06623396"])
    sent = held.metadata(set(TOPICS))
    assert orjson.loads(sent.user_data) == {"url": "http://held", "holds": [0], "since": 7,
                                            "trials": ["NCT06623396"]}
    members = [JoinMember("a-fresh", fresh.metadata(set(TOPICS))), JoinMember("z-held", sent)]
    assignments = fresh.assign(FakeCluster(), members)  # the leader may be any member
    assert assignments["a-fresh"].partitions() == []
    assert sorted(tp.topic for tp in assignments["z-held"].partitions()) == sorted(TOPICS)
    held.on_assignment(assignments["z-held"], 8)
    assert held.owners == {0: "http://held"} and held.generation == 8
    assert held.partitions == 1


class UnknownCluster:
    def partitions_for_topic(self, topic):
        return None if topic == "ns.access.events" else {0, 1}


def test_nothing_is_given_while_a_topics_partition_count_is_unknown_or_they_differ():
    # A trial's partition depends on the count: a guess would write it to the wrong one
    member = CoPartitioned("http://a", lambda: (frozenset(), -1), ["NCT06623396"])
    joined = [JoinMember("m-1", member.metadata(set(TOPICS)))]
    assignments = member.assign(UnknownCluster(), joined)
    assert assignments["m-1"].partitions() == []
    member.on_assignment(assignments["m-1"], 1)
    assert member.partitions == 0
    assert counts_agree({"a": 2, "b": 2}) == 2
    assert counts_agree({"a": 2, "b": 1}) == -1
    assert counts_agree({"a": 2}, unknown=["b"]) == 0


def test_a_member_whose_subscription_carries_no_data_claims_nothing():
    bare = ConsumerProtocolSubscription(0, sorted(TOPICS), b"not json")
    fresh = CoPartitioned("http://fresh", lambda: (frozenset(), -1))
    assignments = fresh.assign(FakeCluster(), [JoinMember("m-1", bare),
                                               JoinMember("m-2", fresh.metadata(set(TOPICS)))])
    # the partitions go to the first member holding the fewest: m-1, whose URL is unknown
    assert [tp.partition for tp in assignments["m-1"].partitions()] == [0, 0, 0]
