"""The keys the benchmarks sign their generated events with (events/signing.py)."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from events.signing import Signer
from infra.keys import init_keys, load_keyring, load_signer


@functools.cache
def enrollment_signer() -> Signer:
    """The enrollment writer's key the generated events are signed with; a benchmark run
    without keys of its own makes a set (the worker it starts finds them in the environment)."""
    if not os.environ.get("TRIALOPS_KEYRING"):
        keyring_file, writers = init_keys(Path(tempfile.mkdtemp(prefix="trialops-bench-keys-")))
        os.environ["TRIALOPS_KEYRING"] = str(keyring_file)
        os.environ["TRIALOPS_WRITER_KEYS"] = str(writers)
    keyring = load_keyring(os.environ["TRIALOPS_KEYRING"])
    return load_signer(os.environ.get("TRIALOPS_WRITER_KEYS"), "enrollment", keyring)
