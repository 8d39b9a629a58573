"""A real Java runtime as some builds ship it: without a base class-data-sharing archive
(broker/cds.py). Made from the runtime the tests run: its launcher and its JVM library are
copied (the JVM finds its home, and so its base archive, from where they really lie), the
rest is linked, and the base archives are left out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

COPIED = (Path("bin/java"), Path("lib/server/libjvm.so"))


def runtime_without_base_archive(java: str, into: Path) -> str:
    """A runtime under ``into`` that is ``java``'s without its base archives; its ``java``."""
    home = Path(os.path.realpath(java)).parent.parent
    for copied in COPIED:
        if not (home / copied).is_file():
            raise AssertionError(f"{home} has no {copied}: not a runtime laid out as expected")

    def make(rel: Path) -> None:
        (into / rel).mkdir(parents=True, exist_ok=True)
        for entry in (home / rel).iterdir():
            path = rel / entry.name
            if path.parent == Path("lib/server") and entry.name.startswith("classes") \
                    and entry.name.endswith(".jsa"):
                continue
            if path in COPIED:
                shutil.copy2(entry, into / path)
            elif entry.is_dir() and any(c.is_relative_to(path) for c in COPIED):
                make(path)
            else:
                (into / path).symlink_to(entry)

    make(Path("."))
    return str(into / "bin" / "java")
