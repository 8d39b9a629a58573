"""The broker nodes' class-data-sharing archive (broker/cds.py, decision 81): which options a
node starts with, and that only an archive a JVM accepts is ever put in place. Runs the real
``java`` (the launcher needs it anyway), no broker."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from broker import cds
from broker.cds import adopt, archive_path, node_options, recordable
from broker.jars import find_java
from tests.java_runtimes import runtime_without_base_archive


@pytest.fixture
def java() -> str:
    return find_java()


def draft_of(java: str, classpath: str, path: Path) -> Path:
    """A real archive, as a JVM dumps it at its exit (``-version`` loads few classes: quick)."""
    subprocess.run([java, f"-XX:ArchiveClassesAtExit={path}", "-cp", classpath, "-version"],
                   check=True, capture_output=True, timeout=60)
    assert path.stat().st_size > 0
    return path


def test_a_node_records_a_draft_until_there_is_an_archive_then_maps_it(tmp_path: Path, java):
    archive = archive_path(tmp_path, java, str(tmp_path / "libs" / "*"))
    options, draft = node_options(archive, ["-XX:TieredStopAtLevel=1"])
    assert draft is not None and draft.parent == archive.parent and draft != archive
    assert options == [f"-XX:ArchiveClassesAtExit={draft}"]
    _options, second = node_options(archive, [])
    assert second != draft  # each node of a cluster writes its own draft

    archive.write_bytes(b"")
    assert node_options(archive, []) == ([f"-XX:SharedArchiveFile={archive}"], None)


@pytest.mark.parametrize("choice", ["-Xshare:off", "-XX:SharedArchiveFile=/elsewhere.jsa"])
def test_the_operators_own_choice_about_sharing_is_left_alone(tmp_path: Path, java, choice):
    archive = archive_path(tmp_path, java, "libs/*")
    assert node_options(archive, ["-Xss1m", choice]) == ([], None)
    archive.parent.mkdir()
    archive.write_bytes(b"")
    assert node_options(archive, [choice]) == ([], None)


def test_other_jars_or_another_runtime_get_another_archive(tmp_path: Path, java):
    here = archive_path(tmp_path, java, "/a/libs/*")
    assert archive_path(tmp_path, java, "/a/libs/*") == here
    assert archive_path(tmp_path, java, "/b/libs/*") != here
    other_java = tmp_path / "java"
    other_java.write_bytes(Path(java).resolve().read_bytes()[:64])
    assert archive_path(tmp_path, str(other_java), "/a/libs/*") != here


def test_a_draft_the_jvm_accepts_is_adopted(tmp_path: Path, java):
    classpath = str(tmp_path)
    archive = tmp_path / "broker.jsa"
    draft = draft_of(java, classpath, tmp_path / "broker.1.draft")
    written = draft.read_bytes()

    assert adopt(draft, archive, java, classpath) is True
    assert archive.read_bytes() == written and not draft.exists()
    mapped = subprocess.run(
        [java, "-Xshare:on", f"-XX:SharedArchiveFile={archive}", "-cp", classpath, "-version"],
        capture_output=True, timeout=60,
    )
    assert mapped.returncode == 0, mapped.stderr


def test_a_truncated_draft_is_deleted_not_adopted_and_leaves_no_crash_report(
    tmp_path: Path, java
):
    # A JVM dies of SIGBUS on a truncated archive rather than running without it: a node must
    # never be given one.
    classpath = str(tmp_path)
    draft = draft_of(java, classpath, tmp_path / "broker.1.draft")
    draft.write_bytes(draft.read_bytes()[: draft.stat().st_size // 2])
    archive = tmp_path / "broker.jsa"

    assert adopt(draft, archive, java, classpath) is False
    assert not archive.exists() and not draft.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_second_draft_leaves_the_adopted_archive_as_it_is(tmp_path: Path, java):
    classpath = str(tmp_path)
    archive = tmp_path / "broker.jsa"
    assert adopt(draft_of(java, classpath, tmp_path / "a.draft"), archive, java, classpath)
    first = archive.read_bytes()
    late = draft_of(java, classpath, tmp_path / "b.draft")
    assert adopt(late, archive, java, classpath) is False
    assert archive.read_bytes() == first and not late.exists()


def test_a_node_that_wrote_no_draft_leaves_nothing_to_adopt(tmp_path: Path, java):
    # killed (SIGKILL), a node dumps nothing
    archive = tmp_path / "broker.jsa"
    assert adopt(tmp_path / "never.draft", archive, java, str(tmp_path)) is False
    assert not archive.exists()


def test_a_runtime_without_a_base_archive_is_never_asked_to_record(tmp_path: Path, java):
    # Such a JVM, asked to record, does not start at all: a node given the option would not.
    other = runtime_without_base_archive(java, tmp_path / "jdk")
    asked = subprocess.run([other, f"-XX:ArchiveClassesAtExit={tmp_path / 'a.jsa'}", "-version"],
                           capture_output=True, timeout=60)
    assert asked.returncode != 0, asked.stderr
    assert subprocess.run([other, "-version"], capture_output=True, timeout=60).returncode == 0

    archive = archive_path(tmp_path / "home", other, "libs/*")
    assert recordable(archive, [other, "-Xmx64m"]) is False
    assert sorted(p.name for p in archive.parent.iterdir()) == [f"{archive.stem}.recordable"]
    # the answer is kept: no JVM is asked again (this one no longer exists)
    shutil.rmtree(tmp_path / "jdk")
    assert recordable(archive, [other, "-Xmx64m"]) is False


def test_a_runtime_that_records_is_asked_once(tmp_path: Path, java):
    archive = archive_path(tmp_path / "home", java, "libs/*")
    assert recordable(archive, [java, "-Xmx64m"]) is True
    assert sorted(p.name for p in archive.parent.iterdir()) == [f"{archive.stem}.recordable"]
    assert recordable(archive, [str(tmp_path / "no-such-java")]) is True


def test_a_jvm_that_does_not_start_at_all_leaves_the_question_open(tmp_path: Path, java):
    # Its options are wrong whether it records or not: the node fails and says why, and a
    # later start with good options is asked again.
    archive = archive_path(tmp_path / "home", java, "libs/*")
    assert recordable(archive, [java, "-XX:+NoSuchOptionAnywhere"]) is False
    assert list(archive.parent.iterdir()) == []
    assert recordable(archive, [java, "-Xmx64m"]) is True


def test_a_jvm_that_does_not_finish_in_time_leaves_the_question_open(
    tmp_path: Path, java, monkeypatch
):
    # A busy machine is no evidence that the runtime cannot record: no answer is kept, and
    # the next start asks again. (Only the recording JVM running out of time, the plain one
    # not, cannot be arranged without timing the two: that case is read, not run.)
    archive = archive_path(tmp_path / "home", java, "libs/*")
    monkeypatch.setattr(cds, "PROBE_SECONDS", 0.001)
    assert recordable(archive, [java, "-Xmx64m"]) is False
    assert list(archive.parent.iterdir()) == []
    monkeypatch.setattr(cds, "PROBE_SECONDS", 60.0)
    assert recordable(archive, [java, "-Xmx64m"]) is True
