"""Files that hold secrets (users' token hashes, Kafka passwords, writers' private keys) must
be open to their owner only: one check, one message, for each of them."""

from __future__ import annotations

import stat
from pathlib import Path


def open_to_others(path: Path) -> str | None:
    """Why ``path`` is not owner-only (``chmod 600`` advice included), or None when it is.
    Raises ``OSError`` when it cannot be looked at."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"{path} is open to group or others (mode {stat.filemode(mode)}); allow its "
                f"owner only: chmod 600 {path}")
    return None
