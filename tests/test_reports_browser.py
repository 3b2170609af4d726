"""index.html in a real headless Chromium: the first screen is there at once, a model's cells load
when it is opened (from cells/<model>.js beside the page, also from disk), a filter works, a cell
opens with its message.

Needs Debian's chromium + chromium-driver and selenium (scripts/install_browser.sh installs them);
skipped, saying so, where they are missing. Screenshots go to artifacts/ for people to look at.
"""

from __future__ import annotations

import json
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
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium or chromedriver not on PATH: run scripts/install_browser.sh (apt chromium chromium-driver)",
)


def chromium():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path keeps Selenium Manager from trying to download one (we are offline).
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The nightly fixtures with every bad-input case, against the night before, open in Chromium."""
    out = tmp_path_factory.mktemp("report")
    build_report([FIXTURES / "baseline"]).write(out / "baseline.json")
    report = build_report([FIXTURES / "nightly", FIXTURES / "bad", FIXTURES / "rerun"], baseline=out / "baseline.json")
    write_outputs(report, out)
    driver = chromium()
    try:
        driver.get((out / "index.html").as_uri())
        yield driver
    finally:
        driver.quit()


def visible_rows(driver):
    return [row for row in driver.find_elements(By.CSS_SELECTOR, "#grid tr.row") if row.is_displayed()]


def wait_for(driver, condition, seconds=20):
    """What the page does after loading a model's cells (a script, so asynchronous)."""
    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def open_every_model(driver):
    driver.find_element(By.ID, "f-open").click()
    wait_for(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "#grid tbody.group.folded"))


def test_the_grid_renders(page):
    headers = [th.text.split("\n")[0] for th in page.find_elements(By.CSS_SELECTOR, "#grid thead th[data-col]")]
    assert headers == ["4.49.0", "4.52.4", "4.57.6", "5.0.0"]
    assert visible_rows(page) == [] and page.find_element(By.ID, "shown").text == "10 of 10 rows", "folded until opened"
    open_every_model(page)
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


# --- a night with 100+ failing cells: what a person sees first -------------------------------------

BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])
VLMS = ("gemma3", "llava", "paligemma", "qwen2_5_vl", "qwen2_vl", "smolvlm")
PROBES = ("load", "forward", "surface", "generate", "grpo_step")
RELEASES = ("4.52.4", "4.57.6", "5.0.0", "5.24.0")
UNRECOGNIZED = ("Unrecognized configuration class <class 'transformers.models.{m}.configuration_{m}.{c}Config'> for "
                "this kind of AutoModel: AutoModelForCausalLM.\nModel type should be one of ApertusConfig, ArceeConfig")
MM_TOKENS = ("forward with only ['attention_mask', 'image_grid_thw', 'input_ids', 'pixel_values'] raised ValueError: "
             "Multimodal data was passed (via `image_grid_thw` or `video_grid_thw`) but `mm_token_type_ids` is missing.")
NONE_SUBSCRIPT = "{c}ForConditionalGeneration loaded, but a text forward raised TypeError: 'NoneType' object is not subscriptable"


def many_failures(path: Path) -> int:
    """Messages of the real matrix, no expectations: the VLM-R1 break (6 models, every probe, 4
    releases), a forward without mm_token_type_ids (5.24.0) and a TypeError from two classes (5.0.0);
    explicit_class passes elsewhere. Returns the number of failing cells."""
    lines = []

    def add(model, strategy, probe, release, status="pass", error_type=None, message=""):
        lines.append({**BASE, "env": f"tf{release}", "transformers": release, "model": model, "hub_id": f"org/{model}",
                      "modality": "image-text", "strategy": strategy, "probe": probe,
                      "cell_id": f"{model}-{strategy}-default-{probe}", "status": status,
                      "error_type": error_type, "message": message})

    for release in RELEASES:
        for model in VLMS:
            cls = model.title().replace("_", "")
            for probe in PROBES:
                load = UNRECOGNIZED.format(m=model, c=cls)
                add(model, "auto_causal_lm", probe, release, "fail", "ValueError",
                    load if probe == "load" else "not run, the load failed: " + load)
                if probe == "forward" and release == "5.24.0" and model in ("qwen2_vl", "qwen2_5_vl"):
                    add(model, "explicit_class", probe, release, "fail", "ValueError", MM_TOKENS)
                elif probe == "forward" and release == "5.0.0" and model in ("qwen2_vl", "qwen2_5_vl"):
                    add(model, "explicit_class", probe, release, "fail", "TypeError", NONE_SUBSCRIPT.format(c=cls))
                else:
                    add(model, "explicit_class", probe, release)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return sum(line["status"] == "fail" for line in lines)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    out = tmp_path_factory.mktemp("crowded")
    failing = many_failures(out / "results.jsonl")
    write_outputs(build_report([out / "results.jsonl"]), out)
    driver = chromium()
    try:
        driver.get((out / "index.html").as_uri())
        yield driver, failing, out / "index.html"
    finally:
        driver.quit()


def on_first_screen(driver, element) -> bool:
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return r.height > 0 && r.top < window.innerHeight;", element)


def test_the_first_screen_shows_causes_not_a_wall_of_rows(crowded):
    page, failing, _ = crowded
    assert failing >= 100
    assert page.find_element(By.ID, "headline").text.startswith(f"3 distinct breaks ({failing} cells)")
    causes = page.find_elements(By.CSS_SELECTOR, "#kind-regression li.cause")
    assert len(causes) == 3 and all(on_first_screen(page, c) for c in causes)
    titles = [c.find_element(By.CSS_SELECTOR, ".title").text for c in causes]
    assert "AutoModelForCausalLM" in titles[0] and "mm_token_type_ids" in " ".join(titles)
    assert "6 models x auto_causal_lm x 5 probes" in causes[0].text and "24 breaks (120 cells)" in causes[0].text
    # no cell-level row on the first screen: the grid is below, every regressed cell is folded
    assert not any(on_first_screen(page, row) for row in page.find_elements(By.CSS_SELECTOR, "#grid tr.row"))
    assert not any(row.is_displayed() for row in page.find_elements(By.CSS_SELECTOR, "#regressions tbody tr"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.save_screenshot(str(ARTIFACTS / "report-first-screen.png"))


def test_a_cause_links_to_its_cells_and_a_cell_back_to_its_cause(crowded):
    page, _, _ = crowded
    cause = page.find_elements(By.CSS_SELECTOR, "#kind-regression li.cause")[1]
    cause.find_element(By.CSS_SELECTOR, "button.show-cells").click()
    rows = wait_for(page, visible_rows)
    assert rows and {r.get_attribute("data-strategy") for r in rows} == {"explicit_class"}
    assert {r.get_attribute("data-model") for r in rows} == {"qwen2_vl", "qwen2_5_vl"}
    row = rows[0]
    failing = [td for td in row.find_elements(By.CSS_SELECTOR, "td.cell") if "dim" not in td.get_attribute("class")]
    assert len(failing) == 1
    failing[0].find_element(By.CSS_SELECTOR, "button.open").click()
    link = page.find_element(By.CSS_SELECTOR, "#cell-dialog a.to-cause")
    link.click()
    assert page.find_element(By.ID, "cell-dialog").get_attribute("open") is None
    assert page.execute_script("return location.hash") == "#" + cause.get_attribute("id")
    page.find_element(By.ID, "f-reset").click()


def test_a_text_filter_and_folding(crowded):
    page, _, _ = crowded
    open_every_model(page)
    box = page.find_element(By.ID, "f-text")
    box.send_keys("mm_token_type_ids")
    assert {(r.get_attribute("data-model"), r.get_attribute("data-strategy")) for r in visible_rows(page)} == {
        ("qwen2_vl", "explicit_class"), ("qwen2_5_vl", "explicit_class")}
    page.find_element(By.ID, "f-reset").click()
    assert len(visible_rows(page)) == 12
    group = page.find_element(By.ID, "llava")
    group.find_element(By.CSS_SELECTOR, "button.fold").click()
    assert len(visible_rows(page)) == 10
    group.find_element(By.CSS_SELECTOR, "button.fold").click()
    assert len(visible_rows(page)) == 12


def test_deep_links_hold_a_row_and_a_cell(crowded):
    page, _, index = crowded
    page.get(index.as_uri() + "#llava/explicit_class/default")  # a fresh page: llava is folded, not loaded
    row = wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.row.target"))[0]
    assert row.get_attribute("id") == "llava/explicit_class/default"
    assert row.is_displayed() and on_first_screen(page, row)
    page.get(index.as_uri() + "#qwen2_vl/explicit_class/default/5.24.0")
    dialog = page.find_element(By.ID, "cell-dialog")
    wait_for(page, lambda d: dialog.get_attribute("open") is not None)
    assert "mm_token_type_ids" in dialog.text
    assert "qwen2_vl · explicit_class · default — transformers 5.24.0" in dialog.text


# --- a report the size of the default run: the page is light, its first screen comes at once -------

MODELS = 17
"""As many models as the default matrix, each with 6 routes x 3 profiles x 5 probes in 6 releases."""


def large_results(path: Path) -> int:
    lines = []
    for release in ("4.49.0", "4.51.3", "4.52.4", "4.57.6", "5.0.0", "5.24.0"):
        for m in range(MODELS):
            for strategy in ("auto_causal_lm", "auto_model", "auto_image_text_to_text", "auto_vision2seq", "explicit_class", "smart"):
                for profile in ("default", "trainer", "lora"):
                    for probe in PROBES:
                        failing = strategy in ("auto_causal_lm", "auto_model")
                        lines.append({**BASE, "env": f"tf{release}", "transformers": release, "model": f"model{m:02d}",
                                      "hub_id": f"org/model{m:02d}", "strategy": strategy, "load_kwargs": profile,
                                      "probe": probe, "cell_id": f"model{m:02d}-{strategy}-{profile}-{probe}",
                                      "status": "fail" if failing else "pass", "error_type": "ValueError" if failing else None,
                                      "message": UNRECOGNIZED.format(m=f"model{m:02d}", c="Model") if failing else "",
                                      "details": {"parameters": 123456, "logits_max_abs_diff": 0.0, "note": "x" * 200}})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return len(lines)


def test_a_large_report_opens_at_once_and_loads_a_model_when_asked(tmp_path):
    cells = large_results(tmp_path / "results.jsonl")
    out = tmp_path / "site"
    write_outputs(build_report([tmp_path / "results.jsonl"]), out)
    page_bytes = (out / "index.html").stat().st_size
    cell_bytes = sum(p.stat().st_size for p in (out / "cells").glob("*.js"))
    assert len(list((out / "cells").glob("*.js"))) == MODELS
    assert page_bytes < 2_000_000 and cell_bytes > 5 * page_bytes, (page_bytes, cell_bytes)
    driver = chromium()
    try:
        driver.get((out / "index.html").as_uri())  # from disk: file:// forbids fetch(), the cells load by <script>
        assert driver.find_element(By.ID, "headline").is_displayed()
        timing = driver.execute_script(
            "const nav = performance.getEntriesByType('navigation')[0];"
            "const paint = performance.getEntriesByName('first-contentful-paint')[0];"
            "return {dom_content_loaded_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd,"
            " first_contentful_paint_ms: paint ? paint.startTime : null,"
            " cell_files_loaded: document.querySelectorAll('script[src]').length};")
        assert timing["cell_files_loaded"] == 0, "nothing of the grid is loaded before a model is opened"
        group = driver.find_element(By.ID, "model03")
        group.find_element(By.CSS_SELECTOR, "button.fold").click()
        rows = wait_for(driver, lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#model03 tr.row") if r.is_displayed()])
        assert len(rows) == 18
        loaded = driver.execute_script("return Array.from(document.querySelectorAll('script[src]'), s => s.getAttribute('src'))")
        assert loaded == ["cells/model03.js"], "opening one model loads that model's file only"
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
    ARTIFACTS.mkdir(exist_ok=True)
    measured = {**timing, "cells": cells, "index_html_bytes": page_bytes, "cell_files_bytes": cell_bytes}
    (ARTIFACTS / "first-screen.json").write_text(json.dumps(measured, indent=1) + "\n")
    print(f"first screen of a {cells}-cell report: {measured}")


def test_each_model_has_a_routes_by_releases_table_whose_failures_link_to_their_cause(crowded):
    page, _, index = crowded
    page.get(index.as_uri())
    item = next(li for li in page.find_elements(By.CSS_SELECTOR, "#models li") if li.text.startswith("qwen2_vl"))
    item.find_element(By.CSS_SELECTOR, "details.routes summary").click()
    table = item.find_element(By.CSS_SELECTOR, "table.routes")
    rows = {r.find_element(By.TAG_NAME, "th").text: [td.text for td in r.find_elements(By.TAG_NAME, "td")]
            for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert rows == {"auto_causal_lm": ["✗"] * 4, "explicit_class": ["✓", "✓", "✗", "✗"]}
    link = table.find_element(By.CSS_SELECTOR, "tbody tr:nth-child(2) td:nth-of-type(4) a")
    link.click()
    cause = page.find_element(By.CSS_SELECTOR, "li.cause.target")
    assert "mm_token_type_ids" in cause.text and on_first_screen(page, cause)
