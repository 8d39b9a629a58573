"""A writer's state folded as its open reads the topic (``services.runtime.Rebuilt``,
decision 86): from the followed topics' state or from a snapshot, every event read added in
order, and a fold begun again (the catch-up reading the topic anew from its start) forgets
what it had. No broker: the handler is stood in for by what the fold reads of it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from services.runtime import Rebuilt


def handler(fits: bool = True) -> Any:
    return SimpleNamespace(
        _upstream_state=("upstream",),
        _evolve=lambda state, payload: (*state, payload),
        _fits=lambda _snapshot: fits,
        context="enrollment",
    )


def event(payload: str, key: str | None = None) -> Any:
    idempotency = None if key is None else SimpleNamespace(key=key, request_sha256="d" * 64)
    envelope = SimpleNamespace(idempotency=idempotency,
                               actor=SimpleNamespace(user_id="demo-site_coordinator"))
    return SimpleNamespace(payload=payload, envelope=envelope)


SNAPSHOT = SimpleNamespace(state=("snapshot",), answered={("u", "k0"): ("x", [])}, covers=7)


def test_a_fold_from_the_start_adds_every_event_onto_the_followed_topics_state():
    rebuilt = Rebuilt(handler())
    assert rebuilt.begin(None)
    for n, payload in enumerate(["a", "b", "c"]):
        rebuilt.add(n, event(payload, key="k1" if payload == "b" else None))
    assert rebuilt.state == ("upstream", "a", "b", "c")
    assert rebuilt.snapshot is None
    [(key, (digest, appended))] = rebuilt.answered.items()
    assert key == ("demo-site_coordinator", "k1") and digest == "d" * 64
    assert [a.position for a in appended] == [1]


def test_a_fold_on_a_snapshot_starts_from_its_state_and_answers():
    rebuilt = Rebuilt(handler())
    assert rebuilt.begin(SNAPSHOT)
    rebuilt.add(8, event("d", key="k2"))
    assert rebuilt.state == ("snapshot", "d")
    assert rebuilt.snapshot is SNAPSHOT
    assert set(rebuilt.answered) == {("u", "k0"), ("demo-site_coordinator", "k2")}
    assert set(SNAPSHOT.answered) == {("u", "k0")}  # the snapshot's own answers untouched


def test_a_fold_begun_again_forgets_what_it_had():
    rebuilt = Rebuilt(handler())
    rebuilt.begin(SNAPSHOT)
    rebuilt.add(8, event("d", key="k2"))
    # the catch-up found the snapshot's key retired after it: it reads the topic anew
    rebuilt.begin(None)
    rebuilt.add(0, event("a"))
    assert (rebuilt.state, rebuilt.answered, rebuilt.snapshot) == (("upstream", "a"), {}, None)


def test_a_snapshot_that_follows_other_topics_is_refused_and_changes_nothing():
    rebuilt = Rebuilt(handler(fits=False))
    rebuilt.begin(None)
    rebuilt.add(0, event("a"))
    assert not rebuilt.begin(SNAPSHOT)
    assert (rebuilt.state, rebuilt.snapshot) == (("upstream", "a"), None)
