"""The broker nodes' class-data-sharing archive (broker/cds.py, decision 81): which options a
node starts with, and that only an archive a JVM accepts is ever put in place. Runs the real
``java`` (the launcher needs it anyway), no broker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from broker.cds import adopt, archive_path, node_options
from broker.jars import find_java


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
