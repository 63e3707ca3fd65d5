"""Training loops (models/training/), data packing (models/data.py) and run folders (models/runs.py)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data import hsi_from_dataset, seismic_from_dataset, stratified_label_split
from models.runs import RUN_FILES, load_checkpoint, load_model
from models.synthetic import hsi_to_dataset, seismic_to_dataset, synthetic_hsi, synthetic_seismic
from models.training.hsi import predict_hsi, teacher_vector, train_hsi
from models.training.loop import EarlyStopper
from models.training.seismic import event_grouped_order, train_seismic
from pipeline.errors import TrainingConfigError
from schemas.training import HSITrainConfig, SeismicTrainConfig

HSI = synthetic_hsi(n=400, seed=1, separation=1.5)
SEIS = synthetic_seismic(n_events=30, stations_per_event=5, seed=2)


def hsi_cfg(**kw: object) -> HSITrainConfig:
    base: dict[str, object] = {
        "store": "unused", "epochs": 2, "batch_size": 64, "patience": None, "width": 16, "hidden": [16],
        "device": "cpu", "lr": 3e-3,
    }  # fmt: skip
    return HSITrainConfig.model_validate(base | kw)


def seis_cfg(**kw: object) -> SeismicTrainConfig:
    base: dict[str, object] = {
        "store": "unused", "epochs": 1, "batch_size": 32, "patience": None, "head_hidden": [16],
        "device": "cpu", "dropout": 0.0,
    }  # fmt: skip
    cfg = SeismicTrainConfig.model_validate(base | kw)
    return cfg


def strict_json(path: Path) -> object:
    def bad(const: str) -> None:
        raise ValueError(f"non-standard JSON constant {const}")

    return json.loads(path.read_text(), parse_constant=bad)


# ---------------------------------------------------------------------------------------------- data


def test_hsi_dataset_round_trip_packs_nan_to_zero() -> None:
    ds = hsi_to_dataset(HSI)
    assert np.isnan(ds[HSI.modalities[0]].values).any()
    d = hsi_from_dataset(ds)
    assert torch.equal(d.x, HSI.x) and torch.equal(d.mask, HSI.mask)
    assert d.in_dims == HSI.in_dims and d.x.shape == (3, 400, max(HSI.in_dims))
    assert torch.isfinite(d.x).all()
    sub = hsi_from_dataset(ds, modalities=[HSI.modalities[2]])
    assert sub.x.shape == (1, 400, HSI.in_dims[2])


def test_seismic_dataset_round_trip() -> None:
    d = seismic_from_dataset(seismic_to_dataset(SEIS))
    assert torch.equal(d.x, SEIS.x)
    assert torch.equal(d.event_index, SEIS.event_index) and torch.equal(d.split, SEIS.split)
    assert d.is_3c.tolist() == [s == "3C" for s in SEIS.sensor_type]
    assert (d.x[~d.is_3c][:, 1:] == 0).all()


def test_stratified_label_split() -> None:
    labels = np.repeat(np.arange(4), [100, 40, 10, 3])
    kept, rest = stratified_label_split(labels, 0.25, seed=7)
    assert np.intersect1d(kept, rest).size == 0
    assert np.array_equal(np.sort(np.concatenate([kept, rest])), np.arange(labels.size))
    assert np.bincount(labels[kept]).tolist() == [25, 10, 2, 1]  # round(0.25 n), at least one
    again, _ = stratified_label_split(labels, 0.25, seed=7)
    other, _ = stratified_label_split(labels, 0.25, seed=8)
    assert np.array_equal(kept, again) and not np.array_equal(kept, other)
    full, none = stratified_label_split(labels, 1.0, seed=0)
    assert full.size == labels.size and none.size == 0


def test_label_fraction_leaves_rest_unlabelled_for_ssl() -> None:
    ssl = train_hsi(hsi_cfg(mode="ssl", label_fraction=0.3, epochs=1), HSI)
    sup = train_hsi(hsi_cfg(mode="baseline", label_fraction=0.3, epochs=1), HSI)
    n_train = int(((HSI.folds != 4) & (HSI.folds != 5)).sum())
    assert ssl.metrics["n_train_labelled"] + ssl.metrics["n_unlabelled"] == n_train
    for r in (ssl, sup):
        assert r.metrics["n_train_labelled"] == pytest.approx(0.3 * n_train, abs=4)
    # ssl trains on labelled + unlabelled samples; the baseline only on the labelled ones, and
    # reports no unlabelled pool (it does not use one)
    assert ssl.history[0]["samples_per_s"] > 0
    assert ssl.metrics["n_unlabelled"] > 0
    assert "n_unlabelled" not in sup.metrics


# ---------------------------------------------------------------------------------------------- HSI


def test_hsi_training_is_deterministic_on_cpu() -> None:
    cfg = hsi_cfg(mode="emin", epochs=2, dropout=0.1)
    a, b = train_hsi(cfg, HSI), train_hsi(cfg, HSI)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    strip = [{k: v for k, v in r.items() if k not in ("epoch_time_s", "samples_per_s")} for r in a.history]
    strip_b = [{k: v for k, v in r.items() if k not in ("epoch_time_s", "samples_per_s")} for r in b.history]
    assert strip == strip_b
    assert a.metrics["test"] == b.metrics["test"]
    c = train_hsi(hsi_cfg(mode="emin", epochs=2, dropout=0.1, seed=1), HSI)
    assert not torch.equal(c.model.state_dict()["head.weight"], a.model.state_dict()["head.weight"])
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run


def test_loss_decreases_on_easy_problem() -> None:
    r = train_hsi(hsi_cfg(epochs=12), HSI)
    losses = [h["train_loss"] for h in r.history]
    assert losses[-1] < 0.5 * losses[0]
    assert r.metrics["test"]["fused"]["macro_accuracy"] > 0.85


def test_early_stopping_triggers_with_patience() -> None:
    stopper = EarlyStopper("max", patience=2)
    assert stopper.update(0.5, 0) and not stopper.update(0.5, 1)
    assert not stopper.should_stop and not stopper.update(0.4, 2) and stopper.should_stop
    assert stopper.best_epoch == 0
    low = EarlyStopper("min", None)
    for e in range(10):
        low.update(1.0, e)
    assert not low.should_stop
    r = train_hsi(hsi_cfg(epochs=60, patience=2, lr=1e-2), HSI)
    assert r.metrics["stopped_early"] and r.metrics["epochs_run"] < 60
    assert r.metrics["epochs_run"] == r.metrics["best_epoch"] + 3
    best = max(h["val_macro_accuracy"] for h in r.history)
    assert r.metrics["val"]["fused"]["macro_accuracy"] == pytest.approx(best)  # best weights restored


MODES = [
    {"mode": "baseline"},
    {"mode": "baseline", "net": "mlp"},
    {"mode": "emin", "alpha": "fixed", "alpha_value": 0.5},
    {"mode": "emin", "alpha": "sampled"},
    {"mode": "emin", "alpha": "mgda"},
    {"mode": "emin", "alpha": "mgda", "net": "mlp", "mgda_normalization": "l2"},
    {"mode": "student-teacher", "teachers": ["SWIR"]},
    {"mode": "finetune", "switch_epoch": 0},
    {"mode": "ssl", "label_fraction": 0.5},
]


@pytest.mark.parametrize("kw", MODES, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_every_hsi_mode_runs_one_epoch(kw: dict[str, object]) -> None:
    r = train_hsi(hsi_cfg(epochs=1, **kw), HSI)
    h = r.history[0]
    assert math.isfinite(h["train_loss"]) and 0.0 <= h["alpha"] <= 1.0
    if kw["mode"] != "baseline":
        assert h["train_emin"] > 0
    if kw["mode"] == "finetune":
        assert h["alpha"] == 0.0
    assert 0.0 <= r.metrics["test"]["fused"]["macro_accuracy"] <= 1.0
    assert set(r.metrics["test"]) == {"fused", *HSI.modalities}


def test_teacher_vector() -> None:
    assert teacher_vector(["SWIR"], ["VNIR1", "SWIR1", "SWIR2"]).tolist() == [False, True, True]
    assert teacher_vector(["VNIR1"], ["VNIR1", "SWIR1"]).tolist() == [True, False]
    with pytest.raises(ValueError):
        teacher_vector(["LWIR"], ["VNIR1", "SWIR1"])


def test_run_folder_and_checkpoint_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = train_hsi(hsi_cfg(mode="emin", out_dir=str(out)), HSI)
    assert r.run_dir == out
    for name in (*RUN_FILES, "confusion_matrix.png", "modality_errors.png"):
        assert (out / name).stat().st_size > 0, name
    cfg = strict_json(out / "config.json")
    assert isinstance(cfg, dict) and cfg["mode"] == "emin"
    metrics = strict_json(out / "metrics.json")
    assert isinstance(metrics, dict) and "fused" in metrics["test"]
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss") and len(lines) == 1 + len(r.history)
    ckpt = load_checkpoint(out / "checkpoint.pt")  # weights_only=True inside
    torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["config"] == cfg and ckpt["meta"]["modalities"] == HSI.modalities
    model, _ = load_model(out)
    idx = torch.arange(50)
    std = HSI.standardise(ckpt["meta"]["band_mean"], ckpt["meta"]["band_std"])
    assert torch.allclose(predict_hsi(model, std, idx), predict_hsi(r.model, std, idx))


# ---------------------------------------------------------------------------------------------- seismic


def test_event_grouped_order_keeps_events_contiguous() -> None:
    ev = torch.tensor([3, 1, 3, 0, 1, 1, 0, 3, 2])
    order = event_grouped_order(ev, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(9))
    seq = ev[order].tolist()
    changes = sum(a != b for a, b in itertools.pairwise(seq))
    assert changes == 3  # four events, each one contiguous run


SEIS_MODES = [
    {"mode": "baseline"},
    {"mode": "emin", "alpha": "fixed", "alpha_value": 0.7},
    {"mode": "emin", "alpha": "mgda"},
    {"mode": "student-teacher"},
    {"mode": "finetune", "switch_epoch": 0, "finetune_alpha": 0.5},
    {"mode": "ssl", "label_fraction": 0.3},
]


def test_seismic_training_is_deterministic_on_cpu() -> None:
    cfg = seis_cfg(mode="emin", epochs=1)
    a, b = train_seismic(cfg, SEIS), train_seismic(cfg, SEIS)
    for (ka, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), ka
    assert a.metrics["test"] == b.metrics["test"]


@pytest.mark.parametrize("kw", SEIS_MODES, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_every_seismic_mode_runs_one_epoch(kw: dict[str, object]) -> None:
    r = train_seismic(seis_cfg(**kw), SEIS)
    h = r.history[0]
    assert math.isfinite(h["train_loss"]) and math.isfinite(h["val_location_error_km_median"])
    if kw["mode"] != "baseline":
        assert h["train_emin"] > 0
    assert r.metrics["test"]["overall"]["n"] == int((SEIS.split == 2).sum())


EPOCHS = 10


def test_seismic_learns_and_beats_predict_the_mean(tmp_path: Path) -> None:
    data = synthetic_seismic(n_events=40, stations_per_event=6, seed=3)
    cfg = seis_cfg(epochs=EPOCHS, lr=3e-3, batch_size=32, out_dir=str(tmp_path / "s"))
    a = train_seismic(cfg, data)
    err = a.metrics["test"]["overall"]["location_error_km_median"]
    mean_err = a.metrics["predict_the_mean"]["centroid"]["location_error_km_median"]
    assert err < 0.7 * mean_err, (err, mean_err)
    for name in (*RUN_FILES, "location_error_cdf.png"):
        assert (tmp_path / "s" / name).exists(), name
    _model, ckpt = load_model(tmp_path / "s")
    assert ckpt["meta"]["channel_mean"].shape == (3,)


def test_polarity_inputs_train_a_five_channel_model_and_round_trip(tmp_path: Path) -> None:
    data = seismic_from_dataset(
        seismic_to_dataset(synthetic_seismic(n_events=12, seed=4, polarity=True)), polarity=True
    )
    assert data.x.shape[1] == 5 and (data.x[~data.is_3c][:, 1:] == 0).all()
    with pytest.raises(TrainingConfigError, match="inputs"):
        train_seismic(seis_cfg(), data)  # 3-channel config on 5-channel data
    train_seismic(seis_cfg(inputs="power+polarity", out_dir=str(tmp_path / "p")), data)
    model, ckpt = load_model(tmp_path / "p")
    assert ckpt["meta"]["channel_mean"].shape == (5,)
    assert model(data.x[:2]).shape == (2, 3)


def test_on_epoch_is_called_once_per_epoch_with_its_history_row() -> None:
    """The progress hook: one call per finished epoch, in order, with the row that history keeps."""
    from models.synthetic import synthetic_hsi
    from models.training.hsi import train_hsi
    from schemas.training import HSITrainConfig

    calls: list[tuple[int, int, dict[str, float]]] = []
    config = HSITrainConfig(
        store="unused", epochs=4, patience=None, batch_size=64, device="cpu", width=8, hidden=[8]
    )
    result = train_hsi(
        config, synthetic_hsi(n=200, seed=1), on_epoch=lambda e, n, row: calls.append((e, n, row))
    )
    assert [(e, n) for e, n, _ in calls] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert [row for _, _, row in calls] == result.history
