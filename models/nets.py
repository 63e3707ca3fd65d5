"""Networks for the report's experiments: per-modality MLPs, Hydra, and a VGG-style regressor.

Missing modalities: every multi-modality network takes a bool ``mask
[M, B]`` (True = present). Absent inputs may hold NaN; they are replaced by
zeros with :func:`torch.where` before any matmul, and batch-norm statistics
are taken over the present rows only (:class:`MaskedBatchNorm1d`), so an
absent sample changes neither the outputs of present ones nor the running
statistics. Outputs are still produced for absent entries (finite values,
shape ``[M, B, C]``) and **must be masked downstream** (the EMIN losses and
:mod:`models.metrics` take the same mask).

Factories: :func:`build_hsi_model` and :func:`build_seismic_model` build the network a training
config describes (the trainers and :func:`models.runs.load_model` share them);
:func:`forward_hsi` and :func:`shared_parameters` are what the HSI step needs of either net.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.layers import FP32Linear
from models.seismic_nets import SMALL_VGG, VGG_CFGS, PerSensorRegressor, VGGRegressor, build_seismic_model

if TYPE_CHECKING:
    from schemas.training import HSITrainConfig

__all__ = [
    "SMALL_VGG",
    "VGG_CFGS",
    "FP32Linear",
    "Hydra",
    "MaskedBatchNorm1d",
    "ModalityMLP",
    "PerModalityMLPs",
    "PerSensorRegressor",
    "VGGRegressor",
    "build_hsi_model",
    "build_seismic_model",
    "forward_hsi",
    "pack_modalities",
    "shared_parameters",
]

ModalityInputs = Sequence[Tensor] | Mapping[str, Tensor]


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` on ``[N, C]`` whose batch statistics use only the rows where ``mask`` is True.

    Without a mask (or when running statistics are used, i.e. in eval mode)
    it is exactly ``nn.BatchNorm1d``; state-dict keys are the same. With a
    mask in training, the mean and biased variance normalising the batch and
    the running-statistics update (unbiased variance, ``momentum``) follow
    PyTorch's formulas restricted to the masked rows; the running statistics
    are left unchanged when fewer than two rows are present.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Normalise ``x`` ``[N, C]``; ``mask`` ``[N]`` bool selects the rows that define the statistics."""
        use_batch_stats = self.training or self.running_mean is None
        if mask is None or not use_batch_stats:
            return super().forward(x)
        if x.dim() != 2:
            raise ValueError(f"MaskedBatchNorm1d with a mask expects [N, C], got {tuple(x.shape)}")
        m = mask.to(device=x.device, dtype=torch.bool).unsqueeze(1)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        n = m.sum().to(x.dtype)
        n_s = n.clamp(min=1)
        mean = torch.where(m, x, zero).sum(0) / n_s
        d = torch.where(m, x - mean, zero)
        var = (d * d).sum(0) / n_s
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        if self.training and self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            with torch.no_grad():
                ok = n >= 2
                self.num_batches_tracked.add_(ok.long())
                if self.momentum is None:
                    mom = 1.0 / self.num_batches_tracked.clamp(min=1).to(x.dtype)
                else:
                    mom = torch.as_tensor(self.momentum, dtype=x.dtype, device=x.device)
                unbiased = var * n / (n - 1).clamp(min=1)
                rm, rv = self.running_mean, self.running_var
                rm.copy_(torch.where(ok, (1 - mom) * rm + mom * mean.detach(), rm))
                rv.copy_(torch.where(ok, (1 - mom) * rv + mom * unbiased.detach(), rv))
        return y


class _MLPBody(nn.Module):
    """``[Linear → (Masked)BatchNorm → ReLU → Dropout] × L`` with an optional row mask for the BN.

    With BatchNorm the linear layers have no bias: BN subtracts the batch mean, so such a
    bias has an exactly zero gradient, and Adam would turn its round-off into ±lr steps that
    shift the running mean (and so the eval-mode outputs) differently from run to run.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], *, dropout: float, batchnorm: bool) -> None:
        super().__init__()
        dims = [in_dim, *hidden]
        self.linears = nn.ModuleList(nn.Linear(a, b, bias=not batchnorm) for a, b in itertools.pairwise(dims))
        self.norms = nn.ModuleList(MaskedBatchNorm1d(b) if batchnorm else nn.Identity() for b in dims[1:])
        self.drop = nn.Dropout(dropout)
        self.out_dim = dims[-1]

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        """Run the layers on ``h`` ``[N, in_dim]``."""
        for lin, norm in zip(self.linears, self.norms, strict=True):
            h = lin(h)
            h = norm(h, mask) if isinstance(norm, MaskedBatchNorm1d) else norm(h)
            h = self.drop(F.relu(h))
        return h


class ModalityMLP(nn.Module):
    """Fully connected classifier for one modality (report section 3.3, Table 2).

    ``hidden`` lists the hidden-layer widths (the report searched 2–4 layers
    of 10–120 units); each is followed by BatchNorm, ReLU and dropout; a
    final linear layer gives ``n_classes`` logits. ``forward(x, mask)``
    returns ``[B, n_classes]``; rows with ``mask`` False are zeroed before
    the first matmul and left out of the batch statistics.
    """

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        *,
        hidden: Sequence[int] = (64, 64),
        dropout: float = 0.0,
        batchnorm: bool = True,
    ) -> None:
        super().__init__()
        if in_dim < 1 or n_classes < 1 or any(h < 1 for h in hidden):
            raise ValueError("in_dim, n_classes and every hidden width must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.in_dim = in_dim
        self.n_classes = n_classes
        self.body = _MLPBody(in_dim, hidden, dropout=dropout, batchnorm=batchnorm)
        self.head = FP32Linear(self.body.out_dim, n_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits ``[B, n_classes]`` for inputs ``[B, in_dim]`` (``mask`` ``[B]`` bool, optional)."""
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
            x = torch.where(mask.unsqueeze(1), x, torch.zeros((), dtype=x.dtype, device=x.device))
        return self.head(self.body(x, mask))


def _ordered(inputs: ModalityInputs, names: Sequence[str] | None) -> list[Tensor]:
    """Per-modality inputs as a list in model order (a mapping is read by modality name)."""
    if isinstance(inputs, Mapping):
        if names is None:
            raise ValueError("a mapping of inputs needs the model to be built with modality names")
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(f"inputs lack modalities {missing}")
        return [inputs[n] for n in names]
    return list(inputs)


class PerModalityMLPs(nn.Module):
    """One independent :class:`ModalityMLP` per modality, trained jointly under EMIN (report 3.3).

    ``hidden``/``dropout`` may be one setting for all modalities or one per
    modality. ``forward(inputs, mask)`` takes a list (model order) or a dict
    (by ``names``) of ``[B, D_m]`` tensors and returns logits ``[M, B, C]``.
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        n_classes: int,
        *,
        hidden: Sequence[int] | Sequence[Sequence[int]] = (64, 64),
        dropout: float | Sequence[float] = 0.0,
        batchnorm: bool = True,
        names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        n_mod = len(in_dims)
        if names is not None and len(names) != n_mod:
            raise ValueError("names must have one entry per modality")
        per_hidden: list[Sequence[int]]
        if len(hidden) > 0 and isinstance(hidden[0], Sequence):
            per_hidden = [list(h) for h in hidden]  # type: ignore[arg-type]
            if len(per_hidden) != n_mod:
                raise ValueError("hidden given per modality must have one entry per modality")
        else:
            per_hidden = [list(hidden)] * n_mod  # type: ignore[arg-type]
        drops = [float(dropout)] * n_mod if isinstance(dropout, int | float) else [float(d) for d in dropout]
        if len(drops) != n_mod:
            raise ValueError("dropout given per modality must have one entry per modality")
        self.names = None if names is None else list(names)
        self.nets = nn.ModuleList(
            ModalityMLP(d, n_classes, hidden=h, dropout=p, batchnorm=batchnorm)
            for d, h, p in zip(in_dims, per_hidden, drops, strict=True)
        )

    def forward(self, inputs: ModalityInputs, mask: Tensor | None = None) -> Tensor:
        """Logits ``[M, B, C]``; ``mask`` ``[M, B]`` bool (True = present), optional."""
        xs = _ordered(inputs, self.names)
        if len(xs) != len(self.nets):
            raise ValueError(f"expected {len(self.nets)} modality inputs, got {len(xs)}")
        masks = [None] * len(xs) if mask is None else list(mask.unbind(0))
        outs = [net(x, m) for net, x, m in zip(self.nets, xs, masks, strict=True)]
        return torch.stack(outs, dim=0)


def pack_modalities(inputs: Sequence[Tensor], d_max: int | None = None) -> Tensor:
    """Stack per-modality ``[B, D_m]`` inputs into one ``[M, B, D_max]`` tensor, zero-padded on the right.

    A data-preparation copy (do it once per dataset or batch), not part of
    the network's compute.
    """
    d_max = max(x.shape[1] for x in inputs) if d_max is None else d_max
    return torch.stack([F.pad(x, (0, d_max - x.shape[1])) for x in inputs], dim=0)


class Hydra(nn.Module):
    """Hydra (report section 3.4): modality-specific input layers, one shared backbone.

    Each modality ``m`` has its own linear input layer ``D_m → width``; all
    M input layers run as **one** batched matmul (``torch.baddbmm``) on the
    inputs zero-padded to ``D_max`` against a stacked weight
    ``[M, D_max, width]`` (rows past ``D_m`` multiply zero-padded inputs, so
    they never matter and get zero gradient). The shared backbone
    (``[Linear → BN → ReLU → Dropout] × L`` and a linear head) then runs
    once on the ``[M·B, width]`` stack; all modalities share one class space.

    ``forward(x, mask)`` takes a packed ``[M, B, D_max]`` tensor (NaN allowed
    in absent rows and padding) or a list/dict of ``[B, D_m]`` tensors and
    returns logits ``[M, B, C]``.
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        n_classes: int,
        *,
        width: int = 64,
        hidden: Sequence[int] = (64, 64),
        dropout: float = 0.0,
        batchnorm: bool = True,
        names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if len(in_dims) < 1 or min(in_dims) < 1 or width < 1 or n_classes < 1:
            raise ValueError("need at least one modality and positive in_dims, width and n_classes")
        if names is not None and len(names) != len(in_dims):
            raise ValueError("names must have one entry per modality")
        self.in_dims = [int(d) for d in in_dims]
        self.names = None if names is None else list(names)
        n_mod, d_max = len(self.in_dims), max(self.in_dims)
        self.d_max = d_max
        self.in_weight = nn.Parameter(torch.empty(n_mod, d_max, width))
        self.in_bias = nn.Parameter(torch.empty(n_mod, width))
        band_mask = torch.arange(d_max).unsqueeze(0) < torch.tensor(self.in_dims).unsqueeze(1)
        self.register_buffer("band_mask", band_mask, persistent=False)
        self.in_drop = nn.Dropout(dropout)
        self.backbone = _MLPBody(width, hidden, dropout=dropout, batchnorm=batchnorm)
        self.head = FP32Linear(self.backbone.out_dim, n_classes)
        self.reset_input_parameters()

    def reset_input_parameters(self) -> None:
        """``nn.Linear``'s default init per modality (bound ``1/√D_m``); padded rows zero."""
        with torch.no_grad():
            for m, d in enumerate(self.in_dims):  # init only, not the forward path
                bound = 1.0 / math.sqrt(d)
                self.in_weight[m].zero_()
                self.in_weight[m, :d].uniform_(-bound, bound)
                self.in_bias[m].uniform_(-bound, bound)

    def input_layer(self, x: Tensor) -> Tensor:
        """All modality input layers in one kernel: ``[M, B, D_max] → [M, B, width]``."""
        return torch.baddbmm(self.in_bias.unsqueeze(1), x, self.in_weight)

    def forward(self, x: Tensor | ModalityInputs, mask: Tensor | None = None) -> Tensor:
        """Logits ``[M, B, C]``; ``mask`` ``[M, B]`` bool (True = present), optional."""
        if not isinstance(x, Tensor):
            x = pack_modalities(_ordered(x, self.names), self.d_max)
        n_mod, batch = x.shape[0], x.shape[1]
        if x.dim() != 3 or n_mod != len(self.in_dims) or x.shape[2] != self.d_max:
            raise ValueError(f"expected input [{len(self.in_dims)}, B, {self.d_max}], got {tuple(x.shape)}")
        band_mask: Tensor = self.band_mask  # type: ignore[assignment]
        keep = band_mask.unsqueeze(1)
        row_mask = None
        if mask is not None:
            mask = mask.to(device=x.device, dtype=torch.bool)
            keep = keep & mask.unsqueeze(2)
            row_mask = mask.reshape(n_mod * batch)
        x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        h = self.in_drop(F.relu(self.input_layer(x)))
        h = self.backbone(h.reshape(n_mod * batch, -1), row_mask)
        return self.head(h).reshape(n_mod, batch, -1)


# --------------------------------------------------------------------------------------------
# Factories: the network a training config describes
# --------------------------------------------------------------------------------------------


def build_hsi_model(
    config: HSITrainConfig, in_dims: Sequence[int], n_classes: int, names: Sequence[str]
) -> nn.Module:
    """Hydra (default) or per-modality MLPs as configured."""
    drop, bn, hid = config.dropout, config.batchnorm, config.hidden
    if config.net == "hydra":
        return Hydra(
            in_dims, n_classes, width=config.width, hidden=hid, dropout=drop, batchnorm=bn, names=names
        )
    return PerModalityMLPs(in_dims, n_classes, hidden=hid, dropout=drop, batchnorm=bn, names=names)


def shared_parameters(model: nn.Module) -> list[Tensor]:
    """Parameters MGDA balances: Hydra's backbone + head; every parameter of other models."""
    if isinstance(model, Hydra):
        return [*model.backbone.parameters(), *model.head.parameters()]
    return [p for p in model.parameters() if p.requires_grad]


def forward_hsi(model: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
    """Logits ``[M, B, C]`` from packed ``x [M, B, D_max]`` for Hydra or per-modality MLPs."""
    if isinstance(model, PerModalityMLPs):
        dims = [net.in_dim for net in model.nets]
        return model([x[m, :, :d] for m, d in enumerate(dims)], mask)
    out: Tensor = model(x, mask)
    return out
