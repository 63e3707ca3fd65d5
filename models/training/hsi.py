"""HSI fusion training (report section 3): Hydra or per-modality MLPs under CE + EMIN.

:func:`train_hsi` is one run; :func:`prepare_hsi` (the split, the labelled subset and the
band standardisation) and :func:`evaluate_hsi` / :func:`hsi_metrics` are shared with the
stacked trainer (:mod:`models.training.stacked`), so both draw and score runs the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from models.data import HSIData, load_hsi, stratified_label_split
from models.emin import emin_hsi, masked_ce
from models.metrics import (
    classification_metrics,
    confusion_matrix,
    fused_probs,
    predictive_variance,
    variance_distribution,
)
from models.nets import build_hsi_model, forward_hsi, shared_parameters
from models.runs import save_run
from models.training.hsi_outputs import ProbeTracer, chain_hooks, eval_summary, test_predictions
from models.training.loop import (
    EarlyStopper,
    EpochCallback,
    TrainResult,
    alpha_schedule,
    autocast_for,
    epoch_order,
    fit_epochs,
    optimise,
    resolve_device,
    run_batches,
    seeded_generator,
    switch_epoch_of,
    train_context,
)
from pipeline.errors import DataSelectionError, TrainingConfigError

if TYPE_CHECKING:
    from schemas.training import HSITrainConfig

__all__ = [
    "HSISplit",
    "evaluate_hsi",
    "hsi_epoch",
    "hsi_meta",
    "hsi_metrics",
    "hsi_split",
    "predict_hsi",
    "prepare_hsi",
    "teacher_vector",
    "train_hsi",
]


def teacher_vector(teachers: Sequence[str], modalities: Sequence[str]) -> Tensor:
    """Bool ``[M]``: modality names matching a teacher name or prefix (``SWIR`` → SWIR1…)."""
    vec = torch.tensor([any(m == t or m.startswith(t) for t in teachers) for m in modalities])
    if not bool(vec.any()) or bool(vec.all()):
        raise TrainingConfigError(
            f"teachers {list(teachers)} must select some but not all of {list(modalities)}",
            field="teachers",
            fix="name teacher modalities (or prefixes) that leave at least one student",
        )
    return vec


@torch.no_grad()
def predict_hsi(
    model: nn.Module, data: HSIData, idx: Tensor, *, chunk: int = 8192, amp: bool = True
) -> Tensor:
    """Eval-mode logits ``[M, len(idx), C]`` float32, computed in chunks."""
    was = model.training
    model.eval()
    outs = []
    device = data.x.device
    for s in range(0, int(idx.numel()), chunk):
        j = idx[s : s + chunk]
        with autocast_for(device, amp):
            outs.append(forward_hsi(model, data.x[:, j], data.mask[:, j]).float())
    model.train(was)
    if not outs:
        return torch.zeros((data.x.shape[0], 0, 1), device=device)
    return torch.cat(outs, dim=1)


def evaluate_hsi(
    model: nn.Module, data: HSIData, idx: Tensor, *, chunk: int = 8192, amp: bool = True
) -> dict[str, Any]:
    """Fused/per-modality macro accuracy, mean cross-modality variance and the fused confusion matrix."""
    logits = predict_hsi(model, data, idx, chunk=chunk, amp=amp)
    labels = data.labels[idx]
    mask = data.mask[:, idx]
    n_cls = len(data.class_names)
    cls = classification_metrics(logits, labels, mask, n_classes=n_cls, names=data.modalities)
    var = predictive_variance(logits, mask)
    fused = fused_probs(logits, mask)
    seen = mask.any(dim=0)
    cm = confusion_matrix(fused[seen].argmax(dim=-1), labels[seen], n_cls)
    finite = var[np.isfinite(var)]
    return {
        "logits": logits,
        "variance_distribution": variance_distribution(var),
        "classification": cls,
        "variance_mean": float(finite.mean()) if finite.size else math.nan,
        "variance_median": float(np.median(finite)) if finite.size else math.nan,
        "variance_p95": float(np.quantile(finite, 0.95)) if finite.size else math.nan,
        "confusion": cm,
    }


def hsi_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: HSIData,
    order: Tensor,
    labelled: Tensor,
    *,
    batch_size: int,
    alpha: float | None,
    teacher: Tensor | None = None,
    shared: Sequence[Tensor] = (),
    normalization: str = "none",
    amp: bool = True,
) -> Tensor:
    """One training epoch over ``order`` (sample indices, already shuffled) in batches.

    ``labelled`` (bool, aligned with ``order``) selects the samples whose CE counts; EMIN is
    computed unless ``alpha == 1`` (``alpha=None`` = MGDA on ``shared``). Returns the epoch
    means ``[loss, ce, emin, alpha]`` as a device tensor (EMIN NaN when not computed); no
    host sync inside.
    """
    device = data.x.device
    need_emin = alpha is None or alpha < 1.0

    def step(idx: Tensor, lab: Tensor | None) -> Tensor:
        assert lab is not None
        xb, mb, yb = data.x[:, idx], data.mask[:, idx], data.labels[idx]
        with autocast_for(device, amp):
            logits = forward_hsi(model, xb, mb)
        logits = logits.float()
        ce = masked_ce(logits, yb, mb & lab.unsqueeze(0))
        emin = emin_hsi(logits, mb, teacher) if need_emin else torch.full_like(ce, float("nan"))
        return optimise(opt, ce, emin, alpha, shared, normalization)

    return run_batches(order, labelled, batch_size, step)


@dataclass(frozen=True)
class HSISplit:
    """Which samples a run trains, validates and tests on (indices into the :class:`HSIData`)."""

    labelled: np.ndarray  # training samples whose label counts
    unlabelled: np.ndarray  # the rest of the training folds (used when unlabelled="use")
    train_idx: Tensor  # what an epoch iterates: labelled, then (ssl) unlabelled
    is_labelled: Tensor  # bool, aligned with train_idx
    val_idx: Tensor
    test_idx: Tensor
    test_fold: int


def hsi_split(config: HSITrainConfig, data: HSIData) -> HSISplit:
    """Folds → train/val/test and the stratified labelled subset (:func:`models.data.stratified_label_split`).

    Training samples are those of the training folds seen by at least one (selected) modality;
    the label budget is ``label_fraction`` or ``labelled_per_class``.
    """
    device = data.x.device
    folds = data.folds.cpu().numpy()
    test_fold = config.test_fold if config.test_fold is not None else int(folds.max())
    if config.val_fold == test_fold:
        raise TrainingConfigError(
            "val_fold and test_fold must differ",
            field="val_fold",
            fix="choose a validation fold other than the test fold",
        )
    seen = data.mask.any(dim=0).cpu().numpy()
    train_all = np.flatnonzero((folds != test_fold) & (folds != config.val_fold) & seen)
    labels = data.labels.cpu().numpy()[train_all]
    lab_rel, unlab_rel = stratified_label_split(
        labels, config.label_fraction, config.seed, per_class=config.labelled_per_class
    )
    labelled, unlabelled = train_all[lab_rel], train_all[unlab_rel]
    train_np = np.concatenate([labelled, unlabelled]) if config.uses_unlabelled else labelled
    val_idx = torch.from_numpy(np.flatnonzero((folds == config.val_fold) & seen)).to(device)
    test_idx = torch.from_numpy(np.flatnonzero((folds == test_fold) & seen)).to(device)
    if train_np.size == 0 or val_idx.numel() == 0:
        raise DataSelectionError(
            "empty training or validation set (check val_fold/test_fold)",
            fix=f"pick folds present in the store ({sorted(set(folds.tolist()))})",
        )
    return HSISplit(
        labelled=labelled,
        unlabelled=unlabelled,
        train_idx=torch.from_numpy(train_np).to(device),
        is_labelled=torch.from_numpy(np.arange(train_np.size) < labelled.size).to(device),
        val_idx=val_idx,
        test_idx=test_idx,
        test_fold=test_fold,
    )


def hsi_meta(data: HSIData) -> dict[str, Any]:
    """What a checkpoint needs to rebuild an HSI model and name its outputs."""
    return {
        "kind": "hsi",
        "in_dims": list(data.in_dims),
        "modalities": list(data.modalities),
        "class_names": list(data.class_names),
    }


def prepare_hsi(config: HSITrainConfig, data: HSIData) -> tuple[HSIData, HSISplit, dict[str, Any]]:
    """The split, then (``normalise="zscore"``) the data z-scored with the labelled samples' band statistics.

    Returns the (standardised) data, the split and the checkpoint meta (with the statistics).
    """
    split = hsi_split(config, data)
    meta = hsi_meta(data)
    if config.effective_normalise == "zscore":
        band_mean, band_std = data.band_stats(torch.from_numpy(split.labelled).to(data.x.device))
        data = data.standardise(band_mean, band_std)
        meta |= {"band_mean": band_mean.cpu(), "band_std": band_std.cpu()}
    return data, split, meta


def hsi_metrics(
    config: HSITrainConfig,
    data: HSIData,
    history: list[dict[str, Any]],
    val: dict[str, Any],
    test: dict[str, Any],
    *,
    split: HSISplit,
    alpha: str | None,
    device: torch.device,
    best_epoch: int,
    start: float,
) -> dict[str, Any]:
    """The metrics.json content of one HSI run (single or one trial of a stack)."""
    out = {
        "kind": "hsi",
        "mode": config.mode,
        "alpha": alpha,
        "net": config.net,
        "device": str(device),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_early": len(history) < config.epochs,
        "alpha_last_epoch": history[-1]["alpha"] if history else math.nan,
        "n_train_labelled": int(split.labelled.size),
        "n_val": int(split.val_idx.numel()),
        "n_test": int(split.test_idx.numel()),
        "val_fold": config.val_fold,
        "test_fold": split.test_fold,
        "val": val["classification"],
        "test": test["classification"],
        "val_variance_mean": val["variance_mean"],
        "test_variance_mean": test["variance_mean"],
        "test_variance_median": test["variance_median"],
        "test_variance_p95": test["variance_p95"],
        "test_variance_distribution": test["variance_distribution"],
        "class_names": data.class_names,
        "modalities": data.modalities,
        "wall_time_s": time.perf_counter() - start,
    }
    if config.uses_unlabelled:
        out["n_unlabelled"] = int(split.unlabelled.size)
    return out


def train_hsi(
    config: HSITrainConfig, data: HSIData | None = None, *, on_epoch: EpochCallback | None = None
) -> TrainResult:
    """Train an HSI fusion classifier as configured; write the run folder when ``config.out_dir``."""
    start = time.perf_counter()
    device = resolve_device(config.device)
    with train_context(config.seed, device, config.deterministic):
        data = (load_hsi(config.store, modalities=config.modalities) if data is None else data).to(device)
        data, split, meta = prepare_hsi(config, data)
        model = build_hsi_model(config, data.in_dims, len(data.class_names), data.modalities).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        teacher = (
            teacher_vector(config.teachers, data.modalities).to(device)
            if config.effective_emin == "student-teacher"
            else None
        )
        schedule = alpha_schedule(config)
        shared = shared_parameters(model) if schedule is None else []
        gen = seeded_generator(device, config.seed)
        stopper = EarlyStopper("max", config.patience)
        n_train, bs, chunk = int(split.train_idx.numel()), config.batch_size, config.eval_chunk
        tracer = (
            ProbeTracer(
                config, data, split.test_idx, lambda idx: predict_hsi(model, data, idx, amp=config.amp)
            )
            if config.trace_samples
            else None
        )

        def run_epoch(alpha_e: float | None) -> Tensor:
            perm = epoch_order(n_train, gen, device)
            return hsi_epoch(
                model, opt, data, split.train_idx[perm], split.is_labelled[perm], batch_size=bs,
                alpha=alpha_e, teacher=teacher, shared=shared, normalization=config.mgda_normalization,
                amp=config.amp,
            )  # fmt: skip

        def evaluate(idx: Tensor) -> dict[str, Any]:
            return evaluate_hsi(model, data, idx, chunk=chunk, amp=config.amp)

        def validate() -> dict[str, float]:
            ev = evaluate(split.val_idx)
            return {
                "val_macro_accuracy": ev["classification"]["fused"]["macro_accuracy"],
                "val_variance": ev["variance_mean"],
            }

        before: dict[str, Any] = {}
        switch_predictions: dict[str, np.ndarray] = {}

        def on_switch(epoch: int) -> None:
            test_ev = evaluate(split.test_idx)
            before.update(
                epoch=epoch - 1, val=eval_summary(evaluate(split.val_idx)), test=eval_summary(test_ev)
            )
            switch_predictions.update(test_predictions(data, split.test_idx, test_ev))

        fit = fit_epochs(
            model, stopper, epochs=config.epochs, schedule=schedule, n_train=n_train,
            run_epoch=run_epoch, validate=validate, supervised="ce", score="val_macro_accuracy",
            on_epoch=chain_hooks(tracer, on_epoch), restore=config.effective_restore,
            switch_epoch=switch_epoch_of(config), on_switch=on_switch,
        )  # fmt: skip

        val = evaluate(split.val_idx)
        test = evaluate(split.test_idx)
        metrics = hsi_metrics(
            config, data, fit.history, val, test, split=split, alpha=config.alpha_label, device=device,
            best_epoch=stopper.best_epoch, start=start,
        )  # fmt: skip
        metrics |= {
            "restore": fit.restore,
            "restored_epoch": fit.restored_epoch,
            "switch_epoch": fit.switch_epoch,
        }
        metrics["before_switch"] = before or None
        metrics["final"] = {"epoch": fit.restored_epoch, "val": eval_summary(val), "test": eval_summary(test)}
        metrics["test_confusion"] = test["confusion"].tolist()
        extras: dict[str, Any] = {
            "confusion": test["confusion"],
            "predictions": test_predictions(data, split.test_idx, test),
            "labelled_ids": {
                "labelled_sample_id": data.sample_id.cpu()[torch.from_numpy(split.labelled)].tolist()
            },
        }
        if switch_predictions:
            extras["predictions_before_switch"] = switch_predictions
        if tracer is not None:
            extras["traces"] = tracer.arrays()
    result = TrainResult(model, config, fit.history, metrics, meta, extras=extras)
    if config.out_dir:
        result.run_dir = save_run(result, Path(config.out_dir))
    return result
