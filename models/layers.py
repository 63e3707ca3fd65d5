"""Layers shared by the networks: :class:`FP32Linear`, a head that stays float32 under autocast.

Regression and classification heads end in an :class:`FP32Linear`: under bf16 autocast (CUDA,
or CPU in tests) the backbone runs in bf16 but the last matmul, and so the outputs the
losses, EMIN and the metrics see, are float32 — a bf16 output has 8 mantissa bits, which
quantises distances and probabilities (about 0.4 % steps). Same parameters and state-dict
keys as :class:`torch.nn.Linear`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FP32Linear"]


class FP32Linear(nn.Linear):
    """``nn.Linear`` with autocast disabled: computed in the weight dtype (float32 under AMP)."""

    def forward(self, x: Tensor) -> Tensor:
        """``x @ W.T + b`` in float32 whatever the ambient autocast."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.to(self.weight.dtype))
