"""The overlays in Google's Model Explorer itself: its server with the ONNX adapter loads an
export grouped by module (``namespace=True``) and the node data ``profile`` writes, in headless
Chromium; the page shows the node data and the module groups."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
import torch
from test_report import ARTIFACTS, CHROMIUM, _browser
from test_verify import Stack

import hiercompile
from hiercompile._cli import main

SERVE = """
import sys, model_explorer
config = model_explorer.config()
config.add_model_from_path(sys.argv[1])
config.add_node_data_from_path(sys.argv[2])
model_explorer.visualize_from_config(
    config, port=int(sys.argv[3]), extensions=["model_explorer_onnx"], no_open_in_browser=True
)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_model_explorer_loads_the_node_data_and_groups_the_nodes_by_module(tmp_path, capsys):
    sync_playwright = _browser()
    if importlib.util.find_spec("model_explorer_onnx") is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs the test extra, Model Explorer's ONNX adapter (model-explorer-onnx) among it")
        pytest.skip("needs model-explorer-onnx (the test extra)")
    torch.manual_seed(0)
    hiercompile.export(Stack().eval(), (torch.randn(2, 5, 16),), tmp_path / "out", namespace=True)
    model, data = tmp_path / "out" / "model.onnx", tmp_path / "node_data.json"
    assert main(["profile", str(model), "--runs", "3", "--node-data", str(data)]) == 0
    capsys.readouterr()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(model), str(data), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        started = time.monotonic()
        for line in server.stdout:
            if "Starting Model Explorer server" in line or time.monotonic() - started > 120:
                break
        query = urllib.parse.quote(
            f'{{"models": [{{"url": "{model}"}}], "nodeData": ["{data}"], "nodeDataTargets": [""]}}'
        )
        flags = ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=flags)
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.goto(f"http://localhost:{port}/?data={query}")
            page.wait_for_selector("text=NODE DATA PROVIDERS", timeout=90_000)
            page.wait_for_selector(f"text={data.name}", timeout=30_000)
            page.wait_for_selector("text=Aggregated stats", timeout=30_000)
            page.locator("mat-icon", has_text="unfold_more_double").first.click()  # expand every layer
            time.sleep(2)  # the graph is drawn in WebGL: the groups are not text of the page
            body = page.inner_text("body")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "model_explorer.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    values = [entry["value"] for entry in json.loads(data.read_text())["main_graph"]["results"].values()]
    total = float(re.search(r"\nSum\s+([0-9.e-]+)", body).group(1))
    assert total == pytest.approx(sum(values), rel=1e-6)  # Model Explorer summed our nodes' values
    table = body[body.index("Node data") :]
    shown = [float(v) for v in re.findall(r"\n\d+\s+(?:MatMul|Add|Gelu)\s+([0-9.e-]+)", table)]
    assert sorted(shown) == pytest.approx(sorted(values))  # one row per op node, with its value
    layers = int(re.search(r"layer count\s+(\d+)", body).group(1))
    assert layers >= 4  # the module groups made from each node's namespace (the model, its blocks)
