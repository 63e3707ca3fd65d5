"""The experiment suite end to end on tiny stores: spec checks, every preset's smoke budget,
report numbers recomputed from results.csv, and resume after a kill."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.stats
import xarray as xr
import yaml

from experiments.figures import FIGURES
from experiments.result import ExperimentResult, Figure
from experiments.runner import run_experiment
from experiments.spec import PRESET_DIR, FigureName, list_presets, load_spec
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
    data_s = synthetic_seismic(n_events=16, stations_per_event=4, seed=0, polarity=True)
    rng = np.random.default_rng(1)  # catalogue attributes per event (Fig. 14's subsets split on them)
    ev = data_s.event_index.numpy()
    seismic_to_dataset(data_s).assign_coords(
        event_magnitude=("trace", rng.uniform(0.5, 3.0, 16)[ev]),
        event_horizontal_error_km=("trace", rng.uniform(0.2, 2.0, 16)[ev]),
    ).to_zarr(seis, mode="w", consolidated=True)
    return {"hsi": hsi, "seismic": seis}


@pytest.fixture(scope="module")
def smoke(
    stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], ExperimentResult]:
    """A preset's smoke-budget experiment on the tiny stores, run once per module."""
    root = tmp_path_factory.mktemp("smoke")
    done: dict[str, ExperimentResult] = {}

    def run(preset: str) -> ExperimentResult:
        if preset not in done:
            spec = load_spec(preset)
            done[preset] = run_experiment(
                spec, budget="smoke", store=str(stores[spec.kind]), out_root=root, device="cpu"
            )
        return done[preset]

    return run


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
        (
            {"budgets": {"smoke": {"seeds": 2, "tuning": {"trials": 1}}}},
            "tuning needs an arm with trainer: per-modality",
        ),
        ({"figures": ["fig99"]}, "figures"),
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
    preset: str, stores: dict[str, Path], smoke: Callable[[str], ExperimentResult]
) -> None:
    spec = load_spec(preset)
    store = stores[spec.kind]
    result = smoke(preset)
    folder = result.folder
    for name in ("results.csv", "comparisons.csv", "findings.csv", "report.md", "report.html", "spec.json"):
        assert (folder / name).exists(), name
    results = pd.read_csv(folder / "results.csv")
    assert (results.status == "trained").all(), results.error.tolist()
    arm_rows = results[results.member.isna()]  # per-modality members have their own rows
    assert len(arm_rows) == len(spec.plan("smoke", store=str(store)))
    results = arm_rows
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
    assert [f.name for f in result.figures if f.name in spec.figures] == spec.figures  # none left undrawn
    assert "not drawn" not in (folder / "report.md").read_text()


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


# --------------------------------------------------------------------------- hsi-1 per-modality tuning


def test_hsi1_tunes_each_modality_then_trains_and_fuses_the_tuned_runs(
    stores: dict[str, Path], smoke: Callable[[str], ExperimentResult], tmp_path: Path
) -> None:
    """The tuning step ran (a complete study per modality), every seed's member run trained the
    best trial's settings on its one modality, and the arm's row is their post-hoc fusion."""
    result = smoke("hsi-1")
    tuning = load_spec("hsi-1").budgets["smoke"].tuning
    assert tuning is not None
    rows = pd.read_csv(result.folder / "tuning.csv")
    assert sorted(rows.modality) == ["SWIR1", "SWIR2", "VNIR1"]
    results = pd.read_csv(result.folder / "results.csv")
    for row in rows.itertuples(index=False):
        folder = Path(row.folder)
        study = optuna.load_study(
            study_name=f"independent-{row.modality}", storage=f"sqlite:///{folder / 'study.db'}"
        )
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == row.trials_complete == tuning.trials
        assert len(pd.read_csv(folder / "trials.csv")) == tuning.trials
        best = study.best_trial
        assert row.best_trial == best.number and json.loads(row.params) == best.params
        members = results[(results.arm == "independent") & (results.member == row.modality)]
        assert sorted(members.seed) == [0, 1]
        for run_dir in members.run_dir:
            cfg = json.loads((Path(run_dir) / "config.json").read_text())
            assert cfg["modalities"] == [row.modality]
            assert cfg["hidden"] == [best.params["width"]] * best.params["layers"]
            for key in ("lr", "batch_size", "dropout", "weight_decay"):
                assert cfg[key] == best.params[key], key
    # the arm's row: the members' test softmax averaged per sample id, then argmax
    for seed in (0, 1):
        sel = results[(results.arm == "independent") & (results.seed == seed)]
        total: dict[int, np.ndarray] = {}
        labels: dict[int, int] = {}
        for run_dir in sel[sel.member.notna()].run_dir:
            with np.load(Path(run_dir) / "predictions.npz") as z:
                for i, sid in enumerate(z["sample_id"].tolist()):
                    if z["mask"][0, i]:
                        total[sid] = total.get(sid, 0.0) + z["probs"][0, i].astype(float)
                        labels[sid] = int(z["labels"][i])
        ids = sorted(total)
        y = np.array([labels[i] for i in ids])
        pred = np.array([np.argmax(total[i]) for i in ids])
        recall = [np.mean(pred[y == c] == c) for c in np.unique(y)]
        fused = sel[sel.member.isna()]
        assert fused["test.fused.macro_error"].item() == pytest.approx(1.0 - np.mean(recall))
    # resumable: a re-run asks no new trial and trains nothing
    again = run_experiment(
        load_spec("hsi-1"),
        budget="smoke",
        store=str(stores["hsi"]),
        out_root=result.folder.parents[1],
        device="cpu",
    )
    assert (again.results.status == "cached").all()
    assert pd.read_csv(again.folder / "tuning.csv").trials_complete.tolist() == rows.trials_complete.tolist()


# --------------------------------------------------------------------------- report figures


def test_every_figure_a_spec_can_name_has_its_function() -> None:
    assert set(FIGURES) == set(get_args(FigureName))


def _figure(result: ExperimentResult, name: str) -> Figure:
    """The figure as the report drew it, checked to be a PNG on disk and in both reports."""
    files = list(result.folder.glob(f"fig*_{name}.png"))
    assert len(files) == 1, files
    png = files[0].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert f"({files[0].name})" in (result.folder / "report.md").read_text()
    assert base64.b64encode(png).decode() in (result.folder / "report.html").read_text()
    (fig,) = [f for f in result.figures if f.name == name]
    assert fig.png == png
    return fig


def _ci(values: pd.Series) -> tuple[float, float, float]:
    x = values.to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    half = scipy.stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return x.mean(), x.mean() - half, x.mean() + half


def _arm_rows(result: ExperimentResult) -> pd.DataFrame:
    res = pd.read_csv(result.folder / "results.csv")
    return res[res.member.isna() & (res.status != "failed")]


def test_modality_errors_figure(smoke: Callable[[str], ExperimentResult]) -> None:
    result = smoke("hsi-1")
    fig = _figure(result, "modality_errors")
    res = _arm_rows(result)
    assert set(fig.data) == {"independent", "emin-sampled", "emin-mgda"}
    for arm, per in fig.data.items():
        assert set(per) == {"VNIR1", "SWIR1", "SWIR2", "fused"}
        for name, got in per.items():
            assert got == pytest.approx(_ci(res[res.arm == arm][f"test.{name}.macro_error"]))


def test_alpha_traces_figure(smoke: Callable[[str], ExperimentResult]) -> None:
    result = smoke("hsi-2")
    fig = _figure(result, "alpha_traces")
    res = _arm_rows(result)
    expected = ["baseline"] + [f"emin alpha_value={a}" for a in (0.01, 0.05, 0.5)]
    assert list(fig.data["rows"]) == expected
    assert len(fig.data["probes"]) == 4
    for label, per in fig.data["rows"].items():
        arm, _, cell = label.partition(" ")
        sel = res[res.arm == arm]
        if cell:
            sel = sel[sel["factor.alpha_value"] == float(cell.split("=")[1])]
        with np.load(Path(sel.sort_values("seed").run_dir.iloc[0]) / "traces.npz") as z:
            assert fig.data["epochs"][label] == z["epochs"].tolist() == [0, 1]
            for sid in fig.data["probes"]:
                k = int(np.flatnonzero(z["sample_id"] == sid)[0])
                y = int(z["labels"][k])
                mods = [str(m) for i, m in enumerate(z["modalities"]) if z["mask"][i, k]]
                assert list(per[sid]) == mods
                for i, m in enumerate(z["modalities"]):
                    if z["mask"][i, k]:
                        np.testing.assert_allclose(per[sid][str(m)], z["probs"][:, i, k, y])


def _np_variance(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per sample: population variance over the present modalities' softmax, mean over classes."""
    out = []
    for n in range(probs.shape[1]):
        present = mask[:, n].astype(bool)
        if present.sum() >= 2:
            out.append(probs[present, n].astype(np.float64).var(axis=0).mean())
    return np.asarray(out)


def test_variance_shift_and_modality_deltas_figures(smoke: Callable[[str], ExperimentResult]) -> None:
    result = smoke("hsi-4")
    res = _arm_rows(result)
    runs = res.sort_values("seed")
    shift = _figure(result, "variance_shift").data["finetuned"]
    for name, key in (
        ("predictions_before_switch.npz", "variance_before"),
        ("predictions.npz", "variance_after"),
    ):
        parts = []
        for run_dir in runs.run_dir:
            with np.load(Path(run_dir) / name) as z:
                parts.append(_np_variance(z["probs"], z["mask"]))
        np.testing.assert_allclose(shift[key], np.concatenate(parts), rtol=1e-9, atol=1e-15)
    assert not np.allclose(shift["variance_before"], shift["variance_after"])
    col = "test.classification.fused.macro_error"
    assert shift["error"]["before"] == pytest.approx(_ci(runs[f"before_switch.{col}"]))
    assert shift["error"]["after"] == pytest.approx(_ci(runs[f"final.{col}"]))

    deltas = _figure(result, "modality_deltas").data["finetuned"]
    assert set(deltas) == {"VNIR1", "SWIR1", "SWIR2"}
    befores = [v["before"] for v in deltas.values()]
    assert befores == sorted(befores)  # worst modality first
    for m, v in deltas.items():
        col = f"test.classification.{m}.macro_accuracy"
        d = runs[f"final.{col}"] - runs[f"before_switch.{col}"]
        np.testing.assert_allclose(v["values"], d.to_numpy())
        assert v["delta"] == pytest.approx(_ci(d))


def _haversine(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2, dl = np.radians(lat1), np.radians(lat2), np.radians(lon2 - lon1)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6378.1 * np.arcsin(np.sqrt(a))


def test_location_breakdown_and_variance_vs_error_figures(
    stores: dict[str, Path], smoke: Callable[[str], ExperimentResult]
) -> None:
    result = smoke("seis-1")
    res = _arm_rows(result)
    fig = _figure(result, "location_breakdown").data
    arms = list(load_spec("seis-1").arms)
    assert list(fig["distance"]) == list(fig["sensor"]) == list(fig["subset"]) == arms
    with xr.open_zarr(stores["seismic"]) as ds:
        mag, herr = ds["event_magnitude"].values, ds["event_horizontal_error_km"].values
    runs = {arm: res[res.arm == arm].sort_values("seed") for arm in arms}
    locs = {arm: [dict(np.load(Path(d) / "locations.npz")) for d in sel.run_dir] for arm, sel in runs.items()}
    tested = np.unique(np.concatenate([z["trace_index"] for zs in locs.values() for z in zs]))
    threshold = np.median(mag[tested])
    assert fig["thresholds"]["magnitude_median"] == pytest.approx(threshold)
    inside = {
        "horizontal error < 1 km": herr < 1.0,
        "horizontal error >= 1 km": herr >= 1.0,
        "M < median": mag < threshold,
        "M >= median": mag >= threshold,
    }
    for arm, sel in runs.items():
        for key, prefix in (("distance", "test.by_distance_bin."), ("sensor", "test.by_sensor.")):
            assert fig[key][arm], key
            for name, got in fig[key][arm].items():
                assert got == pytest.approx(_ci(sel[f"{prefix}{name}.location_error_km_median"]))
        for name, member in inside.items():
            medians = [np.median(z["location_error_km"][member[z["trace_index"]]]) for z in locs[arm]]
            assert fig["subset"][arm][name] == pytest.approx(_ci(pd.Series(medians)))

    spread = _figure(result, "variance_vs_error").data
    assert list(spread) == arms
    for arm, got in spread.items():
        run = res[res.arm == arm].sort_values("seed").iloc[0]
        with np.load(Path(run.run_dir) / "locations.npz") as z:
            var, err = [], []
            for ev in np.unique(z["event_id"]):  # ascending event id, events of >= 2 traces
                sel = z["event_id"] == ev
                if sel.sum() < 2:
                    continue
                lat, lon = z["pred_lat"][sel], z["pred_lon"][sel]
                d = _haversine(lat, lon, np.full(lat.size, np.median(lat)), np.full(lon.size, np.median(lon)))
                var.append(np.mean(d**2))
                err.append(np.median(z["location_error_km"][sel]))
        np.testing.assert_allclose(got["variance_km2"], var, rtol=1e-9)
        np.testing.assert_allclose(got["error_km"], err, rtol=1e-9)
        rho = scipy.stats.spearmanr(var, err).statistic if len(var) >= 3 else np.nan
        assert got["spearman"] == pytest.approx(rho, nan_ok=True)
        assert got["spearman"] == pytest.approx(run["test.variance_vs_error.event_spearman"], nan_ok=True)


def test_error_ellipses_figure(smoke: Callable[[str], ExperimentResult]) -> None:
    result = smoke("seis-2")
    res = _arm_rows(result)
    fig = _figure(result, "error_ellipses").data
    assert list(fig) == [f"{a} labelled_events={n}" for a in ("baseline", "ssl-emin") for n in (25, 100)]
    for label, events in fig.items():
        arm, n = label.split(" labelled_events=")
        sel = res[(res.arm == arm) & (res["factor.labelled_events"] == int(n))]
        with np.load(Path(sel.sort_values("seed").run_dir.iloc[0]) / "locations.npz") as z:
            assert events
            for ev, got in events.items():
                m = z["event_id"] == ev
                assert m.sum() >= 3
                lat0, lon0 = z["event_lat"][m][0], z["event_lon"][m][0]
                k = np.pi * 6378.1 / 180.0
                pts = np.stack(
                    [(z["pred_lon"][m] - lon0) * np.cos(np.radians(lat0)) * k, (z["pred_lat"][m] - lat0) * k],
                    axis=1,
                )
                np.testing.assert_allclose(got["points_km"], pts, rtol=1e-9, atol=1e-9)
                med = np.median(pts, axis=0)
                np.testing.assert_allclose(got["median_km"], med, rtol=1e-9, atol=1e-9)
                assert got["offset_km"] == pytest.approx(np.hypot(*med))
                cov = np.cov(pts.T)
                lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
                np.testing.assert_allclose(got["axes_km"], 2 * np.sqrt(lam), rtol=1e-9)
                # the major axis points along the direction of largest spread
                u = np.array([np.cos(np.radians(got["angle_deg"])), np.sin(np.radians(got["angle_deg"]))])
                assert u @ cov @ u == pytest.approx(lam[0], rel=1e-9)
