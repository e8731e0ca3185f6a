"""`dlv ui` in a real browser: headless Chromium driven by Selenium (chromium + chromium-driver from the
system's package manager; .ci/run installs them). Skipped, with the reason, where they are missing.

DLV_UI_SCREENSHOTS=docs/img python -m pytest tests/test_ui_browser.py  writes the screenshots of docs/UI.md.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the web UI needs the 'ui' extra (aiohttp, jinja2)")
pytest.importorskip("selenium", reason="browser tests need selenium (the 'test' extra)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

import modelhub  # noqa: E402

from ui_fixture import build_ui_repo  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> tuple[str, str]:
    binary = os.environ.get("DLV_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = os.environ.get("DLV_CHROMEDRIVER") or shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("no headless browser: install Chromium and its driver (Debian/Ubuntu: "
                    "apt-get install chromium chromium-driver), or set DLV_CHROMIUM and DLV_CHROMEDRIVER")
    return binary, driver


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = _browser()
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.binary_location = binary
    # the driver named explicitly: Selenium Manager would otherwise try to download one
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`dlv ui --port 0` serving the fixture repository; yields its base URL."""
    root = tmp_path_factory.mktemp("browser") / "repo"
    runs = build_ui_repo(root)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(modelhub.__file__).parents[1]),
                                                                     os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "modelhub", "ui", "--repo", str(root), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert match, f"dlv ui did not start: {line}{proc.stderr.read() if proc.poll() is not None else ''}"
        yield match.group(1), runs
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _shot(driver, name: str) -> None:
    folder = os.environ.get("DLV_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"ui-{name}.png"))


def _wait_plots(driver, n: int) -> None:
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.plots") == str(n))


def _painted_pixels(driver) -> list[int]:
    """For every plot canvas, how many pixels uPlot painted (not transparent)."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('.uplot canvas')).map((c) => {
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
            return n;
        });""")


def _refs(driver) -> list[str]:
    return [r.get_attribute("data-ref") for r in driver.find_elements(By.CSS_SELECTOR, "#versions tbody tr")]


def test_versions_table_sorts_and_filters_with_dql(browser, site):
    base, _ = site
    browser.get(base + "/")
    assert sorted(_refs(browser)) == ["lenet-small@1", "lenet-small@2", "lenet@1", "lenet@2"]
    _shot(browser, "versions")
    loss = next(th for th in browser.find_elements(By.CSS_SELECTOR, "#versions th") if th.text.strip() == "loss")
    loss.click()   # ascending; versions without the metric last
    assert _refs(browser) == ["lenet@2", "lenet@1", "lenet-small@2", "lenet-small@1"]
    loss.click()
    assert _refs(browser)[:3] == ["lenet-small@2", "lenet@1", "lenet@2"]

    box = browser.find_element(By.ID, "q")
    box.send_keys('select m where m.metrics["acc"] > 0.82')
    browser.find_element(By.CSS_SELECTOR, ".dql button").click()
    WebDriverWait(browser, 30).until(EC.url_contains("q="))
    assert _refs(browser) == ["lenet@2"]

    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("select m wher m.name == 1")
    browser.find_element(By.CSS_SELECTOR, ".dql button").click()
    error = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.ID, "dql-error")))
    assert "line 1, column 10" in error.text and "^" in error.text
    _shot(browser, "dql-error")


def test_selected_versions_plot_overlaid_curves(browser, site):
    base, _ = site
    browser.get(base + "/")
    for ref in ("lenet@1", "lenet@2"):
        browser.find_element(By.CSS_SELECTOR, f'input.pick[value="{ref}"]').click()
    assert browser.find_element(By.ID, "diff").is_enabled()
    browser.find_element(By.ID, "compare").click()
    WebDriverWait(browser, 30).until(EC.url_contains("/compare"))
    _wait_plots(browser, 2)
    assert [f.get_attribute("data-metric") for f in browser.find_elements(By.CSS_SELECTOR, "figure.chart")] == \
        ["acc", "loss"]
    legend = browser.find_element(By.CSS_SELECTOR, "figure.chart .u-legend").text
    assert "lenet@1" in legend and "lenet@2" in legend
    painted = _painted_pixels(browser)
    assert len(painted) >= 2 and all(n > 500 for n in painted), painted
    _shot(browser, "compare")


def test_two_selected_versions_diff(browser, site):
    base, _ = site
    browser.get(base + "/")
    for ref in ("lenet@1", "lenet@2"):
        browser.find_element(By.CSS_SELECTOR, f'input.pick[value="{ref}"]').click()
    browser.find_element(By.ID, "diff").click()
    WebDriverWait(browser, 30).until(EC.url_contains("/diff"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#diff-tensors tbody tr")
    assert [r.text.split()[:2] for r in rows] == [["fc2.weight", "changed"]]
    _shot(browser, "diff")


def test_version_page_shows_its_data_and_curves(browser, site):
    base, runs = site
    browser.get(base + "/version/lenet@2")
    _wait_plots(browser, 2)
    assert all(n > 500 for n in _painted_pixels(browser))
    layers = browser.find_element(By.ID, "layers").text
    assert "conv1" in layers and "Conv2d" in layers and "Linear" in layers
    assert "finished" in browser.find_element(By.ID, "run").text
    assert "lr" in browser.find_element(By.ID, "hparams").text
    assert "run.json" in browser.find_element(By.ID, "files").text
    _shot(browser, "version")


def test_lineage_graph_links_to_versions(browser, site):
    base, _ = site
    browser.get(base + "/lineage/lenet")
    nodes = browser.find_elements(By.CSS_SELECTOR, "svg.lineage g.node")
    assert len(nodes) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.lineage path.edge")) == 2
    _shot(browser, "lineage")
    browser.find_element(By.CSS_SELECTOR, "svg.lineage g.node.ok").click()
    WebDriverWait(browser, 30).until(EC.url_contains("/version/lenet@2"))


def test_runs_and_archive_pages(browser, site):
    base, runs = site
    browser.get(base + "/runs")
    states = {r.get_attribute("data-run"): r.find_element(By.CSS_SELECTOR, ".state").text
              for r in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")}
    assert states == {runs["finished"]: "finished", runs["failed"]: "failed", runs["unfinished"]: "unfinished"}
    _shot(browser, "runs")
    browser.get(base + f"/run/{runs['failed']}")
    _wait_plots(browser, 1)
    assert "ValueError: NaN loss at step 1" in browser.find_element(By.TAG_NAME, "main").text
    browser.get(base + "/stats")
    assert re.search(r"versions\s+4 \(", browser.find_element(By.ID, "archive").text)
    _shot(browser, "archive")
