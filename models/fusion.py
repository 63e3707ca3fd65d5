"""Post-hoc fusion of separately trained runs (report 3.3: the per-modality baseline, "HSI-1").

Each HSI run folder has ``predictions.npz`` (test set: ``sample_id [N]``, ``probs [M, N, C]``
softmax, ``mask [M, N]``, ``labels [N]``, ``modalities [M]``, ``class_names``). Fusion is the
report's: per sample id, the mean of the softmax over every (run, modality) that observed the
sample, then argmax; samples no run observed are left out. :func:`fuse_runs` writes the
fused ``metrics.json`` and ``predictions.npz`` (one "fused" modality) into a folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.metrics import confusion_matrix, macro_accuracy
from pipeline.errors import InputError

__all__ = ["fuse_predictions", "fuse_runs", "load_predictions"]


def load_predictions(run_dir: str | Path) -> dict[str, np.ndarray]:
    """A run folder's ``predictions.npz`` as a dict of arrays."""
    path = Path(run_dir) / "predictions.npz"
    if not path.exists():
        raise InputError(
            "run folder has no predictions.npz",
            path=path,
            fix="give HSI run folders written by `emin train hsi`",
        )
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def fuse_predictions(preds: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Mean softmax per sample id over the observing (run, modality) pairs; see the module docstring.

    Returns ``sample_id``, ``probs [N, C]``, ``n_models [N]`` (how many predictions were
    averaged), ``labels``, ``pred`` (argmax), and ``modalities`` (every run's, in order).
    """
    if not preds:
        raise InputError("no runs to fuse", fix="give at least one run folder")
    ids = np.unique(np.concatenate([p["sample_id"] for p in preds]))
    n_cls = int(preds[0]["probs"].shape[-1])
    total = np.zeros((ids.size, n_cls))
    count = np.zeros(ids.size, np.int64)
    labels = np.full(ids.size, -1, np.int64)
    mods: list[str] = []
    for p in preds:
        if int(p["probs"].shape[-1]) != n_cls:
            raise InputError("runs disagree on the number of classes", fix="fuse runs of one store")
        pos = np.searchsorted(ids, p["sample_id"])
        mask = p["mask"].astype(bool)
        total[pos] += np.einsum("mnc,mn->nc", p["probs"].astype(np.float64), mask)
        count[pos] += mask.sum(axis=0)
        if np.any((labels[pos] >= 0) & (labels[pos] != p["labels"])):
            raise InputError("runs disagree on a sample's label", fix="fuse runs of one store and split")
        labels[pos] = p["labels"]
        mods += [str(m) for m in p["modalities"]]
    seen = count > 0
    probs = total[seen] / count[seen, None]
    return {
        "sample_id": ids[seen],
        "probs": probs,
        "n_models": count[seen],
        "labels": labels[seen],
        "pred": probs.argmax(axis=1),
        "modalities": mods,
    }


def fuse_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Fuse the runs' test predictions; write ``metrics.json`` and ``predictions.npz`` to ``out_dir``."""
    preds = [load_predictions(r) for r in run_dirs]
    fused = fuse_predictions(preds)
    n_cls = int(fused["probs"].shape[1])
    class_names = [str(c) for c in preds[0].get("class_names", np.arange(n_cls))]
    per_run = {
        str(r): macro_accuracy(p["probs"].mean(axis=0).argmax(axis=1)[p["mask"].any(axis=0)],
                               p["labels"][p["mask"].any(axis=0)], n_classes=n_cls)
        for r, p in zip(run_dirs, preds, strict=True)
    }  # fmt: skip
    acc = macro_accuracy(fused["pred"], fused["labels"], n_classes=n_cls)
    metrics = {
        "kind": "hsi-fused",
        "runs": [str(r) for r in run_dirs],
        "modalities": fused["modalities"],
        "n_test": int(fused["sample_id"].size),
        "fused": {"macro_accuracy": acc, "macro_error": 1.0 - acc},
        "accuracy": float(np.mean(fused["pred"] == fused["labels"])),
        "per_run_macro_accuracy_on_seen": per_run,
        "confusion": confusion_matrix(fused["pred"], fused["labels"], n_cls).tolist(),
        "class_names": class_names,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    np.savez_compressed(
        out / "predictions.npz",
        sample_id=fused["sample_id"],
        probs=fused["probs"][None].astype(np.float32),
        mask=np.ones((1, fused["sample_id"].size), bool),
        labels=fused["labels"],
        modalities=np.asarray(["fused"]),
        n_models=fused["n_models"],
    )
    return metrics
