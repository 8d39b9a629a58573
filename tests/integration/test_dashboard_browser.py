"""The operations dashboard in a real browser: after a short simulated trial on the real broker,
headless Chromium (driven by selenium with the system's chromedriver; nothing is downloaded)
opens the worker's page (with no token it shows nothing and asks for one; the auditor's token
handed over as ``/#token=...`` is kept in sessionStorage and taken out of the address bar),
and every number it shows is compared with the projections' JSON
fetched by the test: cohorts taken/free, DLTs per level, the recommendation, lots, AEs, overdue
reports, and a subject's timeline after a click. A screenshot goes to
test-artifacts/dashboard.png.

Without Chromium or chromedriver the test is skipped, except under CI (``CI`` set), where it
fails: set CHROMIUM and CHROMEDRIVER to their paths if they are not in /usr/bin."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import pytest

from clients.http import DEMO_READER, call
from clients.simulate import Simulation, WorkerView, plan
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
    shown = rec["decision"] + (f" to {rec['next_level']}" if rec["next_level"] else "")
    shown += f" (MTD {rec['mtd_level']})" if rec["mtd_level"] else ""
    assert text("recommendation-decision") == shown
    assert rec["recommendation_id"] in text("recommendation")
    # manufacturing and safety
    assert text("lot-count") == str(len(lots["lots"]))
    assert rows("lot-rows") == len(lots["lots"])
    assert text("ae-total") == str(safety["adverse_events"]["total"])
    assert text("ae-serious") == str(safety["adverse_events"]["serious"])
    assert text("overdue-reports") == str(safety["overdue_reports"])
    assert rows("report-rows") == len(safety["expedited_reports"]) >= 1

    # a click on the out-of-specification lot's subject shows their timeline
    (oos,) = [lot for lot in lots["lots"] if lot["out_of_specification"]]
    subject = oos["subject_id"]
    query = urllib.parse.urlencode({"subject_id": subject})
    status, timeline = call(
        "GET", f"{stack.projections_url}/projections/patient-timeline?{query}", token=DEMO_READER
    )
    assert status == 200
    entries = timeline["subjects"][0]["entries"]
    button = browser.find_element(
        By.CSS_SELECTOR, f'[data-testid="lot-{oos["lot_id"]}"] button.subject'
    )
    button.click()
    WebDriverWait(browser, 10).until(lambda _d: text("timeline-subject") == subject)
    WebDriverWait(browser, 10).until(lambda _d: rows("timeline-rows") == len(entries))
    assert rows("timeline-rows") == len(entries) > 40
    first = browser.execute_script(
        "return document.querySelector('[data-testid=\"timeline-rows\"] tr td:nth-child(3)')"
        ".textContent;"
    )
    assert first == entries[0]["event_type"]

    # the whole page, from its header down: a window as tall as the page, scrolled to the top
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1400, int(height) + 200)
    browser.execute_script("window.scrollTo(0, 0);")
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
