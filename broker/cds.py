"""A class-data-sharing archive for the launcher's broker nodes (decision 81).

A Kafka node's JVM spends much of its start-up loading and verifying the same classes every
time. The JVM can dump the classes a run loaded into an archive when it exits
(``-XX:ArchiveClassesAtExit``, JDK 13 and later) and map them from it in the next runs
(``-XX:SharedArchiveFile``). A node started without an archive writes a draft when it stops;
``adopt`` then checks the draft with a JVM of its own and moves it into place, so a node only
ever maps an archive that a JVM accepted. That check matters: a truncated archive makes the
JVM die of SIGBUS (seen), not fall back.

One archive per home, Java runtime and class path: another runtime, or other jars, get
another archive. A node started while no archive exists pays about 0.6 s of processor time
for recording and about 3 s more at its stop (the dump and the check), once per home.

Recording needs the runtime's own base archive, which some builds do not ship; asked to
record without one, a JVM does not start at all ("DynamicDumpSharedSpaces is unsupported when
base CDS archive is not loaded": seen). So before a node records, ``recordable`` asks a JVM
started as the node is, once per archive, and the node records only where that JVM could."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path

_OWN_CHOICE = ("-Xshare", "SharedArchiveFile", "ArchiveClassesAtExit")
"""JVM options by which the operator chose class sharing for themselves."""


def archive_path(home: Path, java: str, classpath: str) -> Path:
    """Where the archive of ``java`` with ``classpath`` lives under the launcher's ``home``."""
    real = os.path.realpath(java)
    stat = os.stat(real)
    key = f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}\0{classpath}".encode()
    return home / "cds" / f"broker-{hashlib.sha256(key).hexdigest()[:16]}.jsa"


def node_options(archive: Path, jvm_options: list[str]) -> tuple[list[str], Path | None]:
    """The options a node starts with, and the draft it writes at its stop (None: it maps
    ``archive``, or the operator's ``jvm_options`` decide about class sharing)."""
    if any(choice in option for option in jvm_options for choice in _OWN_CHOICE):
        return [], None
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}"], None
    archive.parent.mkdir(parents=True, exist_ok=True)
    draft = archive.with_name(f"{archive.stem}.{uuid.uuid4().hex[:12]}.draft")
    return [f"-XX:ArchiveClassesAtExit={draft}"], draft


def recordable(archive: Path, node_jvm: list[str]) -> bool:
    """Whether a node whose JVM is ``node_jvm`` (up to its main class) can record ``archive``:
    a JVM started so, asked to record at its exit, must run ``-version``. The answer is kept
    beside the archive (one per runtime and class path). A JVM that fails to start even
    without recording says nothing about recording: nothing is kept, and the node, which would
    fail the same way, is left to say why."""
    verdict = archive.with_name(f"{archive.stem}.recordable")
    try:
        return verdict.read_text().startswith("yes")
    except FileNotFoundError:
        pass
    archive.parent.mkdir(parents=True, exist_ok=True)
    probe = archive.with_name(f"{archive.stem}.{uuid.uuid4().hex[:12]}.probe")
    try:
        recorded = _runs([node_jvm[0], f"-XX:ArchiveClassesAtExit={probe}", *node_jvm[1:]],
                         archive)
        if recorded:
            answer = "yes"
        elif recorded is False and _runs(node_jvm, archive):
            answer = "no: this Java runtime cannot record a class archive"
        else:
            return False  # no answer: a JVM that did not run, or did not finish in time
    finally:
        probe.unlink(missing_ok=True)
    written = verdict.with_name(f"{verdict.name}.{uuid.uuid4().hex[:12]}")
    written.write_text(answer + "\n")
    os.replace(written, verdict)
    return answer == "yes"


PROBE_SECONDS = 60.0
"""How long ``recordable``'s JVM may take; one that takes longer (a busy machine) answers
nothing, and the question is asked again at the next node's start."""


def _runs(jvm: list[str], archive: Path) -> bool | None:
    """Whether ``jvm`` runs ``-version``; None when that could not be told (it could not be
    started, or did not finish within ``PROBE_SECONDS``)."""
    try:
        return subprocess.run(
            [*jvm, "-version"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=archive.parent, timeout=PROBE_SECONDS,
        ).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None


def adopt(draft: Path, archive: Path, java: str, classpath: str) -> bool:
    """Move ``draft``, written by a node that has exited, into place as ``archive`` if a JVM
    maps it without complaint; delete it otherwise. True when it was adopted."""
    try:
        if not draft.exists() or archive.exists():
            return False
        try:
            check = subprocess.run(
                # -Xshare:on: exit with an error rather than run without the archive; a JVM
                # that dies on a bad one leaves no crash report behind.
                [java, "-Xshare:on", f"-XX:SharedArchiveFile={draft}",
                 "-XX:+SuppressFatalErrorMessage", "-cp", classpath, "-version"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=draft.parent, timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if check.returncode != 0:
            return False
        os.replace(draft, archive)
        return True
    finally:
        draft.unlink(missing_ok=True)
