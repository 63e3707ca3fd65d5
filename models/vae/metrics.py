"""Metrics of the GMM-VAE: unsupervised clustering accuracy (Hungarian), RMSE, linear probe."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ["cluster_accuracy", "cluster_label_map", "linear_probe", "masked_rmse"]


def _np(a: Tensor | np.ndarray) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def cluster_label_map(clusters: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> dict[int, int]:
    """Best one-to-one cluster → label map (Hungarian on the contingency table)."""
    c = _np(clusters).astype(np.int64)
    y = _np(labels).astype(np.int64)
    if c.size == 0:
        return {}
    k = int(max(c.max(), y.max())) + 1
    table = np.zeros((k, k), np.int64)
    np.add.at(table, (c, y), 1)
    rows, cols = linear_sum_assignment(-table)
    return {int(r): int(col) for r, col in zip(rows, cols, strict=True)}


def cluster_accuracy(clusters: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> float:
    """``max_m (1/N) sum_i 1{l_i = m(c_i)}`` over one-to-one maps ``m`` (the paper's acc)."""
    c = _np(clusters).astype(np.int64)
    y = _np(labels).astype(np.int64)
    if c.size == 0:
        return float("nan")
    mapping = cluster_label_map(c, y)
    pred = np.array([mapping.get(int(v), -1) for v in c])
    return float((pred == y).mean())


def masked_rmse(pred: Tensor, target: Tensor, select: Tensor) -> float:
    """Root mean square error over the selected rows ``[B]`` (all columns)."""
    if not bool(select.any()):
        return float("nan")
    d = (pred[select] - target[select]).double()
    return float(torch.sqrt((d**2).mean()))


def linear_probe(
    z_train: Tensor,
    y_train: Tensor,
    z_test: Tensor,
    y_test: Tensor,
    n_classes: int,
    *,
    seed: int = 0,
    steps: int = 300,
    weight_decay: float = 1e-3,
) -> dict[str, Any]:
    """Multinomial logistic regression on (standardised) latent means, full batch (L-BFGS).

    Returns test ``accuracy`` and ``macro_accuracy`` (mean per-class recall) and ``n_train``.
    """
    mean = z_train.mean(0, keepdim=True)
    std = z_train.std(0, keepdim=True).clamp_min(1e-6) if z_train.shape[0] > 1 else torch.ones_like(mean)
    a = ((z_train - mean) / std).double()
    b = ((z_test - mean) / std).double()
    g = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(a.shape[1], n_classes, generator=g, dtype=torch.float64)).requires_grad_()
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    yt = y_train.long()

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ w + bias, yt) + weight_decay * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (b @ w + bias).argmax(1)
    yv = y_test.long()
    acc = float((pred == yv).double().mean()) if yv.numel() else float("nan")
    recalls = [float((pred[yv == c] == c).double().mean()) for c in range(n_classes) if bool((yv == c).any())]
    return {
        "accuracy": acc,
        "macro_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "n_train": int(yt.numel()),
    }
