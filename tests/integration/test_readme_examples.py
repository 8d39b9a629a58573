"""README.md works as printed (issue 14): every bash block marked ``<!-- readme-test`` runs,
as a newcomer would paste it, against a running stack found the way the CLI finds
``./scripts/up``'s (its Kafka, keyring and servers from the record in the state folder,
nothing exported), and exits 0.

Only the addresses change: the stack listens on free ports instead of 8081 and 6066, and
``trialops`` is this interpreter's. Like ``./scripts/up``'s demo, the trial has cohort DL1-IP
open with free slots for the README's own patients (decision 45); each ``curl`` fails on a
4xx or 5xx answer, which the README's plain ``curl -s`` would only print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clients.journey import open_cohort
from infra.settings import record_system

pytestmark = pytest.mark.kafka

README = Path(__file__).resolve().parents[2] / "README.md"
MARK = "<!-- readme-test"


def marked_blocks(text: str) -> list[str]:
    """The bash blocks right after a ``<!-- readme-test`` line, in README order."""
    found = []
    for match in re.finditer(rf"^{re.escape(MARK)}[^\n]*\n```bash\n(.*?)^```", text, re.M | re.S):
        found.append(match.group(1))
    return found


def test_the_readme_marks_its_walk_grading_design_and_audit_examples():
    blocks = marked_blocks(README.read_text())

    assert len(blocks) == 4
    assert "/enrollment/eligibility-assessments" in blocks[0]
    assert "trialops walk" in blocks[0]
    assert "trialops grade crs" in blocks[1]
    assert "trialops design table" in blocks[2]
    assert all(f"trialops {c}" in blocks[3] for c in ("verify", "audit trail", "replay", "export"))


def here(block: str, service_port: int, web_port: int) -> str:
    block = block.replace("localhost:8081", f"127.0.0.1:{service_port}")
    block = block.replace("localhost:6066", f"127.0.0.1:{web_port}")
    block = block.replace("curl -s ", "curl -s --fail-with-body ")
    return re.sub(r"^(\.venv/bin/)?trialops ", f"{sys.executable} -m trialops ", block,
                  flags=re.M)


def test_every_marked_readme_example_works_against_a_running_stack(stack, tmp_path, monkeypatch):
    # Given a running system recorded as ./scripts/up records it, with DL1-IP open
    state = tmp_path / "state"
    monkeypatch.setenv("TRIALOPS_STATE_DIR", str(state))
    record_system(
        stack.settings.bootstrap_servers, started_by="trialops up",
        keyring=stack.settings.keyring, writer_keys=stack.settings.writer_keys,
        namespace=stack.settings.namespace, service_url=stack.service_url,
        projections_url=stack.projections_url,
    )
    open_cohort(stack.service_url, "DL1", occurred_at=datetime(2026, 1, 5, tzinfo=UTC))
    env = {
        k: v for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "TRIALOPS_KEYRING", "TRIALOPS_WRITER_KEYS",
                     "TRIALOPS_NAMESPACE", "TRIALOPS_TOKEN", "TRIALOPS_SERVICE_URL",
                     "TRIALOPS_PROJECTIONS_URL")
    }
    env.update(TRIALOPS_STATE_DIR=str(state), COLUMNS="200")
    work = tmp_path / "work"
    work.mkdir()

    # When each marked block runs as printed; then each exits 0
    outputs = []
    for block in marked_blocks(README.read_text()):
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", here(block, stack.service_port,
                                                        stack.web_port)],
            capture_output=True, text=True, env=env, cwd=work, timeout=300, check=False,
        )
        assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout[-3000:]}\n--- " \
                                     f"stderr\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)

    walk, grading, _design, audit = outputs
    assert '"event_type":"SubjectEnrolled"' in walk
    assert "MSK-0101: infused in DL1-IP" in walk
    assert "MSK-0102: released in DL1-IP" in walk
    assert '"grade":' in grading
    assert "no problems found" in audit
    assert (work / "log.jsonl").stat().st_size > 0
    assert (work / "trail.xml").read_text().startswith("<?xml")
    assert (work / "views" / "patient-timeline.json").exists()
