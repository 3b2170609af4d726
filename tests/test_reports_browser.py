"""index.html in a real headless Chromium: the grid renders, a filter works, a cell opens with its message.

Needs Debian's chromium + chromium-driver and selenium (scripts/install_browser.sh installs them);
skipped, saying so, where they are missing. Screenshots go to artifacts/ for people to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reports.build import build_report
from reports.cli import write_outputs

FIXTURES = Path(__file__).parent / "fixtures" / "results"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SCRIPT = "<script>window.__xss=1</script>"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1100",
)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: run scripts/install_browser.sh")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium or chromedriver not on PATH: run scripts/install_browser.sh (apt chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The nightly fixtures with every bad-input case, against the night before, open in Chromium."""
    out = tmp_path_factory.mktemp("report")
    build_report([FIXTURES / "baseline"]).write(out / "baseline.json")
    report = build_report([FIXTURES / "nightly", FIXTURES / "bad", FIXTURES / "rerun"], baseline=out / "baseline.json")
    write_outputs(report, out)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path keeps Selenium Manager from trying to download one (we are offline).
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get((out / "index.html").as_uri())
        yield driver
    finally:
        driver.quit()


def visible_rows(driver):
    return [row for row in driver.find_elements(By.CSS_SELECTOR, "#grid tr.row") if row.is_displayed()]


def test_the_grid_renders(page):
    headers = [th.text.split("\n")[0] for th in page.find_elements(By.CSS_SELECTOR, "#grid thead th[data-col]")]
    assert headers == ["4.49.0", "4.52.4", "4.57.6", "5.0.0"]
    assert len(visible_rows(page)) == 10
    assert page.find_element(By.ID, "shown").text == "10 of 10 rows"
    regressions = page.find_elements(By.CSS_SELECTOR, "#regressions tbody tr")
    assert len(regressions) == 4 and page.find_element(By.ID, "problems").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    width, height = page.execute_script("return [window.outerWidth, document.documentElement.scrollHeight]")
    page.set_window_size(width, height + 200)  # the whole page in one picture
    page.save_screenshot(str(ARTIFACTS / "report-page.png"))
    page.set_window_size(width, 1100)


def test_filters_hide_rows_and_columns(page):
    Select(page.find_element(By.ID, "f-model")).select_by_visible_text("qwen2_5_vl")
    rows = visible_rows(page)
    assert {r.get_attribute("data-model") for r in rows} == {"qwen2_5_vl"} and len(rows) == 4
    Select(page.find_element(By.ID, "f-status")).select_by_value("regression")
    assert [(r.get_attribute("data-strategy"), r.get_attribute("data-profile")) for r in visible_rows(page)] == [
        ("auto_causal_lm", "default"),
        ("smart", "default"),
    ]
    Select(page.find_element(By.ID, "f-release")).select_by_value("5.0.0")
    shown = [th.text for th in page.find_elements(By.CSS_SELECTOR, "#grid thead th[data-col]") if th.is_displayed()]
    assert shown == ["5.0.0\nlatest"]
    assert [r.get_attribute("data-strategy") for r in visible_rows(page)] == ["auto_causal_lm"]
    page.find_element(By.ID, "f-reset").click()
    assert len(visible_rows(page)) == 10


def test_opening_a_cell_shows_its_probes_and_message_as_text(page):
    button = page.find_element(
        By.CSS_SELECTOR,
        'tr.row[data-model="qwen2_5_vl"][data-strategy="smart"][data-profile="default"] td[data-col="4.49.0"] button',
    )
    assert button.text == "‼ error*"
    button.click()
    dialog = page.find_element(By.ID, "cell-dialog")
    assert dialog.get_attribute("open") is not None and dialog.is_displayed()
    text = dialog.text
    assert "qwen2_5_vl · smart · default — transformers 4.49.0" in text
    assert "RuntimeError" in text and "Qwen2_5_VLForConditionalGeneration" in text and "mrope position ids" in text
    assert f'shape mismatch in rope index: {SCRIPT}<img src=x onerror="window.__xss=2"> & "quotes"' in text
    assert page.execute_script("return window.__xss") is None
    assert len(page.find_elements(By.CSS_SELECTOR, "#cell-dialog script, #cell-dialog img")) == 0
    page.save_screenshot(str(ARTIFACTS / "report-cell.png"))
    page.find_element(By.ID, "dialog-close").click()
    assert dialog.get_attribute("open") is None


def test_no_script_errors(page):
    severe = [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
