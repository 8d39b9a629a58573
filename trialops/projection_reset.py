"""Rebuilding the projections from the log after the worker died on its own.

The worker's tables live in Faust changelogs, its position in the consumer group's committed
offsets. A worker killed from outside recovers from both (decision 5). A worker that crashed or
gave up by itself (a broker restart left it without partitions, Faust failed) may have done so
in a state where the two disagree: the fault suite caught a projection missing an event after
such a restart. For a trial's log (thousands of events, read in seconds) the safe answer is to
trust neither: forget the group's offsets and the changelogs, and fold the log again.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from kafka.admin import KafkaAdminClient
from kafka.errors import GroupIdNotFoundError, NonEmptyGroupError

from infra.kafka_security import kafka_python_settings
from infra.settings import Settings
from infra.topic_admin import worker_group
from projections.owner import HOLDING_FILE, SESSION_TIMEOUT_SECONDS

log = logging.getLogger(__name__)


def reset_projections(settings: Settings, data_dir: Path, timeout: float = 60.0) -> list[str]:
    """Delete the worker group's committed offsets, its changelog and assignor topics and its
    local state; return what was deleted. The group is the one of the folds this code runs
    (decision 55): an older version's group, which a worker of the older code may still be
    serving from during an upgrade, is left alone. The event topics and the dead-letter topic
    stay. A crashed standby (it held no event partition, ``HOLDING_FILE``) whose group still
    has other workers once its own session has timed out left nothing the others use: only
    its local state is deleted and it rejoins them (decision 58). A crashed holder's
    changelogs are what another worker took over: the group must fold anew, which needs it
    empty; until then this raises, saying so (the supervisor asks again)."""
    from projections.catalog import fold_version
    from trial.config import load_trials

    # Every trial of the deployment, as the worker's group name has it (decision 61).
    group = worker_group(settings.namespace, fold_version(load_trials()))
    admin = KafkaAdminClient(
        **kafka_python_settings("admin"),
        bootstrap_servers=settings.bootstrap_servers,
        client_id="trialops-projection-reset",
    )
    try:
        internal = sorted(t for t in admin.list_topics() if t.startswith(f"{group}-"))
        held = (data_dir / HOLDING_FILE).exists()
        deleted = _delete_group(admin, group, timeout, others_may_stay=not held)
        if deleted is None:
            shutil.rmtree(data_dir / "faust", ignore_errors=True)
            return [f"nothing: other workers of consumer group {group} hold the projections"]
        if internal:
            admin.delete_topics(internal)
            deleted += internal
            deadline = time.monotonic() + timeout
            while set(internal) & set(admin.list_topics()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topics still being deleted after {timeout:.0f} s")
                time.sleep(0.5)
    finally:
        admin.close()
    state = data_dir / "faust"
    if state.exists():
        shutil.rmtree(state)
        deleted.append(str(state))
    return deleted


OTHERS_AFTER_SECONDS = SESSION_TIMEOUT_SECONDS + 5
"""A member still in the group this long after the crash is another worker, not the crashed
one, whose session has timed out by then."""


def _delete_group(
    admin: KafkaAdminClient, group: str, timeout: float, *, others_may_stay: bool
) -> list[str] | None:
    """The group deleted (what was deleted), or None when other workers are in it and
    ``others_may_stay``; otherwise a group that stays non-empty raises ``TimeoutError``."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        # A member that died stays in the group until its session times out (20 s).
        outcome = admin.delete_groups([group]).get(group)  # "OK" or an error's name
        if outcome == "OK":
            return [f"consumer group {group}"]
        if outcome == GroupIdNotFoundError.__name__:
            return []
        if (outcome == NonEmptyGroupError.__name__
                and time.monotonic() - started > OTHERS_AFTER_SECONDS):
            if others_may_stay:
                return None
            raise TimeoutError(
                f"this worker held the projections when it died by itself and other workers "
                f"of consumer group {group} took them over: its changelogs may lack what its "
                "committed offsets cover (decision 24), so the group must fold anew; stop "
                "every worker of the group and they fold the log again"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumer group {group} not deleted: {outcome}")
        time.sleep(1)
