"""Writers' snapshots (decision 42): a state restored from a snapshot and folded on equals the
fold of the whole log; a snapshot is used only when its writer sealed it, by this code, over
the body it carries, and the log still holds the last event it names.

Sources: DESIGN.md section 4 (a writer keeps its streams' state by folding its own topic,
"later from snapshots"), issue 12 ("state plus the offsets it covers, written by the service
itself and verified against the log's hashes"), decision 20 (writers sign with their own
Ed25519 key) and decision 34 (a rotation on the log retires a key from its position on).
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.simulate import Simulation, plan
from events.enrollment import SubjectRegistered
from events.envelope import GENESIS_HASH, Envelope, to_bytes
from events.keys import WriterKeyRotated
from events.reading import Where
from events.signing import Keyring, Signer
from events.topics import SHARED
from services.eventstore import Appended
from services.persistent import PMap, PQueue, PSet
from services.snapshots import (
    Anchor,
    Sealed,
    Snapshot,
    SnapshotRefused,
    Upstream,
    anchor_problem,
    find_anchor,
    from_plain,
    open_snapshot,
    read_manifest,
    seal_snapshot,
    to_plain,
)

from .builders import event_id, sealed
from .in_process import URL, InProcess
from .test_simulate_plan import DesignView

TOPIC = "ns.enrollment.events"
WRITER = Signer("enrollment-1", Ed25519PrivateKey.generate())
NEXT = Signer("enrollment-2", Ed25519PrivateKey.generate())
DOSING = Signer("dosing-1", Ed25519PrivateKey.generate())
KEYRING = Keyring(keys=(WRITER.public("enrollment"), NEXT.public("enrollment"),
                        DOSING.public("dosing")))


# ---------------------------------------------------------------- a whole trial, folded two ways


def simulated_trial(patients: int, seed: int) -> InProcess:
    """A simulated phase I trial through the command API, in process (the real deciders)."""
    api = InProcess()
    Simulation(URL, URL, trial=api.trial, say=lambda _line: None, transport=api,
               view=DesignView(api)).run(plan(patients, seed, api.trial))
    return api


def seen_by(api: InProcess, context: str) -> list[Any]:
    """The payloads ``context``'s writer evolves, in order: its own and those it follows."""
    follows = api.specs[context].upstream
    return [
        payload
        for (source, *_rest), payload in zip(api.appended, api.payloads, strict=True)
        if (source == context or source in follows) and payload.context != SHARED
    ]


def plain(value: Any) -> Any:
    """``value`` encoded, with each set's items in one order (a set has none of its own): equal
    when the types, the contents and the order of every map and list are."""
    return _sorted_sets(to_plain(value))


def _sorted_sets(data: Any) -> Any:
    if not isinstance(data, list):
        return data
    items = [_sorted_sets(item) for item in data[1:]]
    if data[0] in ("fs", "s", "ps"):
        items.sort(key=orjson.dumps)
    return [data[0], *items]


def through_json(state: Any) -> Any:
    """``state`` written into a snapshot's body and read back."""
    return from_plain(orjson.loads(orjson.dumps(to_plain(state))))


@pytest.fixture(scope="module")
def trial() -> InProcess:
    return simulated_trial(9, 3)


@pytest.mark.parametrize("context", ["enrollment", "manufacturing", "dosing", "safety"])
def test_a_writer_resumed_from_a_snapshot_folds_the_same_state_as_from_the_first_event(
    trial, context
):
    decider = trial.deciders[context]
    payloads = seen_by(trial, context)
    assert len(payloads) > 50, "the simulated trial is long enough to cut anywhere"
    whole = decider.initial_state
    for payload in payloads:
        whole = decider.evolve(whole, payload)
    assert whole == trial.states[context]
    for cut in (1, len(payloads) // 3, 2 * len(payloads) // 3, len(payloads) - 1):
        state = decider.initial_state
        for payload in payloads[:cut]:
            state = decider.evolve(state, payload)
        resumed = through_json(state)
        assert resumed == state
        for payload in payloads[cut:]:
            resumed = decider.evolve(resumed, payload)
        assert resumed == whole
        # same types, same order of every map and list, not only equal contents
        assert plain(resumed) == plain(whole)


def test_every_context_of_a_trial_round_trips_with_its_order_and_types(trial):
    for context, state in trial.states.items():
        assert plain(through_json(state)) == plain(state), context


def test_the_values_a_state_may_hold_come_back_as_they_were():
    values = {
        "subjects": PMap({"MSK-002": 1, "MSK-001": 2}),
        "waiting": PQueue(["MSK-009", "MSK-003"]),
        "infused": PSet({"LOT-1"}),
        "reviews": frozenset({"AE-1"}),
        ("user", "key"): ("sha", [1, 2.5, float("inf"), None, True]),
        "at": datetime(2026, 11, 2, 10, 0, tzinfo=UTC),
        "on": date(2026, 11, 2),
    }
    back = through_json(values)
    assert back == values
    assert list(back["subjects"]) == ["MSK-002", "MSK-001"]
    assert type(back["subjects"]) is PMap and type(back["waiting"]) is PQueue
    assert type(back["infused"]) is PSet and type(back["reviews"]) is frozenset
    assert back[("user", "key")][1][2] == float("inf")


@pytest.mark.parametrize("data", [
    ["c", "os:system", "echo owned"],
    ["c", "subprocess:Popen", ["l", "true"]],
    ["c", "builtins:eval", "1"],
    ["c", "services.persistent:put", ["d"], "k", 1],
    ["c", "events.safety:ReportDue", "7-day", ["da", "2026-11-02"], ["da", "2026-11-09"]],
    ["m", "services.enrollment.state:Subject", {"subject_id": "MSK-001"}],
    ["pickle", "gASVAAAAAAAAAAA="],
])
def test_a_body_cannot_name_anything_but_the_states_own_values(data):
    with pytest.raises(ValueError):
        from_plain(data)


def test_maps_of_one_kind_of_record_go_by_columns_and_others_by_pairs():
    from services.enrollment.state import Cohort, Subject

    subjects = PMap({"MSK-002": Subject("MSK-002", consents=()),
                     "MSK-001": Subject("MSK-001", cohort_id="DL1-IP", slot=2)})
    mixed = PMap({"MSK-002": Subject("MSK-002"), "DL1-IP": Cohort("DL1-IP", "DL1", 3)})
    keyed_by_pairs = PMap({("user", "key"): Subject("MSK-003")})
    assert to_plain(subjects)[0] == "pmc"
    for value in (subjects, mixed, keyed_by_pairs, PMap()):
        back = through_json(value)
        assert back == value and list(back) == list(value) and type(back) is PMap


def test_a_body_whose_columns_do_not_fit_the_record_is_refused():
    import services.enrollment.state  # noqa: F401  (the class a body may name)

    with pytest.raises(ValueError):
        from_plain(["pmc", "services.enrollment.state:Subject", ["MSK-001"], ["MSK-001"]])
    with pytest.raises(ValueError):
        from_plain(["pmc", "os:system", ["x"], ["echo owned"]])


def test_a_value_the_encoding_does_not_know_is_not_written():
    with pytest.raises(TypeError):
        to_plain({"key": object()})


# ---------------------------------------------------------------- sealing and opening


def signed(envelope: Envelope, signer: Signer = WRITER) -> Envelope:
    return signer.sign(envelope)


def registered(n: int, signer: Signer = WRITER) -> Envelope:
    return signed(sealed(SubjectRegistered(subject_id=f"MSK-{n:03d}", site_id="MSK"),
                         event_id=event_id(n), stream_id=f"subject-MSK-{n:03d}"), signer)


LAST = registered(2)
ANSWER = Appended(LAST, Where(TOPIC, 0, 4))


def snapshot(**changes: Any) -> Snapshot:
    fields: dict[str, Any] = {
        "topic": TOPIC,
        "trial_id": "NCT06623396",
        "covers": 6,
        "anchor": Anchor(4, LAST.stream_id, 1, LAST.hash),
        "heads": {"subject-MSK-001": (1, registered(1).hash), LAST.stream_id: (1, LAST.hash)},
        "retired": frozenset(),
        "state": PMap({"MSK-001": ("registered", datetime(2026, 11, 2, tzinfo=UTC))}),
        "upstream_state": PMap(),
        "answered": {("dr-ortega", "key-1"): ("a" * 64, [ANSWER])},
        "upstream": Upstream(positions=(("ns.dosing.events", 0, 12),),
                             heads={("ns.dosing.events", "subject-MSK-001"): (2, "b" * 64)},
                             retired=frozenset({"dosing-0"})),
        "events": 2,
        "key_id": WRITER.key_id,
    }
    return Snapshot(**{**fields, **changes})


def test_a_snapshot_sealed_by_its_writer_opens_as_it_was_written():
    original = snapshot()
    opened = open_snapshot(seal_snapshot(original, WRITER), KEYRING, TOPIC)
    assert opened == original
    assert opened.answered[("dr-ortega", "key-1")][1][0].envelope == LAST


def resigned(sealed_: Sealed, signer: Signer = WRITER, **changes: Any) -> Sealed:
    """The manifest changed and signed again (what only a holder of ``signer`` could do)."""
    import base64

    from services.snapshots import _canonical

    manifest = {**read_manifest(sealed_.manifest), **changes}
    manifest["signature"] = base64.b64encode(
        signer.private_key.sign(_canonical(manifest))).decode()
    return Sealed(orjson.dumps(manifest), sealed_.body)


def test_a_snapshot_with_a_changed_body_is_refused():
    good = seal_snapshot(snapshot(), WRITER)
    body = bytearray(good.body)
    body[len(body) // 2] ^= 0x01
    with pytest.raises(SnapshotRefused, match="body is not the one"):
        open_snapshot(Sealed(good.manifest, bytes(body)), KEYRING, TOPIC)


def test_a_snapshot_whose_manifest_was_changed_is_refused():
    good = seal_snapshot(snapshot(), WRITER)
    manifest = read_manifest(good.manifest)
    forged = Sealed(orjson.dumps({**manifest, "covers": 60}), good.body)
    with pytest.raises(SnapshotRefused, match="signature does not verify"):
        open_snapshot(forged, KEYRING, TOPIC)


def test_a_snapshot_sealed_by_another_writers_key_is_refused():
    with pytest.raises(SnapshotRefused, match="of the dosing writer"):
        open_snapshot(seal_snapshot(snapshot(), DOSING), KEYRING, TOPIC)


def test_a_snapshot_sealed_by_a_key_the_keyring_lacks_is_refused():
    stranger = Signer("enrollment-9", Ed25519PrivateKey.generate())
    with pytest.raises(SnapshotRefused, match="not in the keyring"):
        open_snapshot(seal_snapshot(snapshot(), stranger), KEYRING, TOPIC)


def test_a_snapshot_of_another_topic_is_refused():
    with pytest.raises(SnapshotRefused, match=r"not of ns2\.enrollment\.events"):
        open_snapshot(seal_snapshot(snapshot(), WRITER), KEYRING, "ns2.enrollment.events")


@pytest.mark.parametrize("changes", [{"code": "0" * 64}, {"format": 0}])
def test_a_snapshot_written_by_another_version_is_ignored(changes):
    older = resigned(seal_snapshot(snapshot(), WRITER), **changes)
    with pytest.raises(SnapshotRefused, match=r"version of the code|format"):
        open_snapshot(older, KEYRING, TOPIC)


def test_a_snapshot_sealed_by_a_key_it_says_was_retired_is_refused():
    sealed_ = seal_snapshot(snapshot(retired=frozenset({WRITER.key_id})), WRITER)
    with pytest.raises(SnapshotRefused, match="retired"):
        open_snapshot(sealed_, KEYRING, TOPIC)


# ---------------------------------------------------------------- the anchor in the log


def test_the_record_at_the_snapshots_last_offset_anchors_it():
    assert anchor_problem(snapshot(), to_bytes(LAST), KEYRING) is None


def test_another_record_at_that_offset_means_the_log_is_not_the_one_folded():
    problem = anchor_problem(snapshot(), to_bytes(registered(3)), KEYRING)
    assert problem is not None and "not subject-MSK-002 seq 1" in problem


def test_a_record_that_is_no_event_at_that_offset_is_refused():
    problem = anchor_problem(snapshot(), b"not an envelope", KEYRING)
    assert problem is not None and "not an event of the topic" in problem


def test_heads_that_do_not_end_at_the_last_event_are_refused():
    problem = anchor_problem(
        snapshot(heads={LAST.stream_id: (2, "c" * 64)}), to_bytes(LAST), KEYRING
    )
    assert problem is not None and "heads" in problem


def test_an_anchor_at_or_past_the_covered_end_is_refused():
    problem = anchor_problem(snapshot(covers=4), to_bytes(LAST), KEYRING)
    assert problem is not None and "not below 4" in problem


def test_a_snapshot_sealed_by_a_key_that_did_not_sign_its_last_event_is_refused():
    problem = anchor_problem(snapshot(key_id=NEXT.key_id), to_bytes(LAST), KEYRING)
    assert problem is not None and "signed with enrollment-1" in problem


def rotation() -> Envelope:
    payload = WriterKeyRotated(writer="enrollment", retired_key_id=WRITER.key_id,
                               next_key_id=NEXT.key_id)
    return signed(sealed(payload, event_id=event_id(9), stream_id="writer-key-enrollment"))


def test_after_a_rotation_the_next_key_seals_a_snapshot_that_ends_at_it():
    last = rotation()
    after = snapshot(anchor=Anchor(4, last.stream_id, 1, last.hash),
                     heads={last.stream_id: (1, last.hash)},
                     retired=frozenset({WRITER.key_id}), key_id=NEXT.key_id)
    assert anchor_problem(after, to_bytes(last), KEYRING) is None


def test_a_snapshot_ending_at_a_rotation_must_have_retired_its_key():
    last = rotation()
    forged = snapshot(anchor=Anchor(4, last.stream_id, 1, last.hash),
                      heads={last.stream_id: (1, last.hash)}, key_id=WRITER.key_id)
    problem = anchor_problem(forged, to_bytes(last), KEYRING)
    assert problem is not None and "keeps active" in problem


def test_the_anchor_is_the_last_record_at_the_head_of_its_stream():
    first, second = registered(1), registered(2)
    copy = to_bytes(first)  # a producer's retry: a copy of an event already applied
    heads = {first.stream_id: (1, first.hash), second.stream_id: (1, second.hash)}
    records = [(0, to_bytes(first)), (2, to_bytes(second)), (4, copy), (5, b"junk")]
    assert find_anchor(records, heads, KEYRING, TOPIC) == Anchor(
        4, first.stream_id, 1, first.hash
    )
    moved_on = {**heads, first.stream_id: (2, "d" * 64)}
    assert find_anchor(records, moved_on, KEYRING, TOPIC) == Anchor(
        2, second.stream_id, 1, second.hash
    )
    assert find_anchor([(5, b"junk")], heads, KEYRING, TOPIC) is None


def test_a_genesis_snapshot_has_nothing_to_anchor():
    assert find_anchor([], {}, KEYRING, TOPIC) is None
    assert GENESIS_HASH not in {h for _s, h in snapshot().heads.values()}


def test_random_cuts_of_a_random_trial_fold_to_the_same_state():
    api = simulated_trial(6, 104)
    rng = random.Random(12)
    for context in ("enrollment", "safety"):
        decider, payloads = api.deciders[context], seen_by(api, context)
        cuts = sorted(rng.sample(range(len(payloads)), 3))
        state = decider.initial_state
        for n, payload in enumerate(payloads):
            if n in cuts:
                state = through_json(state)
            state = decider.evolve(state, payload)
        assert plain(state) == plain(api.states[context])
        assert replace(state) == api.states[context]


def test_a_catch_up_from_a_snapshot_chains_each_stream_to_the_snapshots_head():
    from events.reading import Head, LogReader
    from services.stream_heads import ResumedHeads

    first = registered(1)
    after = signed(sealed(SubjectRegistered(subject_id="MSK-001", site_id="MSK"),
                          event_id=event_id(7), stream_id=first.stream_id, stream_seq=2,
                          prev_hash=first.hash))
    gap = signed(sealed(SubjectRegistered(subject_id="MSK-005", site_id="MSK"),
                        event_id=event_id(8), stream_id="subject-MSK-005", stream_seq=3,
                        prev_hash="e" * 64))
    heads = ResumedHeads(TOPIC, {first.stream_id: (1, first.hash),
                                  "subject-MSK-005": (1, "f" * 64)})
    reader = LogReader(KEYRING, heads=heads)
    # the event after the snapshot's head is applied; a copy of the head is skipped
    assert reader.admit(Where(TOPIC, 0, 10), to_bytes(first)) is None and reader.copies == 1
    assert reader.admit(Where(TOPIC, 0, 11), to_bytes(after)) is not None
    assert dict(reader.heads) == {(TOPIC, first.stream_id): Head(2, after.hash)}
    # an event that does not follow the snapshot's head halts the reader
    assert reader.admit(Where(TOPIC, 0, 12), to_bytes(gap)) is None
    assert reader.halts[(TOPIC, 0)].kind == "broken-chain"
