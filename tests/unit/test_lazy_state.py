"""A writer restarted from its snapshot makes its state's entries and its streams' heads when
they are read, not all at once (decision 57): the state it decides on is still exactly the
fold of its log from the first event, whatever the commands after the restart change.

Sources: issue 12 ("a service's restart at 1M events of history within 2x its restart at
10k"; "Snapshots for the writers": "starts from its latest snapshot ... and folds only what
follows"), decision 42 (a snapshot is used only once it is verified), and Python's own dict
for what a map does (insertion order; a key set again keeps its place; a key removed and set
again goes to the end), which the states' maps replaced.
"""

from __future__ import annotations

import hashlib
import random
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.persistent import PMap, base_of
from services.snapshots import (
    Snapshot,
    SnapshotRefused,
    from_plain,
    open_snapshot,
    seal_snapshot,
    to_plain,
)
from services.stream_heads import StreamHead, StreamHeads

from .test_snapshots import (
    KEYRING,
    TOPIC,
    WRITER,
    plain,
    resigned,
    seen_by,
    simulated_trial,
    snapshot,
)


def lazily(entries: dict[str, Any]) -> tuple[PMap[str, Any], list[int]]:
    """A map made lazily of ``entries`` (as a snapshot holds them: keys sorted, the map's order
    beside them) and the sorted positions it made, in the order it made them."""
    keys = sorted(entries)
    order = [keys.index(key) for key in entries]
    made: list[int] = []

    def make(position: int) -> Any:
        made.append(position)
        return entries[keys[position]]

    return PMap.lazily(keys, make, order=order), made


def count_made(mapping: Any) -> int:
    """How many entries of a lazily made map were made so far."""
    from services.persistent import _MISSING

    return sum(1 for entry in mapping._base.made if entry is not _MISSING)


# ---------------------------------------------------------------- the map


def test_a_map_made_lazily_reads_changes_and_lists_as_a_dict_does():
    rng = random.Random(56)
    for _round in range(40):
        start = {f"MSK-{n:03d}": rng.randint(0, 9) for n in rng.sample(range(1, 30), 12)}
        reference = dict(start)
        mapping, _made = lazily(start)
        versions = [(mapping, dict(reference))]
        for _step in range(25):
            key = f"MSK-{rng.randint(1, 30):03d}"
            if rng.random() < 0.4:
                mapping = mapping.remove(key)
                reference.pop(key, None)
            else:
                value = rng.randint(0, 9)
                mapping = mapping.set(key, value)
                reference[key] = value
            versions.append((mapping, dict(reference)))
        for version, expected in versions:  # every version stays as it was
            assert list(version) == list(expected)
            assert list(version.items()) == list(expected.items())
            assert len(version) == len(expected)
            assert version == expected and expected == version
            assert version == PMap(expected) and PMap(expected) == version
            for n in range(1, 31):
                key = f"MSK-{n:03d}"
                assert (key in version) == (key in expected)
                assert version.get(key, "absent") == expected.get(key, "absent")
        assert mapping != {**reference, "MSK-999": 1}


def test_a_restart_makes_only_the_subjects_a_command_reads():
    subjects = {f"MSK-{n:06d}": ("registered", n) for n in range(1, 1001)}
    mapping, made = lazily(subjects)
    assert len(mapping) == 1000 and "MSK-000500" in mapping and "MSK-001001" not in mapping
    assert made == []
    assert mapping["MSK-000500"] == ("registered", 500)
    assert mapping.get("MSK-000500") is mapping.get("MSK-000500")
    changed = mapping.set("MSK-000007", ("enrolled", 7)).remove("MSK-000008")
    assert made == [499]
    assert changed["MSK-000007"] == ("enrolled", 7) and "MSK-000008" not in changed
    assert mapping["MSK-000008"] == ("registered", 8)  # the map before the change keeps it
    assert made == [499, 7]


def test_a_map_whose_keys_repeat_is_not_made():
    with pytest.raises(ValueError, match="repeat"):
        PMap.lazily(["MSK-001", "MSK-001"], lambda _position: None)
    with pytest.raises(ValueError, match="sorted"):
        PMap.lazily(["MSK-002", "MSK-001"], lambda _position: None)
    with pytest.raises(ValueError, match="order"):
        PMap.lazily(["MSK-001", "MSK-002"], lambda _position: None, order=[1, 1])
    import services.enrollment.state  # noqa: F401  (the class a body may name)

    with pytest.raises(ValueError):
        from_plain(["pmc", "services.enrollment.state:Lot", ["L1", "L1"], None, ["L1", "L1"],
                    ["MSK-1", "MSK-1"], ["released", "released"], [["t"], ["t"]]])


def test_a_column_mostly_of_one_value_is_written_once_and_read_back_with_each_type():
    from services.enrollment.state import Consent, Subject

    signed = Consent("v3", datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    subjects = {f"MSK-{n:03d}": Subject(f"MSK-{n:03d}") for n in range(1, 41)}
    subjects["MSK-007"] = Subject("MSK-007", msln_ihc_percent=1.0, consents=(signed,), slot=1)
    subjects["MSK-008"] = Subject("MSK-008", msln_ihc_percent=1, slot=True)
    encoded = to_plain(PMap(subjects))
    _pmc, _name, _keys, order, subject_id, msln, consents, *_rest = encoded
    assert order is None  # registered in the order of their ids
    assert subject_id == {"key": True}
    assert msln == {"same": None, "at": [6, 7], "values": [1.0, 1]}
    assert consents["same"] == ["t"] and consents["at"] == [6]
    back = from_plain(orjson.loads(orjson.dumps(encoded)))
    assert back == subjects and list(back) == list(subjects)
    assert type(back["MSK-007"].msln_ihc_percent) is float
    assert type(back["MSK-008"].msln_ihc_percent) is int and back["MSK-008"].slot is True
    assert back["MSK-007"].slot == 1 and type(back["MSK-007"].slot) is int
    assert back["MSK-007"].consents == (signed,)
    latest_first = PMap(reversed(list(subjects.items())))
    encoded = to_plain(latest_first)
    assert encoded[2] == sorted(subjects) and encoded[3] == list(range(39, -1, -1))
    back = from_plain(orjson.loads(orjson.dumps(encoded)))
    assert list(back) == list(latest_first) and back == latest_first
    diverse = {f"L{n}": n for n in range(10)}
    assert to_plain(PMap(diverse))[0] == "pm"  # not records: by pairs, as before


# ---------------------------------------------------------------- a state through its snapshot


@pytest.fixture(scope="module")
def trial():
    return simulated_trial(9, 3)


def opened(state: Any, upstream_state: Any) -> Snapshot:
    """``state`` sealed into a snapshot by its writer and opened again, verified."""
    return open_snapshot(seal_snapshot(snapshot(state=state, upstream_state=upstream_state),
                                       WRITER), KEYRING, TOPIC)


@pytest.mark.parametrize("context", ["enrollment", "manufacturing", "dosing", "safety"])
def test_a_state_opened_lazily_and_changed_by_later_events_equals_the_fold_from_the_first(
    trial, context
):
    decider = trial.deciders[context]
    payloads = seen_by(trial, context)
    whole = decider.initial_state
    for payload in payloads:
        whole = decider.evolve(whole, payload)
    cut = len(payloads) // 2
    state = decider.initial_state
    for payload in payloads[:cut]:
        state = decider.evolve(state, payload)

    resumed = opened(state, decider.initial_state).state
    lazy_maps = [value for value in vars_of(resumed)
                 if isinstance(value, PMap) and base_of(value) is not None]
    assert lazy_maps, "the state's maps by columns are opened lazily"
    assert all(count_made(value) == 0 for value in lazy_maps), "nothing made at the open"
    for payload in payloads[cut:]:
        resumed = decider.evolve(resumed, payload)

    assert resumed == whole and whole == resumed
    assert plain(resumed) == plain(whole)  # types, order of every map and list included
    # and sealed again from the partly made state, it opens to the same state
    again = opened(resumed, decider.initial_state).state
    assert plain(again) == plain(whole)


def vars_of(state: Any) -> list[Any]:
    return [getattr(state, name) for name in state.__dataclass_fields__]


def test_entries_a_command_did_not_touch_are_sealed_again_without_being_made(trial):
    decider = trial.deciders["enrollment"]
    state = decider.initial_state
    for payload in seen_by(trial, "enrollment"):
        state = decider.evolve(state, payload)
    resumed = opened(state, decider.initial_state).state
    first = next(iter(resumed.subjects))
    resumed = decider.evolve(resumed, _withdrawn(first))

    encoded = to_plain(resumed.subjects)
    assert count_made(resumed.subjects) == 1  # the subject the event changed
    made_at_once = PMap(dict(resumed.subjects.items()))
    assert encoded == to_plain(made_at_once) and encoded[0] == "pmc"
    assert from_plain(orjson.loads(orjson.dumps(encoded))) == made_at_once
    assert resumed.subjects[first].withdrawn == "consent-withdrawn"


def _withdrawn(subject_id: str) -> Any:
    from events.enrollment import SubjectWithdrawn

    return SubjectWithdrawn(subject_id=subject_id, reason_code="consent-withdrawn")


# ---------------------------------------------------------------- the streams' heads


def test_a_writer_restarted_from_a_snapshot_chains_to_its_heads_and_makes_only_those_it_moves():
    resumed = open_snapshot(seal_snapshot(snapshot(), WRITER), KEYRING, TOPIC)
    expected = dict(snapshot().heads)
    heads = StreamHeads(resumed.heads)
    assert count_made(resumed.heads) == 0

    moved = heads.get("subject-MSK-001")
    assert moved is not None and (moved.seq, moved.hash) == expected["subject-MSK-001"]
    moved.seq, moved.hash = 2, "9" * 64  # an append moves the head in place
    assert heads.get("subject-MSK-001") is moved
    heads.setdefault("subject-MSK-003", StreamHead()).seq = 1
    assert heads.get("subject-MSK-404") is None
    assert count_made(resumed.heads) == 1

    now = {sid: (h.seq, h.hash) for sid, h in heads.items()}
    assert now == {**expected, "subject-MSK-001": (2, "9" * 64),
                   "subject-MSK-003": (1, heads.get("subject-MSK-003").hash)}
    assert list(now) == [*expected, "subject-MSK-003"]
    assert dict(heads.pairs()) == now
    # the snapshot's own heads did not move
    assert resumed.heads == expected and list(resumed.heads) == list(expected)


def test_a_body_whose_heads_do_not_line_up_is_refused_before_it_is_used():
    good = seal_snapshot(snapshot(), WRITER)
    document = orjson.loads(zlib.decompress(good.body))
    document["heads"][2].pop()
    body = zlib.compress(orjson.dumps(document))
    forged = resigned(type(good)(good.manifest, body), WRITER,
                      sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    with pytest.raises(SnapshotRefused, match="does not decode"):
        open_snapshot(forged, KEYRING, TOPIC)


def test_a_packed_column_keeps_the_sign_of_zero():
    # -0.0 == 0.0 in Python; a state opened from a snapshot must still hold what the fold held
    import math

    from services.snapshot_columns import column_reader, packed

    keys = [f"MSK-{n:04d}" for n in range(8)]
    column = [-0.0] * 5 + [0.0] * 3
    read = column_reader(packed(column, keys), keys, "msln_ihc_percent")
    assert [math.copysign(1.0, read(n)) for n in range(8)] == [-1.0] * 5 + [1.0] * 3
