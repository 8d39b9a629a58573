"""What the worker counts as a gap in what its consumer delivered, and as a partition standing
still (projections/continuity.py, decision 69).

The reference is Kafka's transaction protocol: a transaction that wrote to a partition ends
with one control record (the commit marker) there, which a ``read_committed`` consumer never
sees. Offsets below are laid out as the services write: one command, one transaction."""

from __future__ import annotations

from projections.continuity import Markers, Missed, stalled, unseen

SOURCE = "enrollment.events:0"


def markers(*offsets: int) -> Markers:
    """Markers noted at ``offsets`` of ``SOURCE``, one control record each (a transaction's
    commit or abort marker is a control batch of one record)."""
    noted = Markers()
    for offset in offsets:
        noted.note(SOURCE, offset, offset + 1)
    return noted


def test_consecutive_records_and_a_commit_marker_leave_no_gap():
    # One transaction wrote offsets 10 and 11, its marker is at 12, the next one starts at 13
    noted = markers(12)
    assert list(unseen(11, 11, noted, SOURCE)) == []  # the next record of the same transaction
    assert list(unseen(12, 13, noted, SOURCE)) == []  # the marker at 12 passed over
    assert list(unseen(0, 0, noted, SOURCE)) == []  # the first record of a partition


def test_two_writers_markers_side_by_side_leave_no_gap():
    # Two transactions' markers at 12 and 13, the next record at 14
    assert list(unseen(12, 14, markers(12, 13), SOURCE)) == []


def test_a_copy_that_comes_again_is_no_gap():
    assert list(unseen(20, 7, markers(), SOURCE)) == []


def test_a_missed_record_leaves_a_gap_however_the_transactions_lie():
    # Transactions [10, 11] + marker 12, [13] + marker 14, [15]
    noted = markers(12, 14)
    # 10 applied, 11 missed, 13 delivered
    assert list(unseen(11, 13, noted, SOURCE)) == [11, 12]
    # 11 applied (position 12, the marker), 13 missed, 15 delivered
    assert list(unseen(12, 15, noted, SOURCE)) == [12, 13, 14]
    # The many-trials test's restart: position 11, first record delivered at 58
    assert unseen(11, 58, noted, SOURCE) == range(11, 58)


def test_one_record_missed_next_to_the_position_is_a_gap():
    # What decision 69's rule let through: a record one offset beyond the position passed
    # over, with no marker there (appends without a transaction, or the first of several
    # records of one transaction in the partition)
    assert list(unseen(94, 95, markers(), SOURCE)) == [94]
    assert list(unseen(10, 11, markers(12), SOURCE)) == [10]
    # and a marker noted for another partition explains nothing here
    other = Markers()
    other.note("enrollment.events:1", 94, 95)
    assert list(unseen(94, 95, other, SOURCE)) == [94]


def test_an_aborted_transaction_is_read_as_a_gap_and_found_empty():
    # Records 12 and 13 aborted, the abort marker at 14, the next commit's record at 15: the
    # worker reads 12..14 and finds no committed record there (it cannot tell beforehand)
    assert list(unseen(12, 15, markers(14), SOURCE)) == [12, 13, 14]


def test_markers_below_the_position_are_forgotten_once_many_and_those_ahead_kept():
    # A marker after every record: twice as many as a partition keeps
    noted = markers(*range(1, 4 * Markers.KEEP, 2))
    assert list(unseen(2 * Markers.KEEP + 1, 2 * Markers.KEEP + 2, noted, SOURCE)) == []
    # The clearing kept the markers ahead of the position, and forgot those below it
    assert list(unseen(4 * Markers.KEEP - 3, 4 * Markers.KEEP - 2, noted, SOURCE)) == []
    assert list(unseen(1, 2, noted, SOURCE)) == [1]


def test_a_partition_stands_still_only_when_its_position_is_the_same_twice_behind_its_end():
    before = {"t:0": 11, "t:1": 40, "t:2": 5, "t:4": 7}
    now = {"t:0": 11, "t:1": 52, "t:2": 5, "t:3": 0, "t:4": 7}
    ends = {"t:0": 92, "t:1": 90, "t:2": 6, "t:3": 30, "t:4": 8}
    noted = Markers()
    noted.note("t:2", 5, 6)
    # t:0 stood at 11 with 81 records beyond; t:1 moved; t:2 only has its marker beyond;
    # t:3 was not looked at before; t:4 has one record beyond, never delivered
    assert stalled(before, now, ends, halted=(), markers=noted) == ["t:0", "t:4"]


def test_a_halted_partition_or_one_without_a_known_end_is_not_standing_still():
    before = now = {"t:0": 11, "t:1": 11}
    assert stalled(before, now, {"t:0": 92, "t:1": None}, halted=["t:0"],
                   markers=Markers()) == []


def test_a_record_read_by_the_worker_looks_to_the_fold_as_a_delivered_one():
    record = Missed("enrollment.events", 3, 57, b"{}")
    assert (record.message.topic, record.message.partition, record.message.offset) == (
        "enrollment.events", 3, 57)
    assert record.value == record.message.value == b"{}"
    assert record.message.key is None
