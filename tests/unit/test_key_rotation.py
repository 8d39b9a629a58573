"""Key rotation as an event (events/keys.py, events/reading.py): a writer retires its signing
key on its own topic with ``WriterKeyRotated``, signed with that key. Every reader then refuses
the retired key from the next record on, and the events before the rotation keep verifying
under it. NIST SP 800-57 Part 1, section 5.3: a key's cryptoperiod ends, what it protected
stays verifiable."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.enrollment import SubjectRegistered
from events.envelope import to_bytes
from events.keys import WriterKeyRotated
from events.reading import LogReader, Unreadable, Where, decode, keyring_after
from events.signing import Keyring, Signer
from infra.keys import init_keys, load_keyring, load_next_signer, promote_next_key, rotate_key
from services.decider import NewEvent

from .builders import at, history

TOPIC = "ns.enrollment.events"
OLD = Signer("enrollment-1", Ed25519PrivateKey.generate())
NEW = Signer("enrollment-2", Ed25519PrivateKey.generate())
DOSING = Signer("dosing-1", Ed25519PrivateKey.generate())
KEYRING = Keyring(keys=(OLD.public("enrollment"), NEW.public("enrollment"),
                        DOSING.public("dosing")))


def registered(n: int) -> SubjectRegistered:
    return SubjectRegistered(subject_id=f"MSK-{n:04d}", site_id="S1")


def rotation(writer="enrollment", retired="enrollment-1", next_key="enrollment-2"):
    return WriterKeyRotated(writer=writer, retired_key_id=retired, next_key_id=next_key)


def signed_log(*steps: tuple[SubjectRegistered | WriterKeyRotated, Signer]) -> list[bytes]:
    """Each payload sealed in order (subjects in their streams, rotations in the writer's key
    stream) and signed by the given key, as wire bytes."""
    new = [
        NewEvent("writer-key-enrollment" if isinstance(p, WriterKeyRotated)
                 else f"subject-{p.subject_id}", p, at(i))
        for i, (p, _signer) in enumerate(steps)
    ]
    return [to_bytes(signer.sign(r.envelope))
            for r, (_p, signer) in zip(history(new), steps, strict=True)]


def read(values: list[bytes]) -> LogReader:
    reader = LogReader(KEYRING)
    for offset, value in enumerate(values):
        reader.admit(Where(TOPIC, 0, offset), value)
    return reader


def test_events_before_a_rotation_keep_verifying_and_the_next_key_signs_after_it():
    reader = read(signed_log((registered(1), OLD), (rotation(), OLD), (registered(2), NEW)))

    assert not reader.halts
    assert [h.seq for h in reader.heads.values()] == [1, 1, 1]
    assert reader.keyring.retired == {"enrollment-1"}


def test_the_retired_key_signs_nothing_after_its_rotation():
    reader = read(signed_log((registered(1), OLD), (rotation(), OLD), (registered(2), OLD)))

    halt = reader.halts[(TOPIC, 0)]
    assert (halt.where.offset, halt.kind) == (2, "retired-key")


def test_before_any_rotation_both_listed_keys_of_the_writer_verify():
    reader = read(signed_log((registered(1), OLD), (registered(2), NEW)))

    assert not reader.halts


@pytest.mark.parametrize(
    ("payload", "signer"),
    [
        # signed with a key other than the one it retires
        (rotation(), NEW),
        # a writer retiring another writer's key
        (rotation(writer="dosing", retired="dosing-1", next_key="enrollment-2"), OLD),
        # a next key the keyring does not list for this writer
        (rotation(next_key="dosing-1"), OLD),
        (rotation(next_key="enrollment-9"), OLD),
    ],
    ids=["signed-by-another-key", "another-writer", "next-key-of-another-writer", "unknown"],
)
def test_a_rotation_that_is_not_the_writers_own_is_unreadable(payload, signer):
    value = signed_log((payload, signer))[0]

    with pytest.raises(Unreadable) as caught:
        decode(value, KEYRING, TOPIC)

    assert caught.value.kind == "bad-rotation"


def test_a_reader_that_resumes_mid_log_reads_with_the_keys_retired_before_its_offset():
    """The worker keeps (topic, key, rotation offset): what it reads at offset 2 after a restart
    must be judged as a reader from the start judges it."""
    values = signed_log((registered(1), OLD), (rotation(), OLD), (registered(2), OLD))
    after_rotation = keyring_after(KEYRING, decode(values[1], KEYRING, TOPIC))

    with pytest.raises(Unreadable) as caught:
        decode(values[2], after_rotation, TOPIC)
    assert caught.value.kind == "retired-key"
    assert decode(values[0], KEYRING, TOPIC).envelope.stream_seq == 1


def test_keys_rotate_adds_the_next_key_to_the_keyring_and_the_writer_promotes_it(tmp_path):
    keyring_path, folder = init_keys(tmp_path / "keys")
    before = load_keyring(str(keyring_path))

    key_id = rotate_key(keyring_path, folder, "enrollment")
    after = load_keyring(str(keyring_path))
    waiting = load_next_signer(str(folder), "enrollment", after)

    assert key_id == "enrollment-2" and waiting is not None and waiting.key_id == key_id
    assert set(before.keys) < set(after.keys)
    promote_next_key(str(folder), "enrollment")
    assert load_next_signer(str(folder), "enrollment", after) is None
    # Making the keys again keeps every key and its id: old events keep verifying
    again, _ = init_keys(tmp_path / "keys")
    assert load_keyring(str(again)).keys == after.keys
