"""Decision 55: the worker's tables carry the version of the folds that wrote them, so a worker
whose folds or trial file changed folds the log again instead of serving stale tables. The
version is computed here from a copy of the sources, so a test changes a byte of a fold's
source and sees the version change."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import services.snapshots
from infra.topic_admin import worker_group
from projections.catalog import FOLD_PACKAGES, fold_version
from services.snapshots import sources_digest
from trial.config import load_trial

ROOT = Path(__file__).resolve().parents[2]


def test_the_same_folds_and_trial_give_the_same_version():
    trial = load_trial()
    assert fold_version(trial) == fold_version(load_trial())
    assert len(fold_version(trial)) == 12


def test_a_changed_trial_file_changes_the_version():
    trial = load_trial()
    changed = trial.model_copy(update={"stopping_rule": trial.stopping_rule.model_copy(
        update={"min_grade": 4})})
    assert fold_version(changed) != fold_version(trial)


def test_the_folds_sources_are_part_of_it():
    # The projections' own package is covered, not only what the writers' snapshots cover.
    assert "projections" in FOLD_PACKAGES
    assert sources_digest(FOLD_PACKAGES) != sources_digest(("events", "services", "trial"))


def test_the_group_of_a_version_shares_the_prefix_the_acls_and_the_reset_name():
    group = worker_group("ns", "0123456789ab")
    assert group == "ns-projections-0123456789ab"
    assert group.startswith(f"{worker_group('ns')}-")


def copy_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fold packages' sources that the version is computed from: the digest
    reads the tree its module sits in, so the module is pointed into the copy (the digest is
    read once per process: :func:`version_of` reads it again)."""
    for package in FOLD_PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(services.snapshots, "__file__",
                        str(tmp_path / "services" / "snapshots.py"))
    return tmp_path


@pytest.fixture
def sources(tmp_path, monkeypatch) -> Iterator[Path]:
    yield copy_sources(tmp_path, monkeypatch)
    sources_digest.cache_clear()  # the next reader reads the project's own tree


def version_of(trial) -> str:
    sources_digest.cache_clear()
    return fold_version(trial)


def test_a_copy_of_the_sources_gives_the_projects_version(tmp_path, monkeypatch):
    trial = load_trial()
    project = version_of(trial)
    try:
        copy_sources(tmp_path, monkeypatch)
        assert version_of(trial) == project
    finally:
        monkeypatch.undo()
        sources_digest.cache_clear()


@pytest.mark.parametrize("fold_source", [
    "projections/patient_timeline.py",  # a fold
    "projections/timeline_values.py",  # what a fold's line says
    "services/safety/evaluation.py",  # a service rule a fold calls
    "events/manufacturing.py",  # the events a fold reads
])
def test_a_changed_byte_in_a_folds_source_changes_the_version(sources, fold_source):
    trial = load_trial()
    before = version_of(trial)
    path = sources / fold_source
    path.write_bytes(path.read_bytes() + b"\n")

    assert version_of(trial) != before


def test_a_new_module_among_the_projections_changes_the_version(sources):
    trial = load_trial()
    before = version_of(trial)
    (sources / "projections" / "new_fold.py").write_text('"""A new fold."""\n')

    assert version_of(trial) != before


def test_a_file_no_fold_reads_leaves_the_version(sources):
    trial = load_trial()
    before = version_of(trial)
    (sources / "projections" / "NOTES.txt").write_text("not a source\n")

    assert version_of(trial) == before
