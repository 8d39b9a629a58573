"""The worker checks what Faust's consumer delivers against its own positions (decision 69).

Faust's commits were found ahead of what the worker had applied (decisions 63 and 68, and a
restart in the many-trials test). Here the worker's consumer group is made to commit past
events the worker never applied, as those faults did, and the worker must still reach the
replay: by reading the gap itself when a later record arrives, or, when none does, by reading
its partition again from its position once it sees it stand still.

Events are written straight onto the topic without transactions (tests/integration/raw_events
.py): consecutive records have consecutive offsets, so any gap the worker meets is a skip."""

from __future__ import annotations

import signal

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from events.enrollment import SubjectEnrolled, SubjectWaitlisted, SubjectWithdrawn
from infra.kafka_io import Position
from infra.topic_admin import worker_group
from projections.catalog import fold_version
from tests.integration.helpers import eventually, whole_view
from tests.integration.raw_events import RawWriter
from tests.integration.test_observability import scrape
from tests.integration.test_projection_worker import cohort, occupancy, replay
from trial.config import load_trials

pytestmark = pytest.mark.kafka


def commit_past(settings, position: Position) -> None:
    """Commit the worker group's offset of ``position``'s partition just past it, as a member
    of the (empty) group would."""
    group = worker_group(settings.namespace, fold_version(load_trials()))
    tp = TopicPartition(position.topic, position.partition)

    def committed() -> bool:
        consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group,
                                 enable_auto_commit=False)
        try:
            consumer.assign([tp])
            consumer.commit({tp: OffsetAndMetadata(position.offset + 1, "", -1)})
            return consumer.committed(tp) == position.offset + 1
        except Exception:  # the stopped worker's membership not yet gone
            return False
        finally:
            consumer.close()

    eventually(committed, timeout=60, interval=1)


def restart_worker(stack) -> None:
    stack.spawn("projections", ["worker", "--demo", "--loglevel", "info", "--web-port",
                                str(stack.web_port), "--data-dir", str(stack.work_dir)])


def skipped_by_the_group(stack, settings, writer: RawWriter, cohort_id: str, first: int,
                         skipped_count: int = 2):
    """The worker applies one enrollment and stops; ``skipped_count`` more are written and the
    group's commit is moved past them; the worker starts again."""
    writer.append(f"cohort-{cohort_id}", cohort(cohort_id, capacity=3))
    applied = writer.append(f"subject-MSK-{first:04d}", SubjectEnrolled(
        subject_id=f"MSK-{first:04d}", cohort_id=cohort_id, slot=1))
    occupancy(stack, wait_for=f"{applied.topic}:{applied.partition}:{applied.offset}")
    stack.kill("projections", signal.SIGTERM)
    for slot in range(2, 2 + skipped_count):
        subject = f"MSK-{first + slot - 1:04d}"
        skipped = writer.append(f"subject-{subject}", SubjectEnrolled(
            subject_id=subject, cohort_id=cohort_id, slot=slot))
    writer.producer.flush()
    commit_past(settings, skipped)
    restart_worker(stack)


def test_a_record_beyond_a_gap_makes_the_worker_read_the_gap_itself(stack, settings):
    # Given a worker whose group committed past two events it never applied
    writer = RawWriter(settings)
    skipped_by_the_group(stack, settings, writer, "DL5-IP", 51)
    # When a further event arrives: the first the consumer delivers
    last = writer.append("subject-MSK-0054", SubjectWaitlisted(
        subject_id="MSK-0054", cohort_id="DL5-IP", position=1))

    # Then the worker applied the two it was not given before it, and equals the replay
    document = eventually(lambda: _answered(stack, last), timeout=90, interval=1)
    [row] = document["cohorts"]
    assert row["enrolled"] == ["MSK-0051", "MSK-0052", "MSK-0053"]
    assert row["waiting_list"] == ["MSK-0054"]
    log = (stack.work_dir / "projections.log").read_text(errors="replace")
    assert "the consumer passed over 2 committed record(s)" in log
    # and its /metrics counts them, where an operator's alert finds them
    read_past = ("trialops_worker_records_read_past_the_consumer_total",
                 (("topic", last.topic),))
    assert scrape(stack.projections_url)[read_past] == 2
    assert replay(settings, "cohort-occupancy") == _view(stack)


def test_a_partition_that_stands_still_behind_its_end_is_read_again(stack, settings):
    # Given a worker whose group committed past the last two events, and nothing after them
    writer = RawWriter(settings)
    skipped_by_the_group(stack, settings, writer, "DL6-IP", 61)

    # Then the worker, seeing its position stand still behind the end, reads again from it
    expected = replay(settings, "cohort-occupancy")
    eventually(lambda: _view_or_none(stack) == expected, timeout=120, interval=1)
    log = (stack.work_dir / "projections.log").read_text(errors="replace")
    assert "reading it again from there" in log


def test_a_chain_broken_by_a_record_the_consumer_passed_over_sends_the_worker_to_the_log(
    stack, settings
):
    # Given a worker whose group committed past one event it never applied, written without a
    # transaction: the next record is one offset on, where a commit marker could have stood
    writer = RawWriter(settings)
    skipped_by_the_group(stack, settings, writer, "DL7-IP", 71, skipped_count=1)
    # When the next event of the same subject's stream arrives
    last = writer.append("subject-MSK-0072", SubjectWithdrawn(
        subject_id="MSK-0072", reason_code="consent-withdrawn"))

    # Then the worker, finding its chain broken, reads the log before the record, applies the
    # enrollment it was not given, then the withdrawal, and equals the replay; it never halts
    eventually(lambda: _answered(stack, last), timeout=90, interval=1)
    log = (stack.work_dir / "projections.log").read_text(errors="replace")
    assert "the consumer passed over 1 committed record(s)" in log
    assert "halted" not in log
    assert replay(settings, "cohort-occupancy") == _view(stack)


def _answered(stack, last: Position):
    try:
        return occupancy(stack, wait_for=f"{last.topic}:{last.partition}:{last.offset}")
    except OSError:  # not up yet, or the wait timed out
        return None


def _view(stack) -> bytes:
    return whole_view(f"{stack.projections_url}/projections/cohort-occupancy")


def _view_or_none(stack) -> bytes | None:
    try:
        return _view(stack)
    except OSError:
        return None
