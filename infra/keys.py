"""Writers' keys on disk: the keyring every reader checks signatures against, and each
writer's private key. The deployment supplies both (``TRIALOPS_KEYRING``: a JSON keyring;
``TRIALOPS_WRITER_KEYS``: a folder with one ``<context>.pem`` per writer, readable by the
services only); ``trialops keys init`` makes a fresh set for a demo or a test run."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from events.signing import Keyring, Signer
from events.topics import WRITERS

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
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeysError(f"{path}: readable by others; chmod 600 it")
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise KeysError(f"writer key {path}: {exc.strerror}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeysError(f"writer key {path}: not an Ed25519 key")
    for key in keyring.keys:
        signer = Signer(key.key_id, private)
        if key.context == context and signer.public(context) == key:
            return signer
    raise KeysError(f"writer key {path}: its public key is not in the keyring for {context}")


def init_keys(folder: Path) -> tuple[Path, Path]:
    """A new key per writer and one for the auditor's checkpoints under ``folder`` (kept if
    already there) and the keyring that lists them; returns (keyring file, private keys
    folder)."""
    private_dir = folder / "writers"
    private_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(private_dir, 0o700)
    public = []
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
        public.append(Signer(f"{context}-1", private).public(context))
    keyring = folder / "keyring.json"
    document = Keyring(keys=tuple(public)).model_dump(mode="json")
    keyring.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return keyring, private_dir
