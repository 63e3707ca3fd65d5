"""Run folders: ``config.json``, ``settings.json``, ``metrics.json``, ``history.csv``, ``checkpoint.pt``, PNG plots.

``settings.json`` is every setting with its defaults resolved (``effective_settings()``:
EMIN term, α schedule, restore policy, …). Optional files, written when the run has them:
``labelled_ids.json`` (the labelled sample ids / trace indices and event ids),
``predictions.npz`` (HSI test set: ``sample_id``, ``probs [M, N, C]``, ``mask [M, N]``,
``labels``, ``modalities``; what ``emin fuse`` reads), ``predictions_before_switch.npz``
(the same at the fine-tuning switch), ``traces.npz`` (HSI probe-sample softmax per traced
epoch: ``epochs``, ``probs [E, M, K, C]``, ``mask``, ``sample_id``, ``labels``),
``locations.npz`` (seismic test traces: store position ``trace_index``, ``event_id``,
``sensor_type``, station/event coordinates, true ``distance_km``, predicted ``pred_lat``,
``pred_lon``, ``pred_distance_km``, ``pred_baz_deg`` and ``location_error_km``).

A checkpoint holds only tensors and plain Python types, so it loads with
``torch.load(path, weights_only=True)``: ``{"model": state_dict, "config": dict,
"meta": dict, "format": 1}``. :func:`load_model` rebuilds the network from it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pydantic_core import to_jsonable_python
from torch import nn

from models.nets import build_hsi_model
from models.seismic_nets import build_seismic_model
from pipeline.errors import InputError

__all__ = [
    "CHECKPOINT_FORMAT",
    "RUN_FILES",
    "RunRecord",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "save_run",
    "summary_markdown",
    "to_jsonable",
]

CHECKPOINT_FORMAT = 1
#: Files every run folder has (plots differ by kind, see :func:`save_run`).
RUN_FILES = (
    "config.json",
    "settings.json",
    "metrics.json",
    "history.csv",
    "checkpoint.pt",
    "learning_curves.png",
)


class RunRecord(Protocol):
    """What a run folder is written from (:class:`models.training.loop.TrainResult` is one)."""

    model: nn.Module
    config: Any  # a pydantic training config
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    meta: dict[str, Any]
    extras: dict[str, Any]
    run_dir: Path | None


def _array_to_list(obj: Any) -> Any:
    """Tensors and numpy arrays/scalars as Python lists/numbers (``to_jsonable_python``'s fallback)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy/tensor → lists/floats, NaN/inf → None, paths → str, keys → str.

    ``pydantic_core.to_jsonable_python`` with ``inf_nan_mode="null"`` and a fallback for arrays.
    """
    return to_jsonable_python(obj, fallback=_array_to_list, inf_nan_mode="null")


def _plain_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Meta with tensors moved to the CPU (everything else must already be plain)."""
    return {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in meta.items()}


def save_checkpoint(path: Path, model: nn.Module, config: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write a ``weights_only``-loadable checkpoint."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(
        {"format": CHECKPOINT_FORMAT, "model": state, "config": config, "meta": _plain_meta(meta)}, path
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)`` onto the CPU."""
    ckpt: dict[str, Any] = torch.load(Path(path), map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(
            f"unknown checkpoint format {ckpt.get('format')!r}",
            path=path,
            fix=f"give a checkpoint.pt written by this version (format {CHECKPOINT_FORMAT})",
        )
    return ckpt


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained network of a checkpoint (or run folder); returns ``(model, checkpoint)``."""
    from schemas.training import HSITrainConfig, SeismicTrainConfig  # pydantic only when loading

    p = Path(path)
    ckpt = load_checkpoint(p / "checkpoint.pt" if p.is_dir() else p)
    meta = ckpt["meta"]
    model: nn.Module
    if meta["kind"] == "hsi":
        cfg = HSITrainConfig.model_validate(ckpt["config"])
        model = build_hsi_model(cfg, meta["in_dims"], len(meta["class_names"]), meta["modalities"])
    else:
        model = build_seismic_model(SeismicTrainConfig.model_validate(ckpt["config"]), meta.get("sensors"))
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """``history.csv``: one row per epoch, the union of every row's columns in first-seen order."""
    cols: list[str] = []
    for row in history:
        cols += [c for c in row if c not in cols]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(history)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(path: Path, history: list[dict[str, float]], val_key: str) -> None:
    """Training loss terms and the validation metric per epoch."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ep = [r["epoch"] for r in history]
    for key in ("train_loss", "train_ce", "train_mse", "train_emin"):
        if history and key in history[0]:
            axes[0].plot(ep, [r[key] for r in history], label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("symlog", linthresh=1e-4)
    axes[0].legend()
    axes[1].plot(ep, [r.get(val_key, math.nan) for r in history], color="C3")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel(val_key)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(path: Path, cm: np.ndarray, class_names: list[str]) -> None:
    """Row-normalised fused confusion matrix on the test fold."""
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_modality_errors(path: Path, test: dict[str, dict[str, float]]) -> None:
    """Test macro error per modality and fused, with binomial standard-error bars."""
    plt = _plt()
    names = list(test)
    err = np.array([test[n]["macro_error"] for n in names], dtype=float)
    n = np.array([max(test[n]["n"], 1.0) for n in names])
    se = np.sqrt(np.clip(err * (1 - err), 0, None) / n)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(names, err, yerr=se, capsize=4, color=["C3" if k == "fused" else "C0" for k in names])
    ax.set_ylabel("test macro error")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_location_cdf(path: Path, extras: dict[str, Any]) -> None:
    """Empirical CDF of test location errors: model (all, per sensor) and predict-the-mean."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))

    def cdf(e: np.ndarray, label: str, **kw: Any) -> None:
        e = np.sort(np.asarray(e, dtype=float))
        if e.size:
            ax.plot(
                e, np.arange(1, e.size + 1) / e.size, label=f"{label} (median {np.median(e):.1f} km)", **kw
            )

    err = np.asarray(extras["location_error_km"])
    cdf(err, "model, all", color="k")
    sens = np.asarray(extras["sensor_type"])
    for i, s in enumerate(sorted(set(sens.tolist()))):
        cdf(err[sens == s], f"model, {s}", color=f"C{i}")
    for key, style in (("mean_centroid", ":"), ("mean_mean_target", "--")):
        if key in extras:
            cdf(extras[key], key.replace("mean_", "predict-the-mean: "), color="grey", linestyle=style)
    ax.set_xscale("log")
    ax.set_xlabel("location error (km)")
    ax.set_ylabel("fraction of traces")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_run(result: RunRecord, out_dir: Path) -> Path:
    """Write the run folder for ``result`` into ``out_dir`` (created; files overwritten)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = to_jsonable(result.config.model_dump(mode="json"))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    settings = to_jsonable(result.config.effective_settings())
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps(to_jsonable(result.metrics), indent=2) + "\n")
    if "labelled_ids" in result.extras:
        ids = to_jsonable(result.extras["labelled_ids"])
        (out_dir / "labelled_ids.json").write_text(json.dumps(ids) + "\n")
    for name in ("predictions", "predictions_before_switch", "traces", "locations"):
        if name in result.extras:
            np.savez_compressed(out_dir / f"{name}.npz", **result.extras[name])
    write_history(out_dir / "history.csv", result.history)
    save_checkpoint(out_dir / "checkpoint.pt", result.model, config, result.meta)
    kind = result.metrics["kind"]
    val_key = "val_macro_accuracy" if kind == "hsi" else "val_location_error_km_median"
    plot_learning_curves(out_dir / "learning_curves.png", result.history, val_key)
    if kind == "hsi":
        plot_confusion(
            out_dir / "confusion_matrix.png", result.extras["confusion"], result.metrics["class_names"]
        )
        plot_modality_errors(out_dir / "modality_errors.png", result.metrics["test"])
    else:
        plot_location_cdf(out_dir / "location_error_cdf.png", result.extras)
    return out_dir


def summary_markdown(result: RunRecord) -> str:
    """A short markdown report of a run (the flows publish it as a Prefect artifact)."""
    m = result.metrics
    lines = [
        f"# {m['kind'].upper()} training run: mode `{m['mode']}`"
        + (f", α `{m['alpha']}`" if m.get("alpha") else ""),
        "",
        f"- device `{m['device']}`, epochs run {m['epochs_run']} (best {m['best_epoch']}), "
        f"wall time {m['wall_time_s']:.1f} s",
        f"- labelled training samples {m['n_train_labelled']}, unlabelled used {m.get('n_unlabelled', 0)}",
    ]
    if result.run_dir is not None:
        lines.append(f"- run folder `{result.run_dir}`")
    lines.append("")
    if m["kind"] == "hsi":
        lines += ["| set | fused macro accuracy | cross-modality variance (mean) |", "|---|---|---|"]
        lines.append(f"| val | {m['val']['fused']['macro_accuracy']:.4f} | {m['val_variance_mean']:.5f} |")
        lines.append(f"| test | {m['test']['fused']['macro_accuracy']:.4f} | {m['test_variance_mean']:.5f} |")
        lines += ["", "| modality | test macro accuracy | n |", "|---|---|---|"]
        for name, st in m["test"].items():
            lines.append(f"| {name} | {st['macro_accuracy']:.4f} | {int(st['n'])} |")
    else:
        o = m["test"]["overall"]
        lines += ["| predictor | median location error (km) | mean (km) |", "|---|---|---|"]
        lines.append(f"| model | {o['location_error_km_median']:.2f} | {o['location_error_km_mean']:.2f} |")
        for name, st in m["predict_the_mean"].items():
            lines.append(
                f"| predict-the-mean ({name}) | {st['location_error_km_median']:.2f} | "
                f"{st['location_error_km_mean']:.2f} |"
            )
        lines += [
            "",
            f"median distance error {o['distance_error_km_median']:.2f} km, "
            f"median BAZ error {o['baz_error_deg_median']:.1f}°",
        ]
    return "\n".join(lines) + "\n"
