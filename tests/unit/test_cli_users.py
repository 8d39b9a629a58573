"""Closed by default, through the real command line: ``serve`` and ``worker`` refuse to start
without a users file unless given ``--demo``, in one line and without a traceback; ``trialops
users hash-token`` writes a users-file line that the directory accepts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from events.envelope import Actor
from services.auth import UserDirectory

TOKEN = "token-of-dr-ortega-0123456789"


def trialops(*args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 60):
    base = {k: v for k, v in os.environ.items() if k != "TRIALOPS_USERS_FILE"}
    return subprocess.run(
        [sys.executable, "-m", "trialops", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=timeout,
    )


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["worker", "--once"]])
def test_without_a_users_file_and_without_demo_nothing_starts_and_says_why_in_one_line(command):
    result = trialops(*command)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: no users: set TRIALOPS_USERS_FILE to a users file (lines from 'trialops users "
        "hash-token'), or pass --demo to accept the well-known demo-<role> tokens"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_serve_refuses_a_users_file_others_can_read_in_one_line(tmp_path):
    path = tmp_path / "users.jsonl"
    path.write_text(
        trialops("users", "hash-token", "--user-id", "dr-ortega", "--role", "investigator",
                 stdin=TOKEN).stdout
    )
    path.chmod(0o644)

    result = trialops("serve", env={"TRIALOPS_USERS_FILE": str(path)})

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "open to group or others (mode -rw-r--r--)" in line and "chmod 600" in line


def test_serve_refuses_a_missing_users_file_in_one_line(tmp_path):
    result = trialops("serve", env={"TRIALOPS_USERS_FILE": str(tmp_path / "nope.jsonl")})

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: users file ") and "No such file" in line


def test_hash_token_writes_a_line_the_users_file_accepts(tmp_path):
    result = trialops(
        "users", "hash-token", "--user-id", "dr-ortega", "--role", "investigator",
        "--printed-name", "Dr. Ana Ortega", stdin=TOKEN + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout
    path = tmp_path / "users.jsonl"
    path.write_text(result.stdout)
    path.chmod(0o600)

    directory = UserDirectory.from_file(path)

    assert directory.authenticate(TOKEN) == Actor(user_id="dr-ortega", role="investigator")
    assert directory.user_for(TOKEN).printed_name == "Dr. Ana Ortega"


def test_hash_token_generates_a_token_shown_once_on_stderr(tmp_path):
    result = trialops("users", "hash-token", "--user-id", "aud-kim", "--role", "auditor",
                      "--generate")
    assert result.returncode == 0, result.stderr
    token = result.stderr.rsplit(": ", 1)[1].strip()
    path = tmp_path / "users.jsonl"
    path.write_text(result.stdout)
    path.chmod(0o600)

    assert UserDirectory.from_file(path).authenticate(token) == Actor(
        user_id="aud-kim", role="auditor"
    )


@pytest.mark.parametrize(
    ("token", "role", "expected"),
    [
        ("short-token", "auditor", "shorter than 20 characters"),
        ("a token with spaces in it, long enough", "auditor", "only letters, digits"),
        (TOKEN, "courier", "--role: unknown role 'courier'"),
    ],
)
def test_hash_token_refuses_a_weak_token_or_an_unknown_role(token, role, expected):
    result = trialops("users", "hash-token", "--user-id", "x", "--role", role, stdin=token)

    assert result.returncode == 2
    assert expected in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("1d", 86400), ("45", 45)]
)
def test_a_checkpoint_schedule_reads_seconds_minutes_hours_and_days(text, seconds):
    from trialops.cli_trust import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0s", "-5m", "0.5"])
def test_a_checkpoint_schedule_that_is_not_a_duration_is_refused(text):
    import typer

    from trialops.cli_trust import parse_duration

    with pytest.raises(typer.Exit):
        parse_duration(text)
