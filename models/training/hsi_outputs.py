"""What an HSI run writes besides metrics: test predictions (``predictions.npz``, read by
``emin fuse``; ``predictions_before_switch.npz`` at a fine-tuning switch, report Fig. 11),
probe-sample traces (``traces.npz``, report Fig. 9) and evaluation summaries."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from models.data import HSIData
from models.training.loop import EpochCallback

if TYPE_CHECKING:
    from schemas.training import HSITrainConfig

__all__ = ["ProbeTracer", "chain_hooks", "eval_summary", "test_predictions"]


def eval_summary(ev: dict[str, Any]) -> dict[str, Any]:
    """An evaluation as it goes into metrics.json (no logits, no confusion array)."""
    keep = ("classification", "variance_mean", "variance_median", "variance_p95", "variance_distribution")
    return {k: ev[k] for k in keep}


def test_predictions(data: HSIData, idx: Tensor, ev: dict[str, Any]) -> dict[str, np.ndarray]:
    """``predictions.npz``: per-sample softmax of the evaluated set (what ``emin fuse`` reads)."""
    return {
        "sample_id": data.sample_id[idx].cpu().numpy(),
        "probs": torch.softmax(ev["logits"], dim=-1).cpu().numpy().astype(np.float32),
        "mask": data.mask[:, idx].cpu().numpy(),
        "labels": data.labels[idx].cpu().numpy(),
        "modalities": np.asarray(data.modalities),
        "class_names": np.asarray(data.class_names),
    }


class ProbeTracer:
    """Fig. 9 traces: per-modality softmax of ``k`` fixed test samples every ``every`` epochs."""

    def __init__(
        self, config: HSITrainConfig, data: HSIData, test_idx: Tensor, predict: Callable[[Tensor], Tensor]
    ) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 3]))
        n = int(test_idx.numel())
        pick = np.sort(rng.permutation(n)[: min(config.trace_samples, n)])
        self.idx = test_idx[torch.from_numpy(pick).to(test_idx.device)]
        self.predict, self.data, self.config = predict, data, config
        self.epochs: list[int] = []
        self.probs: list[np.ndarray] = []

    def __call__(self, epoch: int, epochs: int, row: dict[str, float]) -> None:
        if epoch % self.config.trace_every and epoch != epochs - 1:
            return
        logits = self.predict(self.idx)
        self.epochs.append(epoch)
        self.probs.append(torch.softmax(logits, dim=-1).cpu().numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        """``traces.npz`` content."""
        return {
            "epochs": np.asarray(self.epochs, np.int64),
            "probs": np.stack(self.probs) if self.probs else np.zeros((0,)),
            "mask": self.data.mask[:, self.idx].cpu().numpy(),
            "sample_id": self.data.sample_id[self.idx].cpu().numpy(),
            "labels": self.data.labels[self.idx].cpu().numpy(),
            "modalities": np.asarray(self.data.modalities),
        }


def chain_hooks(*hooks: EpochCallback | None) -> EpochCallback | None:
    """One epoch hook calling each given hook in turn."""
    live = [h for h in hooks if h is not None]
    if not live:
        return None

    def call(epoch: int, epochs: int, row: dict[str, float]) -> None:
        for h in live:
            h(epoch, epochs, row)

    return call
