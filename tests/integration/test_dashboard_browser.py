"""The operations dashboard in a real browser: after a short simulated trial on the real broker,
headless Chromium (driven by selenium with the system's chromedriver; nothing is downloaded)
opens the worker's page (with no token it shows nothing and asks for one; the auditor's token
handed over as ``/#token=...`` is kept in sessionStorage and taken out of the address bar),
and every number it shows is compared with the projections' JSON
fetched by the test: cohorts taken/free, DLTs per level, the recommendation (worded "stay at
DL2", "escalate to DL3"), no target line for a 3+3 design, lots with their OOS and
exceptional-release status, the subjects in screening, AEs and their list (term, grade,
seriousness, attribution, DLT status, report status), overdue reports, whether each open DLT
window is over, the inbox panel for a chosen role against ``/projections/inbox?role=...``, and a
subject's timeline with its rows' values after a click on a subject's link and from a
``#subject=...`` deep link. A screenshot goes to test-artifacts/dashboard.png.

Without Chromium or chromedriver the test is skipped, except under CI (``CI`` set), where it
fails: set CHROMIUM and CHROMEDRIVER to their paths if they are not in /usr/bin."""

from __future__ import annotations

import os
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from clients.http import DEMO_READER, call
from clients.simulate import Simulation, WorkerView, plan
from events.dosing import InfusionRecorded
from events.safety import AdverseEventReported
from tests.integration.helpers import append_upstream, eventually, whole_view
from trial.config import load_trial

pytestmark = pytest.mark.kafka

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PATIENTS, SEED = 6, 7
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def fatal_ae(ae_id: str, subject_id: str, received: datetime) -> AdverseEventReported:
    return AdverseEventReported(
        ae_id=ae_id, subject_id=subject_id, term="Respiratory failure", grade=5,
        onset_at=received - timedelta(hours=3), serious_criteria=("death",),
        attribution="possible", expected=False, sponsor_received_at=received,
        special_interest=None, haematological=False, conditioning_lab_effect=False,
        ctcae_version="5.0",
    )


def old_infusion(subject_id: str, infused_at: datetime) -> InfusionRecorded:
    return InfusionRecorded(
        subject_id=subject_id, lot_id="LOT-9002-A", cohort_id="DL1-IP", dose_level="DL1",
        target_cells_per_kg=1e6, weight_kg=70, cells_infused=7e7, received_cells_per_kg=1e6,
        counted_dose_level="DL1", route="intraperitoneal", infused_at=infused_at,
    )


def _no_browser(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the dashboard test needs a browser under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile; the driver and the browser are the system's."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        _no_browser(
            f"not found or not executable: {', '.join(missing)} (set CHROMIUM/CHROMEDRIVER)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        _no_browser(f"selenium is not installed: {exc}")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1400,1000")
    # An explicit driver path: selenium skips Selenium Manager and downloads nothing.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_dashboard_shows_what_the_projections_say(browser, stack):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    trial = load_trial()
    simulation = Simulation(
        stack.service_url, stack.projections_url, trial=trial, say=lambda _line: None
    )
    simulation.run(plan(PATIENTS, SEED, trial), patients=PATIENTS, seed=SEED)
    # and, after it, a fatal unexpected possibly related AE of a treated subject that the
    # sponsor received ten days ago: its 7-day report (21 CFR 312.32(c)(2)) is overdue, and the
    # safety officer's inbox has something to show
    status, occupancy = call(
        "GET", f"{stack.projections_url}/projections/cohort-occupancy", token=DEMO_READER
    )
    assert status == 200
    treated = occupancy["cohorts"][0]["enrolled"][0]
    late_ae = f"AE-{treated}-99"
    append_upstream(stack.settings, "safety", f"ae-{late_ae}",
                    fatal_ae(late_ae, treated, datetime.now(UTC) - timedelta(days=10)),
                    "investigator")

    def safety_lists_it() -> bool:
        status, doc = call(
            "GET", f"{stack.projections_url}/projections/safety?limit=1000", token=DEMO_READER
        )
        return status == 200 and any(a["ae_id"] == late_ae for a in doc["adverse_events"]["list"])

    eventually(safety_lists_it)
    # and an infusion 40 days ago whose DLT evaluation was never recorded: its 28-day window
    # (the trial file's) ended 12 days ago and is still open on the board
    long_ago = datetime.now(UTC) - timedelta(days=40)
    append_upstream(stack.settings, "dosing", "infusion-MSK-9002",
                    old_infusion("MSK-9002", long_ago), "investigator")

    def window_shown() -> bool:
        status, doc = call(
            "GET", f"{stack.projections_url}/projections/safety?limit=1", token=DEMO_READER
        )
        return status == 200 and any(
            w["subject_id"] == "MSK-9002" for w in doc["open_dlt_windows"]
        )

    eventually(window_shown)
    view = WorkerView(stack.projections_url, trial)
    cohorts, escalation, lots, safety = (
        view.document(name, simulation.positions)
        for name in ("cohort-occupancy", "dose-escalation", "manufacturing-pipeline", "safety")
    )

    def text(testid: str) -> str:
        # read in one script call: the page re-renders its rows every 2 s
        found = browser.execute_script(
            'const n = document.querySelector(`[data-testid="${arguments[0]}"]`);'
            "return n === null ? null : n.textContent.trim();",
            testid,
        )
        assert found is not None, f"no element with data-testid={testid}"
        return found

    def rows(testid: str) -> int:
        return browser.execute_script(
            'return document.querySelectorAll(`[data-testid="${arguments[0]}"] tr`).length;',
            testid,
        )

    # Given no token, the page shows nothing and asks for one
    browser.get(f"{stack.projections_url}/")
    WebDriverWait(browser, 30).until(lambda _d: "enter a bearer token" in text("error"))
    assert text("updated") == "never" and rows("cohort-rows") == 0
    # When a wrong token is typed into the field, the page says it was refused
    browser.find_element(By.CSS_SELECTOR, '[data-testid="token"]').send_keys("demo-courier\n")
    WebDriverWait(browser, 30).until(lambda _d: "refused (HTTP 401)" in text("error"))
    assert text("updated") == "never"
    # When the auditor's token is handed over in the fragment, the page keeps it for the tab
    # only, takes it out of the address bar, and shows the trial
    browser.get(f"{stack.projections_url}/#token={DEMO_READER}")
    WebDriverWait(browser, 30).until(lambda _d: text("updated") != "never")
    assert text("error") == ""
    assert "token" not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('trialops.token')") == DEMO_READER

    # cohorts: taken and free per cohort
    assert rows("cohort-rows") == len(cohorts["cohorts"]) >= 2
    for c in cohorts["cohorts"]:
        assert (text(f"taken-{c['cohort_id']}"), text(f"free-{c['cohort_id']}")) == (
            str(c["slots_taken"]),
            str(c["slots_free"]),
        ), c["cohort_id"]
    # dose escalation: DLTs per level and the recommendation
    assert rows("level-rows") == len(escalation["levels"])
    for level in escalation["levels"]:
        assert text(f"dlts-{level['dose_level']}") == str(level["dlts"]), level["dose_level"]
    rec = escalation["recommendation"]
    # "stay at DL2", "escalate to DL3", "de-escalate to DL1": the level stayed at, or moved to
    preposition = " at " if rec["decision"] == "stay" else " to "
    shown = rec["decision"] + (preposition + rec["next_level"] if rec["next_level"] else "")
    shown += f" (MTD {rec['mtd_level']})" if rec["mtd_level"] else ""
    assert text("recommendation-decision") == shown
    assert " to DL" not in shown or rec["decision"] != "stay"
    assert rec["recommendation_id"] in text("recommendation")
    # 3+3 aims at no DLT rate (DOMAIN.md section 4): no target line
    assert escalation["design"]["design"] == "3+3"
    assert browser.execute_script(
        "return document.querySelector('[data-testid=\"target-line\"]') === null;"
    )
    # manufacturing and safety
    assert text("lot-count") == str(len(lots["lots"]))
    assert rows("lot-rows") == len(lots["lots"])
    assert text("ae-total") == str(safety["adverse_events"]["total"])
    assert text("ae-serious") == str(safety["adverse_events"]["serious"])
    assert text("overdue-reports") == str(safety["overdue_reports"])
    assert rows("report-rows") == len(safety["expedited_reports"]) >= 1
    assert safety["overdue_reports"] >= 1
    # subjects in screening
    # (the whole list, as the page follows its cursors: the view pages it, decision 85)
    screening = orjson.loads(whole_view(
        f"{stack.projections_url}/projections/cohort-occupancy", token=DEMO_READER))["screening"]
    assert text("screening-count") == str(len(screening))
    for s in screening:
        assert text(f"screening-{s['subject_id']}").startswith(s["subject_id"] + s["status"])
    # lots: the stage and the release status, the out-of-specification lot's failed tests
    for lot in lots["lots"]:
        assert text(f"stage-{lot['lot_id']}") == lot["stage"], lot["lot_id"]
        assert text(f"coi-{lot['lot_id']}").startswith(lot["chain_of_identity"]["status"])
        if lot["stage"] == "failed":
            assert not text(f"coi-{lot['lot_id']}").startswith("in progress")
    (oos,) = [lot for lot in lots["lots"] if lot["out_of_specification"]]
    release = text(f"release-{oos['lot_id']}")
    assert f"out of specification ({', '.join(oos['out_of_specification'])})" in release
    assert ("exceptional release" in release) == oos["exceptional_release"]
    # open DLT windows: the last day, and "over" rather than "0 days left" once it has passed
    (old_window,) = [w for w in safety["open_dlt_windows"] if w["subject_id"] == "MSK-9002"]
    assert old_window["window_over"]
    assert text("window-MSK-9002") == "over, not yet evaluated"
    for w in safety["open_dlt_windows"]:
        shown_window = text(f"window-{w['subject_id']}")
        assert shown_window == (
            "over, not yet evaluated" if w["window_over"] else f"open, {w['days_left']} d left"
        )
    # the AE list, every page of it
    status, all_aes = call(
        "GET", f"{stack.projections_url}/projections/safety?limit=1000", token=DEMO_READER
    )
    assert status == 200 and all_aes["next_cursor"] is None
    listed = all_aes["adverse_events"]["list"]
    assert text("ae-count") == str(len(listed)) and rows("ae-rows") == len(listed) >= 1
    for ae in listed:
        cells = browser.execute_script(
            "return [...document.querySelectorAll("
            "`[data-testid=\"ae-${arguments[0]}\"] td`)].map((c) => c.textContent);",
            ae["ae_id"],
        )
        assert cells[:4] == [ae["ae_id"], ae["subject_id"], ae["term"], str(ae["grade"])]
        assert cells[4] == (
            "serious: " + ", ".join(ae["serious_criteria"])
            if ae["serious_criteria"]
            else "not serious"
        )
        assert cells[5].startswith(ae["attribution"])
        if ae["dlt_status"] == "awaiting-rule" and ae.get("dlt_rule_verdict_after"):
            assert cells[6] == f"awaiting-rule until {ae['dlt_rule_verdict_after']}"
        else:
            assert cells[6] == (ae["dlt_status"] or "not a candidate")
        for r in ae["reports"]:
            assert f"{r['report']} due {r['due_on']}: {r['status']}" in cells[7]

    # the inbox panel for the safety officer shows the items of the inbox view
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.CSS_SELECTOR, '[data-testid="inbox-role"]')).select_by_value(
        "safety_officer"
    )
    status, inbox = call(
        "GET", f"{stack.projections_url}/projections/inbox?role=safety_officer",
        token=DEMO_READER,
    )
    assert status == 200, inbox
    assert inbox["role"] == "safety_officer"
    assert inbox["overdue"] >= 1
    assert any(i["subject"] == late_ae and i["overdue"] for i in inbox["items"])

    def inbox_shown() -> list[list[str]]:
        return browser.execute_script(
            "return [...document.querySelectorAll('[data-testid^=\"inbox-item-\"]')]"
            ".map((r) => [...r.querySelectorAll('td')].map((c) => c.textContent));"
        )

    expected_inbox = [
        [i["kind"], i["subject"], i["due"] or "-", "overdue" if i["overdue"] else "pending"]
        for i in inbox["items"]
    ]
    WebDriverWait(browser, 10).until(
        lambda _d: [row[:4] for row in inbox_shown()] == expected_inbox
    )
    assert text("inbox-overdue") == str(inbox["overdue"])
    assert all("safety_officer" in row[4] for row in inbox_shown())

    # a click on the out-of-specification lot's subject shows their timeline
    subject = oos["subject_id"]
    query = urllib.parse.urlencode({"subject_id": subject})
    status, timeline = call(
        "GET", f"{stack.projections_url}/projections/patient-timeline?{query}", token=DEMO_READER
    )
    assert status == 200
    entries = timeline["subjects"][0]["entries"]
    link = browser.find_element(
        By.CSS_SELECTOR, f'[data-testid="lot-{oos["lot_id"]}"] a.subject'
    )
    link.click()
    WebDriverWait(browser, 10).until(lambda _d: text("timeline-subject") == subject)
    WebDriverWait(browser, 10).until(lambda _d: rows("timeline-rows") == len(entries))
    assert rows("timeline-rows") == len(entries) > 40
    assert browser.current_url.endswith("#" + query.replace("subject_id", "subject"))

    def timeline_cells() -> list[list[str]]:
        return browser.execute_script(
            "return [...document.querySelectorAll('[data-testid=\"timeline-rows\"] tr')]"
            ".map((r) => [...r.querySelectorAll('td')].map((c) => c.textContent));"
        )

    shown_rows = timeline_cells()
    assert shown_rows[0][2] == entries[0]["event_type"]
    # each row says what its event says: the QC tests with their results, the doses
    assert [row[3] for row in shown_rows] == [e["summary"] or "" for e in entries]
    qc_rows = [row[3] for row in shown_rows if row[2] == "QcResultRecorded"]
    qc_tests = [e["details"]["test"] for e in entries if e["event_type"] == "QcResultRecorded"]
    assert qc_rows and len(qc_rows) == len(qc_tests)
    assert all(row.startswith(test) for row, test in zip(qc_rows, qc_tests, strict=True))
    assert len(set(qc_rows)) > 1  # not nine identical rows

    # a link to a patient: the address opens that subject's timeline
    other = next(s for c in cohorts["cohorts"] for s in c["enrolled"] if s != subject)
    browser.get(f"{stack.projections_url}/#subject={other}")
    WebDriverWait(browser, 30).until(lambda _d: text("timeline-subject") == other)

    # the whole page, from its header down: a window as tall as the page, scrolled to the top
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1400, int(height) + 200)
    browser.execute_script("window.scrollTo(0, 0);")
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
