"""Regression tests for the training defects of issue #11 (restore policy, teacher gradients,
bf16 heads, report defaults). Each checks against an independent route: a numpy recomputation
from the saved checkpoint, the parameters themselves, the float32 model, the report's text."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data import HSIData
from models.nets import Hydra, VGGRegressor
from models.runs import load_model
from models.synthetic import synthetic_hsi, synthetic_seismic
from models.training.hsi import train_hsi
from schemas.training import HSITrainConfig, SeismicTrainConfig

HSI = synthetic_hsi(n=400, seed=1, separation=1.5)
#: Separable enough that validation accuracy saturates at 1.0 within a few epochs: later epochs
#: can never beat that first 1.0, so "restore the best" silently picks an early epoch.
EASY = synthetic_hsi(n=400, seed=1, separation=4.0)
SEIS = synthetic_seismic(n_events=12, stations_per_event=6, seed=2, p_3c=0.5)


def _cfg(**kw: object) -> HSITrainConfig:
    base: dict[str, object] = {
        "store": "unused", "epochs": 8, "batch_size": 64, "patience": None, "width": 16, "hidden": [16],
        "device": "cpu", "lr": 3e-3,
    }  # fmt: skip
    return HSITrainConfig.model_validate(base | kw)


def _numpy_fused_eval(run_dir: Path, fold: int, data: HSIData = EASY) -> tuple[float, float]:
    """Fused macro accuracy and mean cross-modality variance on ``fold``, recomputed in numpy from the checkpoint."""
    model, ckpt = load_model(run_dir)
    meta = ckpt["meta"]
    sel = np.flatnonzero(data.folds.numpy() == fold)
    x = data.x[:, sel].numpy().astype(np.float64)
    mask = data.mask[:, sel].numpy()
    if "band_mean" in meta:
        x = (x - meta["band_mean"].numpy()[:, None]) / meta["band_std"].numpy()[:, None]
        x[~mask] = 0.0
    with torch.no_grad():
        logits = model(torch.from_numpy(x).float(), torch.from_numpy(mask)).double().numpy()
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)  # [M, B, C]
    n = mask.sum(axis=0)
    fused = (p * mask[..., None]).sum(axis=0) / n[:, None]
    y = data.labels.numpy()[sel]
    pred = fused.argmax(axis=1)
    acc = float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))
    dev = (p - fused[None]) * mask[..., None]
    var = ((dev**2).sum(axis=0) / n[:, None]).mean(axis=1)
    return acc, float(var[n >= 2].mean())


# ------------------------------------------------------------------------ 1. restore policy


def test_finetune_keeps_post_switch_weights_and_reports_them(tmp_path: Path) -> None:
    cfg = _cfg(mode="finetune", switch_epoch=4, finetune_alpha=0.0, lr=1e-2, out_dir=str(tmp_path / "ft"))
    r = train_hsi(cfg, EASY)
    assert max(h["val_macro_accuracy"] for h in r.history[: cfg.switch_epoch]) == 1.0  # the trap is set
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    restored = m.get("restored_epoch", m["best_epoch"])
    assert restored >= cfg.switch_epoch  # the EMIN fine-tuning was not thrown away
    acc, var = _numpy_fused_eval(tmp_path / "ft", fold=4)
    row = r.history[restored]
    assert acc == pytest.approx(row["val_macro_accuracy"], abs=1e-9)
    assert var == pytest.approx(row["val_variance"], rel=1e-4)
    test_acc, test_var = _numpy_fused_eval(tmp_path / "ft", fold=5)
    assert test_acc == pytest.approx(m["test"]["fused"]["macro_accuracy"], abs=1e-9)
    assert (
        m["final"]["test"]["classification"]["fused"]["macro_accuracy"]
        == m["test"]["fused"]["macro_accuracy"]
    )
    assert test_var == pytest.approx(m["final"]["test"]["variance_mean"], rel=1e-4)
    assert m["before_switch"]["epoch"] == cfg.switch_epoch - 1
    assert m["restore"] == "best-after-switch"
    # the pre-switch evaluation is of the weights of epoch switch − 1 (as validated then)
    pre = r.history[cfg.switch_epoch - 1]
    assert m["before_switch"]["val"]["classification"]["fused"]["macro_accuracy"] == pre["val_macro_accuracy"]


def test_no_early_stopping_means_last_epoch_weights(tmp_path: Path) -> None:
    cfg = _cfg(mode="emin", alpha_value=0.02, epochs=6, lr=1e-2, out_dir=str(tmp_path / "r"))
    r = train_hsi(cfg, EASY)
    first_best = [h["val_macro_accuracy"] for h in r.history].index(1.0)
    assert first_best < len(r.history) - 1  # the trap is set
    _, var = _numpy_fused_eval(tmp_path / "r", fold=4)
    assert var == pytest.approx(r.history[-1]["val_variance"], rel=1e-4)
    assert r.metrics["restored_epoch"] == len(r.history) - 1 and r.metrics["restore"] == "last"


# ------------------------------------------------------------------------ 2. teacher gradients


def _teacher_step(networks: str) -> tuple[torch.Tensor, torch.Tensor]:
    from models.seismic_nets import forward_seismic
    from models.training.seismic import _setup, seismic_epoch

    cfg = SeismicTrainConfig(
        store="unused", mode="student-teacher", networks=networks, head_hidden=[8], dropout=0.0,
        device="cpu", batch_size=512, lr=1e-2,
    )  # fmt: skip
    torch.manual_seed(0)
    st = _setup(cfg, SEIS, torch.device("cpu"))
    model, data, group, teacher = st["model"], st["data"], st["group"], st["teacher"]
    idx = st["split"].train_idx
    t_idx = idx[teacher[idx]]
    model.train()  # batch statistics: train-mode outputs depend on the parameters only
    with torch.no_grad():
        before = forward_seismic(model, data.x[t_idx], group[t_idx]).clone()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    order = idx[torch.argsort(data.event_index[idx], stable=True)]
    lab = torch.ones_like(order, dtype=torch.bool)
    seismic_epoch(model, opt, data, st["target"], order, lab, batch_size=512, alpha=0.0, teacher=teacher,
                  centre="median", group=group)  # fmt: skip
    with torch.no_grad():
        after = forward_seismic(model, data.x[t_idx], group[t_idx])
    return before, after


def test_student_teacher_emin_leaves_teacher_bitwise_unchanged() -> None:
    before, after = _teacher_step("per-sensor")
    assert before.numel() > 0
    assert torch.equal(before, after)
    b2, a2 = _teacher_step("shared")  # the shared network: EMIN on the students moves the teacher
    assert not torch.equal(b2, a2)


# ------------------------------------------------------------------------ 3. bf16 heads


def test_bf16_autocast_keeps_regression_outputs_fp32() -> None:
    torch.manual_seed(0)
    net = VGGRegressor(3, cfg=(8, "M", 8, "M"), head_hidden=(16,), dropout=0.0).eval()
    x = 1.0 + 0.1 * torch.randn(64, 3, 8, 16)
    with torch.no_grad():
        ref = net(x)[:, 0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = net(x)[:, 0]
    assert torch.unique(ref).numel() == 64
    assert amp.dtype == torch.float32
    assert torch.unique(amp).numel() == 64  # bf16 outputs (8 mantissa bits) collide
    # the bf16 backbone perturbs the outputs by ~2^-8 relative; the head adds no quantisation
    torch.testing.assert_close(amp, ref, rtol=0.05, atol=1e-2)
    hydra = Hydra([5, 4], 3, width=8, hidden=[8]).eval()
    xh = torch.randn(2, 10, 5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert hydra(xh, torch.ones(2, 10, dtype=torch.bool)).dtype == torch.float32


def test_autocast_for_cpu_default_is_off() -> None:
    from models.training.loop import autocast_for

    cpu = torch.device("cpu")
    with autocast_for(cpu, True):
        assert not torch.is_autocast_enabled("cpu")
    with autocast_for(cpu, True, allow_cpu=True):
        assert torch.is_autocast_enabled("cpu")


# ------------------------------------------------------------------------ 4. defaults vs the report


def test_seismic_centre_defaults_follow_report_section_4_5() -> None:
    base = {"store": "unused"}
    assert SeismicTrainConfig(**base, mode="student-teacher").effective_centre == "median"
    assert SeismicTrainConfig(**base, mode="emin").effective_centre == "mean"  # the variance
    assert SeismicTrainConfig(**base, mode="student-teacher").effective_networks == "per-sensor"
    assert SeismicTrainConfig(**base, mode="emin", centre="median").effective_centre == "median"


def test_train_emin_is_nan_when_no_emin_term_is_computed() -> None:
    base = train_hsi(_cfg(epochs=2), HSI)
    assert all(math.isnan(r["train_emin"]) for r in base.history)
    ft = train_hsi(_cfg(mode="finetune", switch_epoch=2, epochs=3), HSI)
    assert [math.isnan(r["train_emin"]) for r in ft.history] == [True, True, False]


def test_n_unlabelled_only_reported_when_used() -> None:
    sup = train_hsi(_cfg(epochs=1, label_fraction=0.3), HSI)
    assert "n_unlabelled" not in sup.metrics
    ssl = train_hsi(_cfg(epochs=1, label_fraction=0.3, mode="ssl"), HSI)
    assert ssl.metrics["n_unlabelled"] > 0


#: The report's settings, typed from its text (sections 3.2.3–3.7, 4.5–4.6, Table 2).
REPORT_TEXT = {
    "patience": 500,  # 3.3 "early stopping with a patience of 500 epochs"
    "normalise": "none",  # 3.2.3 "Clip data to a range of [0, 1.5] ... desirable over standard normalization"
    "val_fold": 4,  # 3.2.4 "folds 1-4 used for leave-one-set-out cross validation"
    "test_fold": 5,  # 3.2.4 "fold 5 withheld for test evaluation"
    "dropout": 0.0,  # 3.3 "Dropout and weight decay were disabled"
    "weight_decay": 0.0,
}
REPORT_FINETUNE = {"switch_epoch": 1000, "epochs": 2000, "finetune_alpha": 0.0}  # 3.6: 1,000 + 1,000, α = 0
REPORT_TABLE2 = {  # Table 2
    "layers": (2, 4), "width": (10, 120), "dropout": (0.0, 0.35), "batch_size": (50, 1000),
    "batch_step": 50, "lr": (1e-5, 1e-2), "weight_decay": (1e-8, 1e-1),
}  # fmt: skip


def test_report_preset_matches_report_text() -> None:
    from models.sweep_space import SweepSpace

    hsi = HSITrainConfig.preset("report", store="s").effective_settings()
    assert {k: hsi[k] for k in REPORT_TEXT} == REPORT_TEXT
    ft = HSITrainConfig.preset("report", store="s", mode="finetune").effective_settings()
    assert {k: ft[k] for k in REPORT_FINETUNE} == REPORT_FINETUNE
    assert ft["restore"] == "best-after-switch" and ft["alpha_schedule"] == "finetune"
    st = HSITrainConfig.preset("report", store="s", mode="student-teacher")
    assert st.teachers == ["SWIR"] and st.patience is None  # 3.7: SWIR teach VNIR, early stopping disabled
    assert HSITrainConfig.preset("report", store="s", mode="ssl").label_fraction == 0.1  # 3.5
    seis = SeismicTrainConfig.preset("report", store="s", mode="ssl")
    assert seis.labelled_events == 25 and seis.arch == "vgg16"  # 4.6 "25 event labels", 4.4 VGG16
    assert seis.effective_networks == "per-sensor"  # 4.5 "separate models"
    assert SeismicTrainConfig.preset("report", store="s", mode="student-teacher").effective_centre == "median"
    space = SweepSpace().model_dump()
    assert {
        k: tuple(v) if isinstance(v, list | tuple) else v for k, v in space.items() if k in REPORT_TABLE2
    } == REPORT_TABLE2


def test_report_preset_trains_on_unnormalised_data() -> None:
    small = {"store": "unused", "epochs": 1, "batch_size": 64, "width": 16, "hidden": [16], "device": "cpu"}
    r = train_hsi(HSITrainConfig.preset("report", **small), HSI)
    assert "band_mean" not in r.meta
    assert r.metrics["n_val"] == int((HSI.folds == 4).sum()) and r.metrics["test_fold"] == 5
