"""The audit tools of a deployment of several trials (decision 62): the inbox, the audit trail,
the exports and the packets each read one trial's events with that trial's file, never two
trials' in one document; the CLI refuses a read that names no trial when several run.

The reference is a one-trial deployment (decision 6): the same pure core over that trial's
events alone, with its own trial file. The two trials are simulated as in
test_projections_per_trial.py: they share their stream ids (cohort "DL1-IP", subjects
"MSK-0001"...), the case that mixes them if anything does. The second trial's DLT window is 21
days, the shipped file's 28. No broker: the CLI's refusals come before the log is read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.export import ExportStats, select
from audit.fhir import bundle
from audit.replay import of_the_trial
from audit.reports.escalation_meeting import escalation_meeting
from audit.reports.safety_review import safety_review
from audit.sdtm import adverse_events, ae_rows
from audit.trail import Selection, build_trail
from events.dosing import InfusionRecorded
from events.envelope import to_bytes
from events.registry import Recorded
from projections.inbox import inbox
from trial.config import TrialConfig, load_trials
from trialops.cli import app

from .per_trial_logs import (
    SECOND_TRIAL,
    SECOND_WINDOW_DAYS,
    SHIPPED_TRIAL,
    trial_log,
    two_trial_files,
)

TRIALS = (SHIPPED_TRIAL, SECOND_TRIAL)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A deployment's folder of two trial files (TRIALOPS_TRIALS)."""
    return two_trial_files(tmp_path_factory.mktemp("trials"))


@pytest.fixture(scope="module")
def trials(folder) -> dict[str, TrialConfig]:
    return load_trials(folder)


@pytest.fixture(scope="module")
def logs() -> dict[str, list[Recorded]]:
    """Each trial's events alone, in recorded order."""
    return {trial_id: sorted((r for _s, _o, r in trial_log(trial_id, seed, first)),
                             key=lambda r: r.envelope.recorded_at)
            for trial_id, seed, first in ((SHIPPED_TRIAL, 7, 1), (SECOND_TRIAL, 11, 100_000))}


@pytest.fixture(scope="module")
def mixed(logs) -> list[Recorded]:
    """Both trials' events in one log, in recorded order, as the whole-log read gives them."""
    return sorted(logs[SHIPPED_TRIAL] + logs[SECOND_TRIAL], key=lambda r: r.envelope.recorded_at)


def only(events: list[Recorded], trial_id: str) -> list[Recorded]:
    errors: list[str] = []
    chosen = list(of_the_trial(events, trial_id, TRIALS, errors))
    assert errors == []
    return chosen


def ids(events) -> set[str]:
    return {str(r.envelope.event_id) for r in events}


def first_infusion(log: list[Recorded]) -> datetime:
    return min(r.envelope.recorded_at for r in log if isinstance(r.payload, InfusionRecorded))


def test_the_two_simulated_trials_share_subject_ids(logs):
    # without this the tests below could not tell one trial's facts from the other's
    subjects = {t: {r.payload.subject_id for r in log if getattr(r.payload, "subject_id", None)}
                for t, log in logs.items()}
    assert "MSK-0001" in subjects[SHIPPED_TRIAL] & subjects[SECOND_TRIAL]


@pytest.mark.parametrize("trial_id", TRIALS)
def test_an_inbox_lists_one_trials_actions_by_its_own_rules(trials, logs, mixed, trial_id):
    mine = only(mixed, trial_id)
    mixed_up = 0
    for moment in sorted({r.envelope.recorded_at for r in logs[trial_id]})[::10]:
        alone = inbox(logs[trial_id], trials[trial_id], moment)
        assert inbox(mine, trials[trial_id], moment) == alone, moment
        mixed_up += bool(alone) and inbox(mixed, trials[trial_id], moment) != alone
    assert mixed_up, "the whole-log read never differed: the comparison would prove nothing"


def test_the_second_trials_inbox_is_not_computed_with_the_shipped_file(trials, logs, mixed):
    # a DLT evaluation is due at the end of the trial's own window: 21 days, not 28
    moment = first_infusion(logs[SECOND_TRIAL]) + timedelta(days=SECOND_WINDOW_DAYS + 1)
    own = inbox(only(mixed, SECOND_TRIAL), trials[SECOND_TRIAL], moment)
    assert own == inbox(logs[SECOND_TRIAL], trials[SECOND_TRIAL], moment)
    assert own != inbox(logs[SECOND_TRIAL], trials[SHIPPED_TRIAL], moment)


@pytest.mark.parametrize("trial_id", TRIALS)
def test_a_subjects_audit_trail_holds_one_trials_events(logs, mixed, trial_id):
    selection = Selection(subject_id="MSK-0001")
    rows = build_trail(only(mixed, trial_id), selection).rows

    assert rows == build_trail(logs[trial_id], selection).rows
    assert {row.event_id for row in rows} <= ids(logs[trial_id])
    assert len(build_trail(mixed, selection).rows) > len(rows)  # what the whole-log read gave


@pytest.mark.parametrize("trial_id", TRIALS)
def test_an_event_log_export_holds_one_trials_envelopes(logs, mixed, trial_id):
    records = [(f"at {n}", to_bytes(r.envelope)) for n, r in enumerate(mixed)]
    stats = ExportStats()
    exported = list(select(records, stats, trial_id=trial_id))

    assert [e.event_id for _v, e in exported] == [r.envelope.event_id for r in logs[trial_id]]
    other = SECOND_TRIAL if trial_id == SHIPPED_TRIAL else SHIPPED_TRIAL
    assert stats.other_trials == len(logs[other])
    one_subject = list(select(records, ExportStats(), subject_id="MSK-0001", trial_id=trial_id))
    assert {str(e.event_id) for _v, e in one_subject} <= ids(logs[trial_id])


@pytest.mark.parametrize("trial_id", TRIALS)
def test_sdtm_and_fhir_exports_are_one_study(logs, mixed, trial_id):
    rows = ae_rows(adverse_events(only(mixed, trial_id)), trial_id)
    assert rows, "no adverse event in the simulation: the comparison would prove nothing"
    assert rows == ae_rows(adverse_events(logs[trial_id]), trial_id)
    assert {row["STUDYID"] for row in rows} == {trial_id}

    created = datetime(2026, 12, 6, tzinfo=UTC)
    document = bundle(only(mixed, trial_id), trial_id, created)
    assert document == bundle(logs[trial_id], trial_id, created)


@pytest.mark.parametrize("trial_id", TRIALS)
def test_the_packets_are_one_trials(trials, logs, mixed, trial_id):
    meeting = escalation_meeting(only(mixed, trial_id), trials[trial_id], "DL1-IP")
    assert meeting == escalation_meeting(logs[trial_id], trials[trial_id], "DL1-IP")
    assert meeting != escalation_meeting(mixed, trials[trial_id], "DL1-IP")

    start = min(r.envelope.occurred_at for r in logs[trial_id])
    end = max(r.envelope.occurred_at for r in mixed) + timedelta(days=1)
    review = safety_review(only(mixed, trial_id), trials[trial_id], start, end)
    assert review == safety_review(logs[trial_id], trials[trial_id], start, end)


def test_an_event_of_a_trial_not_run_is_reported_not_read(logs):
    errors: list[str] = []
    read = list(of_the_trial(logs[SECOND_TRIAL], SHIPPED_TRIAL, [SHIPPED_TRIAL], errors))
    assert read == []
    assert errors and SECOND_TRIAL in errors[0]


# ------------------------------------------------------------------ the CLI's refusals

COMMANDS = {
    "inbox": ["inbox", "--role", "safety_officer"],
    "audit trail": ["audit", "trail", "--subject", "MSK-0001"],
    "export jsonl": ["export"],
    "export csv": ["export", "--format", "csv"],
    "export sdtm-ae": ["export", "--format", "sdtm-ae", "--output", "ae.xpt"],
    "export fhir": ["export", "--format", "fhir", "--output", "bundle.json"],
    "export xlsx": ["export", "--format", "xlsx", "--output", "book.xlsx"],
    "report escalation-meeting": ["report", "escalation-meeting", "--cohort", "DL1-IP",
                                  "--output", "meeting.pdf"],
    "report safety-review": ["report", "safety-review", "--from", "2026-01-01T00:00:00Z",
                             "--to", "2026-02-01T00:00:00Z", "--output", "review.pdf"],
}


def run(folder: Path, arguments: list[str]):
    result = CliRunner().invoke(app, arguments, env={
        "TRIALOPS_TRIALS": str(folder), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "COLUMNS": "200", "NO_COLOR": "1"})
    return result.exit_code, result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_naming_no_trial_is_refused_when_several_run(folder, command):
    code, said = run(folder, COMMANDS[command])
    assert code == 2, said
    assert "--trial" in said and f"{SECOND_TRIAL}, {SHIPPED_TRIAL}" in said


@pytest.mark.parametrize("command", COMMANDS)
def test_a_trial_the_deployment_does_not_run_is_refused_naming_it(folder, command):
    code, said = run(folder, [*COMMANDS[command], "--trial", "NCT00000000"])
    assert code == 2, said
    assert "NCT00000000" in said and f"{SECOND_TRIAL}, {SHIPPED_TRIAL}" in said
