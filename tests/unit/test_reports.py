"""The packets of a dose-escalation meeting and a safety review (issue 15), built from a trial
this file writes event by event, so every figure checked is one the scenario set.

References: DOMAIN.md section 4, 3+3: 0/3 DLT escalates, 1/3 adds 3 more at the same dose;
DOMAIN.md section 3, a patient is DLT-evaluable when treated and followed through the window,
or earlier with a DLT; 21 CFR 11.50, a signature shows the printed name, date and time and
meaning; 21 CFR 312.32(c)(2) and ICH E2A, a life-threatening unexpected suspected adverse
reaction is reported within 7 calendar days of the sponsor's receipt, completed 8 days later;
21 CFR 312.32(c)(1), the 15-day report runs from the sponsor's determination."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pypdfium2 as pdfium
import pytest
from typer.testing import CliRunner

from audit.reports.escalation_meeting import UNKNOWN_COHORT, escalation_meeting
from audit.reports.facts import ReportError
from audit.reports.render import html, write_pdf
from audit.reports.safety_review import PERIOD_ORDER, safety_review
from clients.simulate import plan
from events.dosing import InfusionRecorded
from events.enrollment import (
    CohortOpened,
    SubjectEnrolled,
    SubjectRegistered,
    SubjectWithdrawn,
)
from events.envelope import Actor
from events.registry import EventPayload, Recorded
from events.safety import (
    AdverseEventReported,
    Attribution,
    DltAdjudicated,
    DltEvaluationCompleted,
    EnrollmentPaused,
    EnrollmentResumed,
    ExpeditedReportDetermined,
    ExpeditedReportSubmitted,
    ReportDue,
    SafetyReviewRecorded,
    SeriousnessCriterion,
)
from events.signatures import Meaning, RecordSigned
from projections import dose_escalation
from projections.base import fold
from trial.config import load_trial
from trialops.cli import app

from .test_audit_trail import History
from .test_sdtm import replaying
from .test_simulate_plan import run_in_process

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
INVESTIGATOR = Actor(user_id="dr-ortega", role="investigator")
SAFETY_OFFICER = Actor(user_id="so-patel", role="safety_officer")
DAY = timedelta(days=1)
# 15:00 UTC is 10:00 or 11:00 in New York, the sponsor's zone: the same calendar day.
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DL2_CELLS_PER_KG = 3e6
DL1_CELLS_PER_KG = 1e6
NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class Trial:
    """The log, and the events a test points at."""

    history: History = field(default_factory=History)
    marks: dict[str, Recorded] = field(default_factory=dict)

    @property
    def events(self) -> list[Recorded]:
        return self.history.events

    def id(self, mark: str) -> str:
        return str(self.marks[mark].envelope.event_id)

    def append(self, stream_id: str, payload: EventPayload, at: datetime,
               actor: Actor = INVESTIGATOR) -> Recorded:
        """Recorded when it happened, as a service records a command's business time."""
        return self.history.append(stream_id, payload, actor, occurred_at=at, recorded_at=at)

    def sign(self, signed: Recorded, signer: Actor, printed_name: str, meaning: Meaning
             ) -> Recorded:
        at = signed.envelope.occurred_at + timedelta(minutes=5)
        return self.append(signed.envelope.stream_id, RecordSigned(
            signed_event_id=signed.envelope.event_id,
            signed_event_type=signed.envelope.event_type, signed_hash=signed.envelope.hash,
            signer_id=signer.user_id, printed_name=printed_name, role=signer.role,
            meaning=meaning, signed_at=at), at, signer)


def subject(n: int) -> str:
    return f"MSK-{n:04d}"


def opened(cohort: str, level: str, cells: float, rec: str | None = None) -> CohortOpened:
    return CohortOpened(cohort_id=cohort, dose_level=level, dose_cells_per_kg=cells,
                        route="intraperitoneal", capacity=3, recommendation_id=rec)


def infusion(n: int, cohort: str, level: str, cells: float, at: datetime) -> InfusionRecorded:
    return InfusionRecorded(
        subject_id=subject(n), lot_id=f"LOT-{n:04d}-A", cohort_id=cohort, dose_level=level,
        target_cells_per_kg=cells, weight_kg=70.0, cells_infused=cells * 70.0,
        received_cells_per_kg=cells, counted_dose_level=level, route="intraperitoneal",
        infused_at=at,
    )


def ae(n: int, k: int, term: str, grade: int, attribution: Attribution, onset: datetime,
       serious: tuple[SeriousnessCriterion, ...] = (), expected: bool = True
       ) -> AdverseEventReported:
    return AdverseEventReported(
        ae_id=f"AE-{n:04d}-{k:02d}", subject_id=subject(n), term=term, grade=grade,
        ctcae_version="5.0", onset_at=onset, serious_criteria=serious, attribution=attribution,
        expected=expected, sponsor_received_at=onset, special_interest=None,
        haematological=False, conditioning_lab_effect=False,
    )


def evaluation(n: int, cohort: str, level: str, at: datetime, dlts: tuple[str, ...] = ()
               ) -> DltEvaluationCompleted:
    return DltEvaluationCompleted(subject_id=subject(n), cohort_id=cohort, dose_level=level,
                                  evaluated_at=at, window_days=28, dlt=bool(dlts),
                                  dlt_ae_ids=dlts)


def treated(t: Trial, n: int, cohort: str, level: str, cells: float, at: datetime) -> None:
    """Subject ``n`` registered and enrolled into ``cohort`` three weeks before its infusion
    at ``at``."""
    stream = f"subject-{subject(n)}"
    t.append(stream, SubjectRegistered(subject_id=subject(n), site_id="MSK"), at - 22 * DAY)
    t.marks[f"enrolled {n}"] = t.append(
        stream, SubjectEnrolled(subject_id=subject(n), cohort_id=cohort, slot=(n - 1) % 3 + 1),
        at - 21 * DAY)
    t.marks[f"infused {n}"] = t.append(stream, infusion(n, cohort, level, cells, at), at)


def recommendation_now(t: Trial) -> dict:
    trial = load_trial()
    projection = dose_escalation.make(trial)
    return projection.render(fold(projection, t.events))["recommendation"]


START = T0 + 40 * DAY
"""The first infusion at DL2."""
CRS_ONSET = START + timedelta(hours=6)  # 17:00 in New York, 11 April 2026


def dl2_trial() -> Trial:
    """DL1-IP: three patients without DLT; the review escalates to DL2-IP as recommended.
    DL2-IP: MSK-0004 has a grade 4 CRS, adjudicated a DLT and signed by the investigator;
    MSK-0005 a grade 2 peritonitis; MSK-0006 a grade 1 nausea; all three evaluated. MSK-0001,
    at DL1, had a grade 1 fatigue."""
    t = Trial()
    t.append("cohort-DL1-IP", opened("DL1-IP", "DL1", DL1_CELLS_PER_KG), T0 - 30 * DAY)
    for n in (1, 2, 3):
        treated(t, n, "DL1-IP", "DL1", DL1_CELLS_PER_KG, T0 + n * DAY)
    t.append("ae-AE-0001-01", ae(1, 1, "Fatigue", 1, "unlikely", T0 + 4 * DAY), T0 + 4 * DAY)
    for n in (1, 2, 3):
        at = T0 + (n + 28) * DAY
        t.marks[f"evaluated {n}"] = t.append(
            f"subject-{subject(n)}", evaluation(n, "DL1-IP", "DL1", at), at)
    t.marks["escalate"] = t.append(
        "cohort-DL2-IP",
        opened("DL2-IP", "DL2", DL2_CELLS_PER_KG, recommendation_now(t)["recommendation_id"]),
        T0 + 33 * DAY,
    )
    for n in (4, 5, 6):
        treated(t, n, "DL2-IP", "DL2", DL2_CELLS_PER_KG, START + (n - 4) * DAY)
    t.marks["crs"] = t.append("ae-AE-0004-01", ae(
        4, 1, "Cytokine release syndrome", 4, "probable", CRS_ONSET,
        serious=("life-threatening",), expected=False), CRS_ONSET)
    t.marks["adjudicated"] = t.append("ae-AE-0004-01", DltAdjudicated(
        ae_id="AE-0004-01", subject_id=subject(4), cohort_id="DL2-IP", dose_level="DL2",
        adjudicated_at=START + 2 * DAY, rule_verdict="dlt", rule_criterion="crs-icans-grade",
        rule_findings=("grade 4 CRS (>= 4)",), verdict="dlt", departure_reason=None),
        START + 2 * DAY)
    t.marks["adjudication signed"] = t.sign(
        t.marks["adjudicated"], INVESTIGATOR, "A. Ortega", "review")
    at = START + 2 * DAY + timedelta(hours=1)
    t.marks["evaluated 4"] = t.append(
        "subject-MSK-0004", evaluation(4, "DL2-IP", "DL2", at, ("AE-0004-01",)), at)
    t.marks["peritonitis"] = t.append(
        "ae-AE-0005-01", ae(5, 1, "Peritonitis", 2, "possible", START + 3 * DAY), START + 3 * DAY)
    t.marks["nausea"] = t.append(
        "ae-AE-0006-01", ae(6, 1, "Nausea", 1, "unrelated", START + 4 * DAY), START + 4 * DAY)
    for n in (5, 6):
        at = START + (n - 4 + 28) * DAY
        t.marks[f"evaluated {n}"] = t.append(
            f"subject-{subject(n)}", evaluation(n, "DL2-IP", "DL2", at), at)
    return t


# ---------------------------------------------------------------- the escalation meeting


def test_the_cohort_table_shows_each_subjects_dose_route_infusion_and_dlt():
    t = dl2_trial()
    packet = escalation_meeting(t.events, load_trial(), "DL2-IP")

    start = START
    assert [(r.subject_id, r.dose_level, r.route, r.infused_at, r.evaluable, r.dlt)
            for r in packet.rows] == [
        ("MSK-0004", "DL2", "intraperitoneal", start, "yes", True),
        ("MSK-0005", "DL2", "intraperitoneal", start + DAY, "yes", False),
        ("MSK-0006", "DL2", "intraperitoneal", start + 2 * DAY, "yes", False),
    ]
    assert (packet.dose_level, packet.dose_cells_per_kg, packet.route) == (
        "DL2", DL2_CELLS_PER_KG, "intraperitoneal")
    assert (packet.treated.value, packet.evaluable.value, packet.dlts.value) == (3, 3, 1)
    assert set(packet.treated.events) == {t.id(f"infused {n}") for n in (4, 5, 6)}
    assert packet.dlts.events == (t.id("evaluated 4"),)
    assert packet.rows[0].events[:3] == (
        t.id("enrolled 4"), t.id("infused 4"), t.id("evaluated 4"))


def test_a_subject_still_in_the_window_is_not_yet_dlt_evaluable():
    t = dl2_trial()
    without = [r for r in t.events if r is not t.marks["evaluated 6"]]
    packet = escalation_meeting(without, load_trial(), "DL2-IP")
    assert {r.subject_id: r.evaluable for r in packet.rows}["MSK-0006"] == "window open"
    assert packet.evaluable.value == 2


def test_the_dlt_adjudication_carries_the_investigators_signature():
    t = dl2_trial()
    [adjudication] = escalation_meeting(t.events, load_trial(), "DL2-IP").adjudications
    assert (adjudication.ae_id, adjudication.verdict, adjudication.rule_verdict) == (
        "AE-0004-01", "dlt", "dlt")
    assert (adjudication.term, adjudication.grade) == ("Cytokine release syndrome", 4)
    assert adjudication.event_id == t.id("adjudicated")
    [signature] = adjudication.signatures
    assert (signature.printed_name, signature.signer_id, signature.role, signature.meaning) == (
        "A. Ortega", "dr-ortega", "investigator", "review")
    assert signature.signed_at == t.marks["adjudication signed"].payload.signed_at
    assert signature.event_id == t.id("adjudication signed")


def test_the_cohorts_adverse_events_are_counted_by_grade_and_attribution():
    t = dl2_trial()
    tally = escalation_meeting(t.events, load_trial(), "DL2-IP").by_grade_and_attribution
    assert tally.cell(4, "probable").value == 1
    assert tally.cell(2, "possible").value == 1
    assert tally.cell(1, "unrelated").value == 1
    assert tally.cell(1, "unlikely").value == 0  # MSK-0001's fatigue is DL1's
    assert tally.total.value == 3
    assert tally.cell(4, "probable").events == (t.id("crs"),)
    assert set(tally.total.events) == {t.id("crs"), t.id("peritonitis"), t.id("nausea")}


def test_one_dlt_in_three_at_dl2_recommends_three_more_at_dl2_with_its_evidence():
    t = dl2_trial()
    rec = escalation_meeting(t.events, load_trial(), "DL2-IP").recommendation
    assert rec is not None
    assert (rec.design, rec.current_level, rec.decision, rec.next_level) == (
        "3+3", "DL2", "stay", "DL2")
    levels = {line.dose_level: line for line in rec.levels}
    assert (levels["DL1"].evaluable.value, levels["DL1"].dlts.value) == (3, 0)
    assert (levels["DL2"].evaluable.value, levels["DL2"].dlts.value) == (3, 1)
    assert levels["DL2"].dlts.events == (t.id("evaluated 4"),)
    assert set(levels["DL2"].evaluable.events) == {t.id(f"evaluated {n}") for n in (4, 5, 6)}
    assert {e.event_id for e in rec.evidence} >= {t.id(f"evaluated {n}") for n in range(1, 7)}
    assert {e.event_type for e in rec.evidence} == {"DltEvaluationCompleted"}


def test_the_decision_that_opened_the_cohort_is_in_the_packet_with_what_it_cited():
    t = dl2_trial()
    packet = escalation_meeting(t.events, load_trial(), "DL2-IP")
    [opening] = [d for d in packet.decisions if d.kind == "open"]
    assert opening.event_id == t.id("escalate")
    assert opening.recommendation_id == t.marks["escalate"].payload.recommendation_id
    assert opening.signatures == ()


def test_a_cohort_the_review_never_opened_is_refused_naming_the_option_and_rule():
    t = dl2_trial()
    with pytest.raises(ReportError) as raised:
        escalation_meeting(t.events, load_trial(), "DL3-IP")
    assert (raised.value.option, raised.value.rule) == ("--cohort", UNKNOWN_COHORT)
    assert "DL3-IP" in str(raised.value) and "DL1-IP, DL2-IP" in str(raised.value)


def test_a_simulated_trials_dl2_packet_reads_what_the_plan_made_happen():
    """The simulator's plan (6 patients, seed 1) through the real deciders, in process: the
    packet lists the subjects the plan enrolled into DL2-IP and the recommendation its last
    review expected (the plan applies DOMAIN.md's 3+3 table)."""
    trial = load_trial()
    steps = plan(6, 1, trial)
    api, _report, _lines = run_in_process(6, 1)
    events = [r for _c, r in api.recorded()]

    packet = escalation_meeting(events, trial, "DL2-IP")

    enrolled = [s.subject_id for s in steps
                if s.action == "enroll" and s.args.get("cohort_id") == "DL2-IP"]
    assert [r.subject_id for r in packet.rows] == enrolled
    review = [s for s in steps if s.action == "review" and s.args["level"] == "DL2"][-1]
    assert packet.recommendation is not None
    assert (packet.recommendation.decision, packet.recommendation.next_level) == (
        review.args["expect"], review.args["next_level"])
    assert packet.recommendation.after_evaluation_of == review.args["after_evaluation_of"]


# ---------------------------------------------------------------- the PDF


def pdf_text(path: Path) -> str:
    """The PDF's text; pdfium gives a hyphen where a line breaks after it as U+FFFE."""
    document = pdfium.PdfDocument(str(path))
    try:
        return "\n".join(
            page.get_textpage().get_text_range().replace("\ufffe", "-") for page in document
        )
    finally:
        document.close()


def test_the_packet_renders_to_a_pdf_showing_the_cohort_table(tmp_path):
    t = dl2_trial()
    packet = escalation_meeting(t.events, load_trial(), "DL2-IP")
    path = tmp_path / "dl2.pdf"

    pages = write_pdf(packet, path, "2026-05-01T12:00:00+00:00")

    assert pages >= 1
    text = pdf_text(path)
    assert "Dose-escalation meeting: cohort DL2-IP" in text
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for n in (4, 5, 6):
        assert any(line.startswith(f"MSK-000{n}") and "DL2 intraperitoneal" in line
                   for line in lines), n
    assert not any(line.startswith("MSK-0001") for line in lines)  # DL1's, not a row here
    assert "A. Ortega" in text and "stay" in text
    assert t.id("adjudication signed") in text.replace("\r", "").replace("\n", "")


def test_the_first_page_of_the_packet_is_not_blank(tmp_path):
    packet = escalation_meeting(dl2_trial().events, load_trial(), "DL2-IP")
    path = tmp_path / "dl2.pdf"
    write_pdf(packet, path, "2026-05-01T12:00:00+00:00")

    document = pdfium.PdfDocument(str(path))
    try:
        image = document[0].render(scale=1).to_pil().convert("L")
    finally:
        document.close()
    ARTIFACTS.mkdir(exist_ok=True)
    image.save(ARTIFACTS / "escalation-meeting-page-1.png")
    dark = sum(image.histogram()[:128])
    assert dark > 0.005 * image.width * image.height  # text and table rules, not a white page


def test_every_figure_names_its_events_in_the_notes():
    t = dl2_trial()
    page = html(escalation_meeting(t.events, load_trial(), "DL2-IP"), "now")
    assert t.id("crs") in page and t.id("evaluated 4") in page
    assert "<sup>[1]</sup>" in page


# ---------------------------------------------------------------- the safety review


def reported_and_determined() -> Trial:
    """The DL2 trial; the sponsor determines the CRS qualifies an hour after receiving it and
    submits its 15-day report two days later, signed by the safety officer."""
    t = dl2_trial()
    received = CRS_ONSET  # the sponsor received the report at its onset (``ae``)
    day_zero = date(2026, 4, 11)
    determined = received + timedelta(hours=1)
    t.marks["determined"] = t.append("ae-AE-0004-01", ExpeditedReportDetermined(
        ae_id="AE-0004-01", subject_id=subject(4), basis="initial", determined_at=determined,
        information_received_at=received,
        reports_due=(ReportDue(report="15-day", day_zero=day_zero, due_on=day_zero + 15 * DAY),),
    ), determined, SAFETY_OFFICER)
    submitted = received + 2 * DAY
    t.marks["submitted"] = t.append("ae-AE-0004-01", ExpeditedReportSubmitted(
        ae_id="AE-0004-01", subject_id=subject(4), report="15-day", submitted_at=submitted,
        due_on=day_zero + 15 * DAY, reference="IND-SR-0001"), submitted, SAFETY_OFFICER)
    t.marks["submission signed"] = t.sign(
        t.marks["submitted"], SAFETY_OFFICER, "S. Patel", "responsibility")
    return t


def test_the_safety_review_counts_the_periods_aes_by_grade_and_attribution():
    t = reported_and_determined()
    review = safety_review(t.events, load_trial(), START, START + 10 * DAY)
    assert [a.ae_id for a in review.adverse_events] == ["AE-0004-01", "AE-0005-01", "AE-0006-01"]
    tally = review.by_grade_and_attribution
    assert (tally.cell(4, "probable").value, tally.cell(2, "possible").value,
            tally.cell(1, "unrelated").value, tally.total.value) == (1, 1, 1, 3)
    assert [a.ae_id for a in review.serious] == ["AE-0004-01"]
    assert review.serious_count.events == (t.id("crs"),)


def test_the_seven_day_report_is_overdue_and_the_signed_fifteen_day_report_submitted():
    t = reported_and_determined()
    received = date(2026, 4, 11)  # CRS_ONSET in New York, the sponsor's zone: day 0
    assert t.marks["crs"].payload.sponsor_received_at.astimezone(NEW_YORK).date() == received
    review = safety_review(t.events, load_trial(), START, START + 10 * DAY)
    clocks = {r.report: r for r in review.reports}
    assert set(clocks) == {"7-day", "7-day-complete", "15-day"}
    assert (clocks["7-day"].due_on, clocks["7-day"].status) == (
        (received + 7 * DAY).isoformat(), "overdue")
    assert (clocks["7-day-complete"].due_on, clocks["7-day-complete"].status) == (
        (received + 15 * DAY).isoformat(), "due")
    fifteen = clocks["15-day"]
    assert (fifteen.due_on, fifteen.status, fifteen.late) == (
        (received + 15 * DAY).isoformat(), "submitted", False)
    [signature] = fifteen.signatures
    assert (signature.printed_name, signature.role, signature.meaning) == (
        "S. Patel", "safety_officer", "responsibility")
    assert t.id("submitted") in fifteen.events and t.id("determined") in fifteen.events
    assert review.overdue.value == 1


def test_the_safety_review_lists_the_periods_dlt_adjudication_and_evaluations():
    t = reported_and_determined()
    review = safety_review(t.events, load_trial(), START, START + 10 * DAY)
    assert [(d.kind, d.subject_id, d.outcome) for d in review.dlts] == [
        ("adjudication", "MSK-0004", "dlt"),
        ("evaluation", "MSK-0004", "DLT"),
    ]  # MSK-0005 and MSK-0006 are evaluated after the period
    assert review.dlts[0].signatures[0].printed_name == "A. Ortega"
    assert not review.paused_at_end and review.stopping == ()


def test_a_pause_by_the_stopping_rule_and_the_review_that_lifts_it_are_in_their_periods():
    """DOMAIN.md section 3: a grade 5 event at least possibly related pauses enrollment until
    a documented safety review."""
    t = dl2_trial()
    death = START + 5 * DAY
    t.marks["fatal"] = t.append("ae-AE-0005-02", ae(
        5, 2, "Respiratory failure", 5, "possible", death, serious=("death",), expected=False),
        death)
    t.marks["paused"] = t.append("ae-AE-0005-02", EnrollmentPaused(
        ae_id="AE-0005-02", subject_id=subject(5), rule="grade5-related"), death)
    reviewed = START + 12 * DAY
    t.marks["review"] = t.append("review-SR-2026-01", SafetyReviewRecorded(
        review_id="SR-2026-01", reviewed_ae_ids=("AE-0005-02",), allows_resumption=True,
        summary="Not attributable to the product on autopsy review", reviewed_at=reviewed),
        reviewed, SAFETY_OFFICER)
    t.marks["resumed"] = t.append("review-SR-2026-01", EnrollmentResumed(
        review_id="SR-2026-01", summary="Enrollment resumes"), reviewed, SAFETY_OFFICER)

    during = safety_review(t.events, load_trial(), START, START + 10 * DAY)
    after = safety_review(t.events, load_trial(), START + 10 * DAY, START + 20 * DAY)

    assert during.paused_at_end and during.paused_by == ("AE-0005-02",)
    assert [(line.kind, line.event_id) for line in during.stopping] == [
        ("paused", t.id("paused"))]
    assert not after.paused_at_end
    assert [(line.kind, line.event_id) for line in after.stopping] == [
        ("review", t.id("review")), ("resumed", t.id("resumed"))]
    assert "allows resumption" in after.stopping[0].detail
    assert during.by_grade_and_attribution.cell(5, "possible").events == (t.id("fatal"),)


def test_a_subject_not_yet_infused_and_one_withdrawn_are_rows_without_a_dlt():
    t = dl2_trial()
    later = START + 50 * DAY
    for n, slot in ((7, 1), (8, 2)):
        t.append(f"subject-{subject(n)}", SubjectEnrolled(
            subject_id=subject(n), cohort_id="DL2-IP", slot=slot), later)
    t.marks["withdrawn"] = t.append("subject-MSK-0008", SubjectWithdrawn(
        subject_id=subject(8), reason_code="consent-withdrawn"), later + DAY)

    rows = {r.subject_id: r for r in escalation_meeting(t.events, load_trial(), "DL2-IP").rows}

    assert (rows["MSK-0007"].evaluable, rows["MSK-0007"].dlt, rows["MSK-0007"].infused_at) == (
        "not infused", None, None)
    assert (rows["MSK-0008"].evaluable, rows["MSK-0008"].dlt) == ("withdrawn", None)
    assert t.id("withdrawn") in rows["MSK-0008"].events


def test_a_period_that_ends_before_it_starts_is_refused():
    with pytest.raises(ReportError) as raised:
        safety_review([], load_trial(), T0, T0 - DAY)
    assert (raised.value.option, raised.value.rule) == ("--from", PERIOD_ORDER)


def test_the_safety_review_renders_to_a_pdf(tmp_path):
    t = reported_and_determined()
    path = tmp_path / "review.pdf"
    write_pdf(safety_review(t.events, load_trial(), START, START + 10 * DAY), path, "now")
    text = pdf_text(path)
    assert "Safety review" in text and "S. Patel" in text and "overdue" in text


# ---------------------------------------------------------------- the command


def test_the_report_command_writes_the_pdf_and_refuses_an_unknown_cohort(monkeypatch, tmp_path):
    replaying(monkeypatch, dl2_trial().events)
    out = tmp_path / "dl2.pdf"
    runner = CliRunner()

    written = runner.invoke(app, ["report", "escalation-meeting", "--cohort", "DL2-IP",
                                  "--output", str(out)])
    unknown = runner.invoke(app, ["report", "escalation-meeting", "--cohort", "DL9-IP",
                                  "--output", str(tmp_path / "x.pdf")])
    backwards = runner.invoke(app, ["report", "safety-review", "--from", "2026-05-01T00:00:00Z",
                                    "--to", "2026-04-01T00:00:00Z", "--output",
                                    str(tmp_path / "y.pdf")])

    assert written.exit_code == 0, written.output
    assert "MSK-0004" in pdf_text(out)
    assert not (tmp_path / "dl2.pdf.partial").exists()
    assert unknown.exit_code == 2
    assert "--cohort" in unknown.output and UNKNOWN_COHORT in unknown.output
    assert not (tmp_path / "x.pdf").exists()
    assert backwards.exit_code == 2 and PERIOD_ORDER in backwards.output
    assert not (tmp_path / "y.pdf").exists()


def test_the_safety_review_command_writes_the_periods_pdf(monkeypatch, tmp_path):
    replaying(monkeypatch, reported_and_determined().events)
    out = tmp_path / "review.pdf"
    result = CliRunner().invoke(app, [
        "report", "safety-review", "--from", START.isoformat(),
        "--to", (START + 10 * DAY).isoformat(), "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = pdf_text(out)
    assert "AE-0004-01" in text and "MSK-0004" in text and "S. Patel" in text
