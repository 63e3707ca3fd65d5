"""The experiment suite end to end on tiny stores: spec checks, every preset's smoke budget,
report numbers recomputed from results.csv, and resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml

from experiments.runner import run_experiment
from experiments.spec import PRESET_DIR, list_presets, load_spec
from models.synthetic import hsi_to_dataset, seismic_to_dataset, synthetic_hsi, synthetic_seismic
from pipeline.errors import InputError

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exp_stores")
    hsi = root / "hsi.zarr"
    data = synthetic_hsi(
        n=240, in_dims=(6, 5, 7), n_classes=3, seed=0, modalities=("VNIR1", "SWIR1", "SWIR2")
    )
    hsi_to_dataset(data).to_zarr(hsi, mode="w", consolidated=True)
    seis = root / "seismic.zarr"
    seismic_to_dataset(synthetic_seismic(n_events=16, stations_per_event=4, seed=0, polarity=True)).to_zarr(
        seis, mode="w", consolidated=True
    )
    return {"hsi": hsi, "seismic": seis}


def _spec_file(tmp_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load((PRESET_DIR / "hsi-3.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"arms": {"supervised": {"mode": "baseline", "nope": 1}, "finetuned": {"mode": "finetune"}}},
            "unknown training setting",
        ),
        (
            {"comparisons": [{"a": "supervised", "b": "ghost", "metrics": ["test.fused.macro_error"]}]},
            "missing arm",
        ),
        ({"seeds": []}, "seeds is empty"),
    ],
)
def test_malformed_specs_fail_before_any_training(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message) as err:
        load_spec(_spec_file(tmp_path, **changes))
    assert "spec.yaml" in str(err.value)


def test_wrong_store_kind_fails_before_any_training(stores: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs a 'hsi_samples' store"):
        run_experiment(load_spec("hsi-3"), budget="smoke", store=str(stores["seismic"]), out_root=tmp_path)
    assert not any((tmp_path / "hsi-3").rglob("metrics.json"))


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_smoke_budget_and_its_report_numbers(
    preset: str, stores: dict[str, Path], tmp_path: Path
) -> None:
    spec = load_spec(preset)
    store = stores[spec.kind]
    result = run_experiment(spec, budget="smoke", store=str(store), out_root=tmp_path, device="cpu")
    folder = result.folder
    for name in ("results.csv", "comparisons.csv", "findings.csv", "report.md", "report.html", "spec.json"):
        assert (folder / name).exists(), name
    results = pd.read_csv(folder / "results.csv")
    assert (results.status == "trained").all(), results.error.tolist()
    assert len(results) == len(spec.plan("smoke", store=str(store)))
    comps = pd.read_csv(folder / "comparisons.csv")
    assert len(comps) >= len(spec.comparisons)
    # every reported number recomputed from results.csv with scipy, by seed
    for _, row in comps.iterrows():
        sel = results
        for col in (c for c in comps.columns if c.startswith("cell.") and not pd.isna(row[c])):
            factor = "factor." + col.removeprefix("cell.")
            sel = sel[(sel[factor] == row[col]) | sel[factor].isna()]

        def side(
            label: str, sel: pd.DataFrame = sel, metric: str = row.metric, other: str = row.arm_b
        ) -> pd.Series:
            arm, _, moment = label.partition("@")  # "arm@before_switch": that key of the run
            if arm == "zero":  # one-sample comparison against 0
                return sel[sel.arm == other.partition("@")[0]].set_index("seed")[metric] * 0.0
            return sel[sel.arm == arm].set_index("seed")[f"{moment}.{metric}" if moment else metric]

        a, b = side(row.arm_a), side(row.arm_b)
        seeds = sorted(set(a.index) & set(b.index))
        d = b.loc[seeds].to_numpy() - a.loc[seeds].to_numpy()
        d = d[np.isfinite(d)]
        assert row.n_seeds == d.size
        assert row.mean_diff == pytest.approx(d.mean(), nan_ok=True)
        if np.any(d != 0):
            assert row.p_wilcoxon == pytest.approx(scipy.stats.wilcoxon(d).pvalue)
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "Findings of the report" in html


def test_resume_after_a_kill_runs_exactly_the_missing_runs(stores: dict[str, Path], tmp_path: Path) -> None:
    """Kill a running experiment, re-run it: finished runs are cached, only the rest train."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nfrom experiments.runner import run_experiment\nfrom experiments.spec import load_spec\n"
        "spec = load_spec('hsi-3')\n"
        f"run_experiment(spec, budget='smoke', store={str(stores['hsi'])!r}, out_root={str(tmp_path / 'out')!r}, device='cpu')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=ROOT)
    runs = tmp_path / "out" / "hsi-3"
    deadline = time.time() + 240

    def finished_runs() -> set[str]:
        return {p.parent.name for p in runs.rglob("metrics.json") if ".tmp-" not in p.parent.name}

    while time.time() < deadline and len(finished_runs()) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = finished_runs()
    assert 3 <= len(finished) < 18
    result = run_experiment(
        load_spec("hsi-3"), budget="smoke", store=str(stores["hsi"]), out_root=tmp_path / "out", device="cpu"
    )
    status = dict(zip(result.results.run_dir.map(lambda p: Path(p).name), result.results.status, strict=True))
    assert {n for n, s in status.items() if s == "cached"} == finished
    assert {n for n, s in status.items() if s == "trained"} == set(status) - finished
    assert not list(runs.rglob("*.tmp-*"))
    again = run_experiment(
        load_spec("hsi-3"), budget="smoke", store=str(stores["hsi"]), out_root=tmp_path / "out", device="cpu"
    )
    assert (again.results.status == "cached").all()
    assert json.loads((again.folder / "spec.json").read_text())["name"] == "hsi-3"
