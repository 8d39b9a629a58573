"""Decision 55: the worker's tables carry the version of the folds that wrote them, so a worker
whose folds or trial file changed folds the log again instead of serving stale tables."""

from __future__ import annotations

from infra.topic_admin import worker_group
from projections.catalog import FOLD_PACKAGES, fold_version
from services.snapshots import sources_digest
from trial.config import load_trial


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
