"""Writers' keys on disk: the keyring every reader checks signatures against, and each
writer's private key. The deployment supplies both (``TRIALOPS_KEYRING``: a JSON keyring;
``TRIALOPS_WRITER_KEYS``: a folder with one ``<context>.pem`` per writer, readable by the
services only); ``trialops keys init`` makes a fresh set for a demo or a test run."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from events.signing import Keyring, Signer
from events.topics import WRITERS
from infra.secrets_files import open_to_others

CHECKPOINT_SIGNER = "auditor"
"""The key that signs checkpoints (audit/checkpoint.py): the auditor's, not a writer's."""


class KeysError(ValueError):
    """The keyring or a writer's key is missing or unusable; the message says which and how."""


def load_keyring(path: str | None) -> Keyring:
    if not path:
        raise KeysError(
            "no keyring: set TRIALOPS_KEYRING to the writers' public keys "
            "('trialops keys init DIR' makes a set for a demo)"
        )
    try:
        return Keyring.model_validate(orjson.loads(Path(path).read_bytes()))
    except OSError as exc:
        raise KeysError(f"keyring {path}: {exc.strerror}") from None
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise KeysError(f"keyring {path}: {str(exc).splitlines()[0]}") from None


def load_signer(folder: str | None, context: str, keyring: Keyring) -> Signer:
    """The writer's private key for ``context``; it must be one the keyring lists for it."""
    if not folder:
        raise KeysError(
            "no writer keys: set TRIALOPS_WRITER_KEYS to the folder of the writers' private "
            "keys ('trialops keys init DIR' makes a set for a demo)"
        )
    path = Path(folder) / f"{context}.pem"
    try:
        signer = _signer_in(keyring, context, _read_private(path))
    except OSError as exc:
        raise KeysError(f"writer key {path}: {exc.strerror}") from None
    if signer is None:
        raise KeysError(f"writer key {path}: its public key is not in the keyring for {context}")
    return signer


def _read_private(path: Path) -> Ed25519PrivateKey:
    if exposed := open_to_others(path):
        raise KeysError(f"writer key {exposed}")
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise KeysError(f"writer key {path}: not an Ed25519 key")
    return private


def _signer_in(keyring: Keyring, context: str, private: Ed25519PrivateKey) -> Signer | None:
    for key in keyring.keys:
        signer = Signer(key.key_id, private)
        if key.context == context and signer.public(context) == key:
            return signer
    return None


def next_key_path(folder: str | Path, context: str) -> Path:
    """Where ``trialops keys rotate`` leaves a writer's next key until the writer rotates."""
    return Path(folder) / f"{context}.next.pem"


def load_next_signer(folder: str | None, context: str, keyring: Keyring) -> Signer | None:
    """The writer's next key (``<context>.next.pem``) when one waits to be rotated to; it must
    be in the keyring for ``context``."""
    if not folder or not next_key_path(folder, context).exists():
        return None
    path = next_key_path(folder, context)
    try:
        signer = _signer_in(keyring, context, _read_private(path))
    except OSError as exc:
        raise KeysError(f"next writer key {path}: {exc.strerror}") from None
    if signer is None:
        raise KeysError(f"next writer key {path}: its public key is not in the keyring for "
                        f"{context}; add it there first ('trialops keys rotate' does both)")
    return signer


def promote_next_key(folder: str, context: str) -> None:
    """The next key becomes the writer's key; the retired private key is overwritten, so it
    can sign nothing more (its public half stays in the keyring for the old events)."""
    os.replace(next_key_path(folder, context), Path(folder) / f"{context}.pem")


def rotate_key(keyring_path: Path, folder: Path, context: str) -> str:
    """Make ``context``'s next key (``<context>.next.pem``, mode 600) and add its public key to
    the keyring file; return its key id. The writer rotates to it when it next opens its topic,
    appending ``WriterKeyRotated`` (events/keys.py)."""
    keyring = load_keyring(str(keyring_path))
    path = next_key_path(folder, context)
    if path.exists():
        raise KeysError(f"{path} already waits to be rotated to: restart the {context} writer")
    taken = {k.key_id for k in keyring.keys}
    number = 1 + sum(1 for k in keyring.keys if k.context == context)
    while f"{context}-{number}" in taken:
        number += 1
    private = Ed25519PrivateKey.generate()
    signer = Signer(f"{context}-{number}", private)
    document = Keyring(keys=(*keyring.keys, signer.public(context))).model_dump(mode="json")
    partial = keyring_path.with_name(keyring_path.name + ".partial")
    partial.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    partial.replace(keyring_path)
    return signer.key_id


def init_keys(folder: Path) -> tuple[Path, Path]:
    """A new key per writer and one for the auditor's checkpoints under ``folder`` (kept if
    already there) and the keyring that lists them; returns (keyring file, private keys
    folder)."""
    private_dir = folder / "writers"
    private_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(private_dir, 0o700)
    keyring = folder / "keyring.json"
    # Keys already listed stay listed (with their ids): rotated and retired keys still verify
    # the events they signed.
    public = list(load_keyring(str(keyring)).keys) if keyring.exists() else []
    for context in (*WRITERS, CHECKPOINT_SIGNER):
        path = private_dir / f"{context}.pem"
        if path.exists():
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        else:
            private = Ed25519PrivateKey.generate()
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        assert isinstance(private, Ed25519PrivateKey)
        if _signer_in(Keyring(keys=tuple(public)), context, private) is None:
            taken = {k.key_id for k in public}
            number = 1
            while f"{context}-{number}" in taken:
                number += 1
            public.append(Signer(f"{context}-{number}", private).public(context))
    document = Keyring(keys=tuple(public)).model_dump(mode="json")
    keyring.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return keyring, private_dir
