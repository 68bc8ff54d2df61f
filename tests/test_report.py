"""The HTML report: its data against the side files, and the page itself in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import hiercompile
from hiercompile._cli import main
from hiercompile._tools._report import report_data

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
LAYER = "/BertModel/BertEncoder/BertLayer.0"


@pytest.fixture(scope="module")
def report_dir(bert_export, tmp_path_factory):
    """BERT tiny's export directory with verify.json, profile.json and report.html."""
    model, inputs, _, out = bert_export
    directory = tmp_path_factory.mktemp("report") / "export"
    shutil.copytree(out, directory)
    hiercompile.verify(model, (), inputs, directory / "model.onnx", output=directory)
    assert main(["profile", str(directory / "model.onnx"), "--runs", "3"]) == 0
    hiercompile.report(directory)
    return directory


def test_report_data_matches_the_side_files(report_dir):
    data = report_data(report_dir)
    dags = json.loads((report_dir / "module_dags.json").read_text())
    operations = json.loads((report_dir / "operations.json").read_text())
    assert set(data["dags"]) == set(dags) == set(data["hierarchy"])
    for tag, dag in dags.items():
        assert [data["ops"][k][0] for k in data["dags"][tag]["nodes"]] == dag["nodes"]
        assert [[data["ops"][a][0], data["ops"][b][0]] for a, b in data["dags"][tag]["edges"]] == dag["edges"]
    for name, op_type, tag in data["ops"]:
        assert operations[name]["op_type"] == op_type and operations[name]["tags"][0] == tag
    assert data["verify"][LAYER]["status"] == "matched"
    assert data["profile"]["/BertModel"]["subtree_ms"] > 0


def test_report_needs_an_export_directory(tmp_path):
    with pytest.raises(hiercompile.HiercompileError, match=r"hierarchy\.json"):
        hiercompile.report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def _browser():
    """Debian's Chromium driven by Playwright; never a browser download."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium (apt) and playwright (pip) for the report's browser test")
        pytest.skip("needs /usr/bin/chromium and the playwright package")
    return sync_playwright


def test_report_in_a_real_browser(report_dir):
    sync_playwright = _browser()
    dags = json.loads((report_dir / "module_dags.json").read_text())
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        requests: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto((report_dir / "report.html").as_uri())
        layer = page.locator(f"li[data-tag='{LAYER}']")
        assert not layer.is_visible()  # collapsed under BertEncoder
        page.click("li[data-tag='/BertModel/BertEncoder'] > .row > .toggle")
        assert layer.is_visible()
        page.click(f"li[data-tag='{LAYER}'] > .row > .toggle")
        assert page.locator(f"li[data-tag='{LAYER}/BertOutput']").is_visible()
        page.click(f"li[data-tag='{LAYER}'] > .row > .module")
        assert page.inner_text("#title") == LAYER
        count = len(dags[LAYER]["nodes"])
        assert page.inner_text("#dag-count").startswith(f"{count} ops")
        assert page.locator("svg#dag g.op").count() == count
        assert "matched" in layer.inner_text() and " ms (" in layer.inner_text()  # verify and profile shown
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"))
        page.fill("#search", "pooler")
        page.keyboard.press("Enter")
        assert page.inner_text("#title") == "/BertModel/BertPooler"
        assert page.locator("li.match").count() == 1
        assert not page.locator(f"li[data-tag='{LAYER}']").is_visible()  # filtered out
        browser.close()
    assert errors == []
    assert all(url.startswith("file://") for url in requests)  # offline: nothing fetched
