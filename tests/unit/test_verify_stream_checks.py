"""verify's per-stream and event-id checks, fed one event at a time (issue 12: verify keeps
per-stream heads, not the log).

Source of the expected values: the checks ``audit/verify.py`` states in its module docstring
(sequence numbers run 1, 2, 3 ... without gaps or repeats, in that order on the topic; each
``prev_hash`` is the hash of the event before it, the first one's 64 zeros; no event id on two
different events) and the kinds and places ``tests/integration/test_verify.py`` checks on a
broker. The seeded walks compare with the whole-log check verify ran before issue 12, written
out again below from those rules.
"""

from __future__ import annotations

import hashlib
import random
import uuid

from audit.verify import EventIds, Problem, StreamCheck

GENESIS = "0" * 64
NAME = "trial.enrollment stream subject-MSK-0001"


def h(seq: int, variant: int = 0) -> str:
    return hashlib.sha256(f"{seq}/{variant}".encode()).hexdigest()


def event(seq: int, variant: int = 0, prev: str | None = None) -> tuple[int, str, str]:
    """Event ``seq`` of the stream, chained to the first variant of the event before it."""
    return seq, h(seq, variant), prev if prev is not None else (h(seq - 1) if seq > 1 else GENESIS)


def check(*events: tuple[int, str, str]) -> list[Problem]:
    stream = StreamCheck("trial.enrollment", "subject-MSK-0001")
    for offset, (seq, hash_hex, prev) in enumerate(events):
        stream.add(seq, hash_hex, prev, f"t@0:{offset}")
    return stream.finish()


def kinds(problems: list[Problem]) -> list[str]:
    return [p.kind for p in problems]


def test_a_stream_that_runs_one_two_three_and_chains_has_no_problem():
    assert check(*(event(n) for n in range(1, 6))) == []


def test_a_dropped_event_is_missing_once_and_its_gap_is_not_a_broken_chain():
    problems = check(event(1), event(3))
    assert kinds(problems) == ["missing"]
    assert problems[0].detail == "seq 2 of 1..3 not on the topic"
    assert problems[0].where == NAME


def test_every_gap_is_named_as_a_range():
    problems = check(event(1), event(4), event(5), event(9))
    assert [p.detail for p in problems if p.kind == "missing"] == [
        "seq 2-3, 6-8 of 1..9 not on the topic"
    ]


def test_a_stream_whose_first_event_is_gone_misses_seq_one():
    assert [p.detail for p in check(event(2), event(3))] == ["seq 1 of 1..3 not on the topic"]


def test_events_out_of_order_are_reordered_not_missing_nor_broken():
    problems = check(event(2), event(1))
    assert kinds(problems) == ["reordered"]
    assert problems[0].where == "t@0:1"
    assert problems[0].detail == f"{NAME}: seq 1 comes after seq 2"


def test_the_same_event_again_is_a_duplicate_and_another_event_at_its_seq_a_conflict():
    problems = check(event(1), event(1), event(1, variant=1))
    assert kinds(problems) == ["duplicate", "conflicting-duplicate"]
    assert [p.where for p in problems] == ["t@0:1", "t@0:2"]


def test_a_copy_of_an_event_long_past_is_told_apart_from_a_conflict():
    many = [event(n) for n in range(1, 50)]
    problems = check(*many, event(7), event(8, variant=2))
    assert kinds(problems) == ["duplicate", "conflicting-duplicate"]
    assert [p.detail for p in problems] == [
        f"{NAME}: seq 7 appears again", f"{NAME}: seq 8 appears again"
    ]


def test_an_event_that_does_not_chain_to_the_one_before_is_a_broken_chain():
    problems = check(event(1), event(2), event(3, prev=h(9)), event(4))
    assert kinds(problems) == ["broken-chain"]
    assert problems[0].detail.startswith("seq 3 does not chain to seq 2 (prev_hash ")
    assert f"expected {h(2)[:12]}..." in problems[0].detail


def test_a_first_event_must_chain_to_sixty_four_zeros():
    problems = check(event(1, prev=h(0)))
    assert kinds(problems) == ["broken-chain"]
    assert f"expected {GENESIS[:12]}..." in problems[0].detail


def test_chains_are_checked_among_events_that_arrived_ahead_of_a_gap():
    # 2 never comes; 4 arrives before 3 and 4 does not chain to 3.
    problems = check(event(1), event(4, prev=h(3, 5)), event(3))
    assert kinds(problems) == ["reordered", "missing", "broken-chain"]
    assert problems[1].detail == "seq 2 of 1..4 not on the topic"
    assert problems[2].detail.startswith("seq 4 does not chain to seq 3")


def test_a_long_clean_stream_keeps_nothing_waiting():
    stream = StreamCheck("trial.enrollment", "subject-MSK-0001")
    for n in range(1, 20_001):
        stream.add(*event(n), f"t@0:{n}")
    assert not stream.ahead
    assert stream.run == 20_000
    assert stream.prefixes.itemsize == 8
    assert stream.finish() == []


def whole_log_check(events: list[tuple[int, str, str, str]]) -> list[tuple[str, str, str]]:
    """The stream check as verify ran it before issue 12, holding every event: per event a
    repeat (duplicate or conflicting) or a seq below the highest so far (reordered); then the
    seqs below the highest that never came; then every seq whose predecessor is there and whose
    prev_hash is not its hash."""
    problems = []
    by_seq: dict[int, tuple[str, str]] = {}
    top = 0
    for seq, hash_hex, prev, where in events:
        if seq in by_seq:
            kind = "duplicate" if by_seq[seq][0] == hash_hex else "conflicting-duplicate"
            problems.append((kind, where, f"seq {seq}"))
            continue
        if seq < top:
            problems.append(("reordered", where, f"seq {seq} after {top}"))
        by_seq[seq] = (hash_hex, prev)
        top = max(top, seq)
    missing = sorted(set(range(1, top + 1)) - set(by_seq))
    if missing:
        problems.append(("missing", NAME, ",".join(map(str, missing))))
    for seq in sorted(by_seq):
        if seq > 1 and seq - 1 not in by_seq:
            continue
        expected = by_seq[seq - 1][0] if seq > 1 else GENESIS
        if by_seq[seq][1] != expected:
            problems.append(("broken-chain", NAME, f"seq {seq}"))
    return problems


def summary(problem: Problem) -> tuple[str, str, str]:
    detail = problem.detail.removeprefix(f"{NAME}: ")
    if problem.kind == "missing":
        spans = detail.split(" of ")[0].removeprefix("seq ")
        numbers: list[int] = []
        for span in spans.split(", "):
            a, _, b = span.partition("-")
            numbers += range(int(a), int(b or a) + 1)
        detail = ",".join(map(str, numbers))
    elif problem.kind == "reordered":
        detail = detail.replace(" comes after seq ", " after ")
    else:
        detail = " ".join(detail.split()[:2])
    return problem.kind, problem.where, detail


def test_in_300_seeded_walks_the_streaming_check_reports_what_the_whole_log_check_did():
    for seed in range(300):
        rng = random.Random(seed)
        length = rng.randint(1, 30)
        events = [event(n) for n in range(1, length + 1)]
        for _ in range(rng.randint(0, 4)):
            what = rng.choice(("drop", "swap", "copy", "conflict", "rechain"))
            if not events:
                break
            i = rng.randrange(len(events))
            if what == "drop":
                events.pop(i)
            elif what == "swap" and i + 1 < len(events):
                events[i], events[i + 1] = events[i + 1], events[i]
            elif what == "copy":
                events.insert(rng.randrange(len(events) + 1), events[i])
            elif what == "conflict":
                seq = events[i][0]
                events.insert(rng.randrange(len(events) + 1), event(seq, variant=rng.randint(1, 3)))
            elif what == "rechain":
                seq, hash_hex, _prev = events[i]
                events[i] = (seq, hash_hex, h(seq + 7))
        placed = [(s, x, p, f"t@0:{o}") for o, (s, x, p) in enumerate(events)]
        streaming = StreamCheck("trial.enrollment", "subject-MSK-0001")
        for seq, hash_hex, prev, where in placed:
            streaming.add(seq, hash_hex, prev, where)
        assert [summary(p) for p in streaming.finish()] == whole_log_check(placed), seed


def test_one_event_written_twice_is_not_an_event_id_clash():
    ids = EventIds()
    one = uuid.uuid4().int
    ids.add(one, hash((h(1), "stream-a")), 10)
    ids.add(uuid.uuid4().int, hash((h(2), "stream-a")), 11)
    ids.add(one, hash((h(1), "stream-a")), 12)
    assert ids.clashes() == []


def test_one_event_id_on_two_different_events_is_a_clash_at_the_later_naming_the_first():
    ids = EventIds()
    one = uuid.uuid4()
    ids.add(one.int, hash((h(1), "stream-a")), 10)
    ids.add(uuid.uuid4().int, hash((h(2), "stream-a")), 11)
    ids.add(one.int, hash((h(1), "stream-b")), 12)
    ids.add(one.int, hash((h(3), "stream-a")), 13)
    assert ids.clashes() == [(12, 10, str(one)), (13, 10, str(one))]


def test_ids_that_share_their_low_half_are_still_different_ids():
    ids = EventIds()
    low = uuid.uuid4().int & ((1 << 64) - 1)
    ids.add((1 << 64) | low, hash((h(1), "s")), 1)
    ids.add((2 << 64) | low, hash((h(2), "s")), 2)
    assert ids.clashes() == []
