"""The report's experiment arms on tiny real Zarr stores: independent EMIN settings, label
budgets by count, per-modality runs + post-hoc fusion, prediction traces, new metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
import xarray as xr
from typer.testing import CliRunner

from flows.cli.train import register
from models.synthetic import hsi_to_dataset, seismic_to_dataset, synthetic_hsi, synthetic_seismic
from models.training.hsi import train_hsi
from models.training.seismic import train_seismic
from pipeline.publishing.codes import strings
from schemas.training import HSITrainConfig, SeismicTrainConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("arm_stores")
    hsi = root / "hsi.zarr"
    hsi_to_dataset(synthetic_hsi(n=300, seed=0, separation=1.2)).to_zarr(hsi, mode="w", consolidated=True)
    seis = root / "seismic.zarr"
    seismic_to_dataset(synthetic_seismic(n_events=16, stations_per_event=4, seed=0)).to_zarr(
        seis, mode="w", consolidated=True
    )
    return {"hsi": hsi, "seismic": seis}


def _hsi(stores: dict[str, Path], **kw: object) -> HSITrainConfig:
    base: dict[str, object] = {
        "store": str(stores["hsi"]), "epochs": 2, "batch_size": 64, "patience": None, "width": 8,
        "hidden": [8], "device": "cpu",
    }  # fmt: skip
    return HSITrainConfig.model_validate(base | kw)


def test_ssl_with_student_teacher(stores: dict[str, Path]) -> None:
    cfg = _hsi(stores, mode="ssl", emin="student-teacher", teachers=["SWIR"], label_fraction=0.2)
    assert cfg.effective_settings()["unlabelled"] == "use"
    r = train_hsi(cfg)
    assert r.metrics["n_unlabelled"] > 0
    assert all(np.isfinite(h["train_emin"]) for h in r.history)
    # the same settings spelled out without --mode
    spelled = _hsi(stores, emin="student-teacher", unlabelled="use", teachers=["SWIR"], label_fraction=0.2)
    r2 = train_hsi(spelled)
    assert r2.history[-1]["train_loss"] == r.history[-1]["train_loss"]


def test_labelled_per_class_budget_depends_only_on_seed_and_budget(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    a = train_hsi(_hsi(stores, labelled_per_class=5, epochs=1, out_dir=str(tmp_path / "a")))
    b = train_hsi(
        _hsi(stores, labelled_per_class=5, epochs=1, mode="ssl", lr=1e-2, out_dir=str(tmp_path / "b"))
    )
    ids_a = json.loads((tmp_path / "a" / "labelled_ids.json").read_text())["labelled_sample_id"]
    ids_b = json.loads((tmp_path / "b" / "labelled_ids.json").read_text())["labelled_sample_id"]
    assert ids_a == ids_b
    with xr.open_zarr(stores["hsi"]) as ds:
        sid = ds["sample_id"].values
        lab = ds["label"].values
        fold = ds["fold"].values
    chosen = np.isin(sid, ids_a)
    assert not np.any(chosen & ((fold == 4) | (fold == 5)))  # only training folds
    counts = np.bincount(lab[chosen], minlength=lab.max() + 1)
    avail = np.bincount(lab[(fold != 4) & (fold != 5)], minlength=lab.max() + 1)
    assert counts.tolist() == np.minimum(5, avail).tolist()
    assert a.metrics["n_train_labelled"] == b.metrics["n_train_labelled"] == len(ids_a)


def test_seismic_labelled_events_budget(stores: dict[str, Path], tmp_path: Path) -> None:
    cfg = SeismicTrainConfig(
        store=str(stores["seismic"]), mode="ssl", labelled_events=3, epochs=1, batch_size=16, head_hidden=[8],
        device="cpu", patience=None, out_dir=str(tmp_path / "s"),
    )  # fmt: skip
    r = train_seismic(cfg)
    ids = json.loads((tmp_path / "s" / "labelled_ids.json").read_text())
    assert len(ids["labelled_event_ids"]) == 3 == r.metrics["n_labelled_events"]
    with xr.open_zarr(stores["seismic"]) as ds:
        ev = strings(ds, "event_id")
        split = strings(ds, "split")
    assert (
        sorted(ids["labelled_trace_index"]) == np.flatnonzero(np.isin(ev, ids["labelled_event_ids"])).tolist()
    )
    assert set(split[ids["labelled_trace_index"]]) == {"train"}
    settings = json.loads((tmp_path / "s" / "settings.json").read_text())
    assert settings["centre"] == "mean" and settings["networks"] == "shared"
    assert "location_error_per_km_median" in r.metrics["test"]["overall"]
    assert "trace_spearman" in r.metrics["test"]["variance_vs_error"]


def test_per_modality_runs_and_fusion_match_brute_force(stores: dict[str, Path], tmp_path: Path) -> None:
    runs = []
    for mod in ("VNIR1", "SWIR2"):
        out = tmp_path / mod
        r = train_hsi(_hsi(stores, modalities=[mod], net="mlp", out_dir=str(out)))
        assert r.metrics["modalities"] == [mod]
        runs.append(out)
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Scratch root."""

    res = CliRunner().invoke(app, ["fuse", *map(str, runs), "--out", str(tmp_path / "fused")])
    assert res.exit_code == 0, res.output
    fused = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    # brute force: per sample id, mean softmax over the runs whose modality observed it
    acc: dict[int, list[np.ndarray]] = {}
    label: dict[int, int] = {}
    for run in runs:
        with np.load(run / "predictions.npz") as z:
            for j, s in enumerate(z["sample_id"].tolist()):
                label[s] = int(z["labels"][j])
                if z["mask"][0, j]:
                    acc.setdefault(s, []).append(z["probs"][0, j])
    pred = {s: int(np.argmax(np.mean(v, axis=0))) for s, v in acc.items()}
    classes = sorted({label[s] for s in pred})
    recall = [np.mean([pred[s] == c for s in pred if label[s] == c]) for c in classes]
    assert fused["n_test"] == len(pred)
    assert fused["fused"]["macro_accuracy"] == pytest.approx(float(np.mean(recall)), abs=1e-12)


def test_prediction_traces(stores: dict[str, Path], tmp_path: Path) -> None:
    cfg = _hsi(stores, epochs=5, trace_samples=4, trace_every=2, out_dir=str(tmp_path / "t"))
    train_hsi(cfg)
    with np.load(tmp_path / "t" / "traces.npz") as z:
        assert z["epochs"].tolist() == [0, 2, 4]
        probs, sid = z["probs"], z["sample_id"]
        assert probs.shape[:3] == (3, 3, 4)
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    with np.load(tmp_path / "t" / "predictions.npz") as p:  # restore="last": final trace = saved predictions
        pos = np.searchsorted(p["sample_id"], sid)
        np.testing.assert_allclose(probs[-1], p["probs"][:, pos], rtol=1e-5, atol=1e-6)


def test_cli_independent_settings_and_preset(stores: dict[str, Path], tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Scratch root."""

    out = tmp_path / "cli"
    res = CliRunner().invoke(
        app,
        ["train", "hsi", "--store", str(stores["hsi"]), "--preset", "report", "--emin", "gaussian",
         "--alpha-schedule", "fixed", "--epochs", "1", "--batch-size", "64", "--device", "cpu",
         "--modalities", "VNIR1,SWIR2", "--labelled-per-class", "4", "--out", str(out), "--no-prefect",
         "--param", "hidden=[8]", "--param", "width=8"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    s = json.loads((out / "settings.json").read_text())
    assert s["patience"] == 500 and s["normalise"] == "none" and s["emin"] == "gaussian"
    assert s["modalities"] == ["VNIR1", "SWIR2"] and s["labelled_per_class"] == 4 and s["restore"] == "best"


def test_per_sensor_checkpoint_round_trip(stores: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from models.data import load_seismic
    from models.runs import load_model
    from models.seismic_nets import PerSensorRegressor, forward_seismic, sensor_groups

    cfg = SeismicTrainConfig(
        store=str(stores["seismic"]), mode="student-teacher", epochs=1, batch_size=16, head_hidden=[8],
        device="cpu", patience=None, out_dir=str(tmp_path / "st"),
    )  # fmt: skip
    r = train_seismic(cfg)
    model, ckpt = load_model(tmp_path / "st")
    assert isinstance(model, PerSensorRegressor) and model.sensors == ckpt["meta"]["sensors"] == ["1C", "3C"]
    data = load_seismic(stores["seismic"])
    mean, std = ckpt["meta"]["channel_mean"], ckpt["meta"]["channel_std"]
    x = data.standardise(mean, std).x
    group = sensor_groups(data.sensor_type, model.sensors)
    r.model.eval()
    with torch.no_grad():
        assert torch.equal(forward_seismic(model, x, group), forward_seismic(r.model, x, group))
    s = json.loads((tmp_path / "st" / "settings.json").read_text())
    assert s["networks"] == "per-sensor" and s["centre"] == "median" and s["restore"] == "last"
