"""A packet read from a log that was not read whole says so (decision 54): every reader stops
a partition at an unreadable record that is not quarantined and passes over quarantined ones
(events/reading.py, decision 16), so such a packet lacks what is behind them and must say so
where a reader starts, on its first page; the report command refuses it (exit 3) unless
``--allow-partial``."""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
from typer.testing import CliRunner

from audit.reports.escalation_meeting import escalation_meeting
from audit.reports.facts import Reading
from audit.reports.render import write_pdf
from audit.reports.safety_review import safety_review
from events.reading import Halt, Where
from trial.config import load_trial
from trialops.cli import app

from .test_reports import DAY, START, dl2_trial, pdf_text, reported_and_determined
from .test_sdtm import replaying

HALT = Halt(Where("trialops.safety", 2, 41), "hash-mismatch",
            "AdverseEventReported content does not match its hash", "ab" * 32)
QUARANTINED = (Where("trialops.enrollment", 0, 7), Where("trialops.dosing", 1, 3))


def first_page_text(path: Path) -> str:
    document = pdfium.PdfDocument(str(path))
    try:
        return " ".join(document[0].get_textpage().get_text_range().replace("\ufffe", "-").split())
    finally:
        document.close()


def halting(monkeypatch, events, halts=(HALT,), quarantined=QUARANTINED) -> None:
    """The report command reads ``events`` and then finds the log as a halted reader left it:
    the halts and quarantined records are known once the read is over, as in the replay."""
    import audit.replay

    replaying(monkeypatch, events)

    def read(_settings, _contexts, stats, *_args, **_kw):
        yield from events
        stats.halts = list(halts)
        stats.quarantined = list(quarantined)

    monkeypatch.setattr(audit.replay, "recorded_events", read)


def test_a_packet_from_a_halted_log_names_the_halt_and_the_quarantined_records_on_page_one(
    tmp_path,
):
    reading = Reading(halts=(HALT,), quarantined=QUARANTINED)
    packet = escalation_meeting(dl2_trial().events, load_trial(), "DL2-IP", reading=reading)
    path = tmp_path / "partial.pdf"

    write_pdf(packet, path, "2026-05-01T12:00:00+00:00")

    page_one = first_page_text(path)
    assert "Incomplete" in page_one
    assert "topic trialops.safety, partition 2, offset 41" in page_one
    assert "hash-mismatch" in page_one and "does not match its hash" in page_one
    assert "2 quarantined records passed over" in page_one
    assert "trialops.enrollment@0:7" in page_one and "trialops.dosing@1:3" in page_one


def test_a_safety_review_from_a_log_with_a_quarantined_record_says_so(tmp_path):
    reading = Reading(quarantined=QUARANTINED[:1])
    review = safety_review(reported_and_determined().events, load_trial(), START,
                           START + 10 * DAY, reading=reading)
    path = tmp_path / "review.pdf"

    write_pdf(review, path, "now")

    page_one = first_page_text(path)
    assert "Incomplete" in page_one and "1 quarantined record passed over" in page_one
    assert "trialops.enrollment@0:7" in page_one


def test_a_packet_from_the_whole_log_has_no_banner(tmp_path):
    path = tmp_path / "whole.pdf"
    write_pdf(escalation_meeting(dl2_trial().events, load_trial(), "DL2-IP"), path, "now")

    assert "incomplete" not in pdf_text(path).lower()


def test_the_report_command_refuses_a_halted_log_with_exit_3_and_writes_nothing(
    monkeypatch, tmp_path
):
    halting(monkeypatch, dl2_trial().events)
    out = tmp_path / "dl2.pdf"

    result = CliRunner().invoke(app, ["report", "escalation-meeting", "--cohort", "DL2-IP",
                                      "--output", str(out)])

    assert result.exit_code == 3, result.output
    assert "trialops.safety@2:41" in result.stderr and "--allow-partial" in result.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_a_quarantined_record_alone_also_needs_allow_partial(monkeypatch, tmp_path):
    halting(monkeypatch, reported_and_determined().events, halts=())
    out = tmp_path / "review.pdf"

    result = CliRunner().invoke(app, [
        "report", "safety-review", "--from", START.isoformat(),
        "--to", (START + 10 * DAY).isoformat(), "--output", str(out)])

    assert result.exit_code == 3, result.output
    assert "2 quarantined" in result.stderr
    assert not out.exists()


def test_with_allow_partial_the_packet_is_written_with_its_banner_and_exits_0(
    monkeypatch, tmp_path
):
    halting(monkeypatch, dl2_trial().events)
    out = tmp_path / "dl2.pdf"

    result = CliRunner().invoke(app, ["report", "escalation-meeting", "--cohort", "DL2-IP",
                                      "--output", str(out), "--allow-partial"])

    assert result.exit_code == 0, result.output
    page_one = first_page_text(out)
    assert "Incomplete" in page_one and "offset 41" in page_one
    assert "MSK-0004" in pdf_text(out)
    assert pdf_text(out).count("incomplete: see page 1") >= 2  # every page's footer
    assert "partial" in result.stderr
