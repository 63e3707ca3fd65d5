"""The Prefect UI and the dataset report in a real headless Chromium.

A local stack (server, pool, the `demo-hsi` and `hsi-baseline` deployments, a worker) runs
the curate deployment on the tiny scene and the train deployment on the version it
published; then Chromium (driven over the DevTools protocol, tests/browser.py) loads the
flow-run pages, the artifacts and the dataset report and checks what a person would see:
the version id, Table 1, decoded images (``naturalWidth > 0``) and a progress artifact at
100 %. Skipped with a message when no Chromium is installed (``make chromium``).

``EMIN_UI_SCREENSHOTS=docs/img`` also writes the screenshots docs/ui.md is built from.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, find_chromium
from scenes import TinyScene, write_tiny_catalog

pytestmark = pytest.mark.integration

SHOTS = os.environ.get("EMIN_UI_SCREENSHOTS")
ALL_DECODED = "document.images.length >= {n} && Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


def _post(api: str, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        f"{api}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=20) as resp:
        return json.loads(resp.read())


def _get(api: str, path: str) -> Any:
    with urllib.request.urlopen(f"{api}{path}", timeout=20) as resp:
        return json.loads(resp.read())


def _shot(b: Browser, name: str, height: int | None = None) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        if height:
            b.resize(b.width, height)
            time.sleep(1.0)
        b.screenshot(Path(SHOTS) / name)


@pytest.mark.timeout(420)
def test_ui_pages_artifacts_and_report_in_chromium(tiny_scene: TinyScene, tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "Chromium not found: run `make chromium` (apt-get install -y chromium) or set EMIN_CHROMIUM"
        )
    from flows.serve import local_stack
    from pipeline.publishing.versions import read_latest

    catalog = write_tiny_catalog(tmp_path, tiny_scene, {"seed": 1, "max_points_per_class": 300})
    root = tmp_path / "data" / "published"
    watch = ["--watch", "--watch-interval", "1", "--watch-timeout", "150"]
    with local_stack(tmp_path / "home", poll_seconds=1, deployments=["demo-hsi", "hsi-baseline"]) as stack:
        api, ui = stack.api_url, stack.ui_url
        curate = stack.prefect("deployment", "run", "curate-hsi/demo-hsi", "--params",
                               json.dumps({"entry": "tiny", "catalog": str(catalog)}), *watch, timeout=180)  # fmt: skip
        assert curate.returncode == 0 and "Completed" in curate.stdout, curate.stdout[
            -3000:
        ] + stack.log_tail("worker")
        version = read_latest("tiny", root=root)
        assert version is not None
        train_params = {"dataset": "tiny", "root": str(root), "epochs": 3, "batch_size": 64, "device": "cpu",
                        "patience": 0, "out_dir": str(tmp_path / "run")}  # fmt: skip
        train = stack.prefect("deployment", "run", "train-hsi/hsi-baseline", "--params",
                              json.dumps(train_params), *watch, timeout=180)  # fmt: skip
        assert train.returncode == 0 and "Completed" in train.stdout, train.stdout[-3000:] + stack.log_tail(
            "worker"
        )

        runs = {r["name"]: r for r in _post(api, "/flow_runs/filter", {})}
        assert {"curate-tiny", "train-hsi-baseline-tiny"} <= set(runs), sorted(runs)
        arts = {a["key"]: a for a in _post(api, "/artifacts/filter", {}) if a["key"]}
        for key in ("curate-hsi-summary", "curate-hsi-table1", "curate-hsi-progress",
                    "train-hsi-summary", "train-hsi-history", "train-hsi-progress"):  # fmt: skip
            assert key in arts, sorted(arts)
            assert arts[key]["description"], key
        assert arts["train-hsi-progress"]["data"] == 100.0
        assert arts["curate-hsi-summary"]["flow_run_id"] == runs["curate-tiny"]["id"]
        assert version in arts["train-hsi-summary"]["data"]  # the resolved dataset version is recorded
        deployment = _get(api, "/deployments/name/curate-hsi/demo-hsi")

        with Browser(chromium, width=1400, height=1000) as b:
            # the curation's flow-run page, then its summary artifact as the UI renders it
            b.load(
                f"{ui}/runs/flow-run/{runs['curate-tiny']['id']}",
                "document.body.innerText.includes('curate-tiny')",
            )
            b.load(
                f"{ui}/artifacts/artifact/{arts['curate-hsi-summary']['id']}",
                ALL_DECODED.format(n=4),
                timeout=60,
            )
            text = b.text()
            assert version in text and "Table 1" in text and "published" in text
            assert all(w > 0 for w in b.image_widths())
            _shot(b, "curate-summary.png", height=1900)
            b.resize(1400, 1000)
            # the training run: per-epoch log lines, then its summary (learning curves, confusion, errors)
            b.load(f"{ui}/runs/flow-run/{runs['train-hsi-baseline-tiny']['id']}",
                   "document.body.innerText.includes('epoch 3/3')", timeout=60)  # fmt: skip
            _shot(b, "train-run.png", height=1100)
            b.resize(1400, 1000)
            b.load(
                f"{ui}/artifacts/artifact/{arts['train-hsi-summary']['id']}",
                ALL_DECODED.format(n=3),
                timeout=60,
            )
            assert version in b.text()
            _shot(b, "train-summary.png", height=2300)
            b.resize(1400, 1000)
            b.load(f"{ui}/artifacts/artifact/{arts['train-hsi-progress']['id']}",
                   "document.body.innerText.includes('Progress: 100%')")  # fmt: skip
            _shot(b, "train-progress.png", height=600)
            b.resize(1400, 1000)
            # the custom-run form of the curate deployment
            b.load(f"{ui}/deployments/deployment/{deployment['id']}/run",
                   "document.body.innerText.includes('VNIR range (nm)')", timeout=60)  # fmt: skip
            assert "Catalog entry" in b.text() and "Curation parameters" in b.text()
            _shot(b, "curate-form.png", height=2600)
            b.resize(1400, 1000)
            # the dataset report written beside the version
            report = root / "tiny" / version / "report.html"
            b.load(report.as_uri(), ALL_DECODED.format(n=4))
            text = b.text()
            assert version in text and "Table 1" in text
            assert b.eval("document.querySelectorAll('#table1 tbody tr').length") >= 2
            _shot(b, "dataset-report.png", height=int(b.eval("document.documentElement.scrollHeight")))
