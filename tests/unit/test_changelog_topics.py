"""The worker's changelogs, made before its consumer joins its group (decision 69): one per
table, named as Faust names them, co-partitioned with the event topics and compacted (a
changelog keeps each key's last value: Faust's tables, faust.tables.base)."""

from __future__ import annotations

from infra.keys import init_keys
from infra.settings import Settings
from infra.topic_admin import worker_group
from projections.catalog import fold_version
from projections.faust_tables import changelog_topics
from projections.worker import create_app
from services.auth import UserDirectory
from trial.config import load_trials


def test_every_table_has_its_changelog_with_the_event_topics_partitions(tmp_path):
    keyring, writers = init_keys(tmp_path / "keys")
    settings = Settings(bootstrap_servers="127.0.0.1:9", namespace="tcl", trial_id="NCT06623396",
                        replication_factor=1, keyring=str(keyring), writer_keys=str(writers))
    app = create_app(settings, users=UserDirectory.demo(), data_dir=tmp_path / "data",
                     partitions=4)

    topics = changelog_topics(app)

    group = worker_group("tcl", fold_version(load_trials()))
    tables = {"applied-seq", "positions", "dead-lettered", "retired-keys", "cohort-occupancy",
              "dose-escalation", "manufacturing-pipeline", "safety", "patient-timeline"}
    assert set(topics) == {f"{group}-{name}-changelog" for name in tables}
    for partitions, factor, configs in topics.values():
        assert (partitions, factor) == (4, 1)
        assert configs["cleanup.policy"] == "compact"
