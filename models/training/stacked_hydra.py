"""K Hydra networks as stacked tensors, and Adam over them (the model side of :mod:`models.training.stacked`).

:class:`StackedHydra` holds K Hydra networks of one architecture family (same modalities,
classes and number of backbone layers) as stacked tensors — input weights
``[K, M, D_max, W0]``, backbone weights ``[K, W_l, W_{l+1}]``, head ``[K, W_L, C]`` — with
every width padded to the largest over the trials and per-trial unit masks that keep the
padding exactly zero (zero init, zeroed activations, hence zero gradients). One forward is
a handful of ``baddbmm`` kernels for all K trials. :class:`StackedAdam` is Adam (PyTorch's
formula, L2 weight decay as in ``torch.optim.Adam``) over the stacked tensors with a ``[K]``
learning-rate and weight-decay vector.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.nets import Hydra

__all__ = ["StackedAdam", "StackedHydra"]


class StackedHydra(nn.Module):
    """K Hydra networks as stacked tensors with a leading trial dimension (see module docstring).

    ``forward(x, mask)``: ``x`` ``[K, M, B, D_max]`` (one batch per trial) or ``[M, B, D_max]``
    (one batch shared by all trials), ``mask`` ``[K, M, B]`` / ``[M, B]`` bool; returns logits
    ``[K, M, B, C]``. Build it from trained or freshly initialised :class:`Hydra` models with
    :meth:`from_models`; get trial ``k`` back as a :class:`Hydra` with :meth:`unstack`.
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        n_classes: int,
        *,
        widths: Sequence[int],
        hidden: Sequence[Sequence[int]],
        dropouts: Sequence[float],
        batchnorm: bool = True,
        names: Sequence[str] | None = None,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        k = len(widths)
        if k < 1 or len(hidden) != k or len(dropouts) != k:
            raise ValueError("widths, hidden and dropouts need one entry per trial (K >= 1)")
        n_layers = {len(h) for h in hidden}
        if len(n_layers) != 1:
            raise ValueError(f"all trials need the same number of backbone layers, got {sorted(n_layers)}")
        self.in_dims = [int(d) for d in in_dims]
        self.names = None if names is None else list(names)
        self.n_classes = n_classes
        self.widths = [int(w) for w in widths]
        self.hidden = [[int(v) for v in h] for h in hidden]
        self.dropouts = [float(p) for p in dropouts]
        self.batchnorm = batchnorm
        self.momentum, self.eps = momentum, eps
        n_mod, d_max = len(self.in_dims), max(self.in_dims)
        self.d_max = d_max
        per_layer = [self.widths] + [[h[i] for h in self.hidden] for i in range(len(self.hidden[0]))]
        self.layer_dims = [max(ws) for ws in per_layer]  # padded width after each layer
        self.in_weight = nn.Parameter(torch.zeros(k, n_mod, d_max, self.layer_dims[0]))
        self.in_bias = nn.Parameter(torch.zeros(k, n_mod, self.layer_dims[0]))
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.bn_weights = nn.ParameterList()
        self.bn_biases = nn.ParameterList()
        for a, b in itertools.pairwise(self.layer_dims):
            self.weights.append(nn.Parameter(torch.zeros(k, a, b)))
            if not batchnorm:  # as in Hydra: no bias right before BatchNorm
                self.biases.append(nn.Parameter(torch.zeros(k, b)))
            else:
                self.bn_weights.append(nn.Parameter(torch.ones(k, b)))
                self.bn_biases.append(nn.Parameter(torch.zeros(k, b)))
        self.head_weight = nn.Parameter(torch.zeros(k, self.layer_dims[-1], n_classes))
        self.head_bias = nn.Parameter(torch.zeros(k, n_classes))
        band_mask = torch.arange(d_max).unsqueeze(0) < torch.tensor(self.in_dims).unsqueeze(1)
        self.register_buffer("band_mask", band_mask, persistent=False)
        self.padded: list[bool] = []  # per layer: does any trial have padded units?
        for i, (ws, pad) in enumerate(zip(per_layer, self.layer_dims, strict=True)):
            um = (torch.arange(pad).unsqueeze(0) < torch.tensor(ws).unsqueeze(1)).float()
            self.register_buffer(f"unit_mask_{i}", um, persistent=False)
            self.padded.append(min(ws) < pad)
        for i, b in enumerate(self.layer_dims[1:]):
            if batchnorm:
                self.register_buffer(f"running_mean_{i}", torch.zeros(k, b))
                self.register_buffer(f"running_var_{i}", torch.ones(k, b))
                self.register_buffer(f"tracked_{i}", torch.zeros(k, dtype=torch.long))
        self.register_buffer("p_drop", torch.tensor(self.dropouts), persistent=False)

    @property
    def k(self) -> int:
        """Number of stacked trials."""
        return len(self.widths)

    def _buf(self, name: str) -> Tensor:
        out: Tensor = getattr(self, name)
        return out

    @classmethod
    def from_models(cls, models: Sequence[Hydra], dropouts: Sequence[float] | None = None) -> StackedHydra:
        """Stack trained or freshly initialised Hydras of one family (weights copied, padded)."""
        first = models[0]
        norms = [isinstance(n, nn.BatchNorm1d) for n in first.backbone.norms]
        drops = dropouts if dropouts is not None else [float(m.in_drop.p) for m in models]
        out = cls(
            first.in_dims,
            first.head.out_features,
            widths=[m.in_weight.shape[2] for m in models],
            hidden=[
                [int(lin.out_features) for lin in m.backbone.linears if isinstance(lin, nn.Linear)]
                for m in models
            ],
            dropouts=drops,
            batchnorm=all(norms) and bool(norms),
            names=first.names,
        )
        with torch.no_grad():
            for k, m in enumerate(models):
                if m.in_dims != first.in_dims:
                    raise ValueError("all Hydras must have the same modality input dims")
                w = m.in_weight.shape[2]
                out.in_weight[k, :, :, :w] = m.in_weight
                out.in_bias[k, :, :w] = m.in_bias
                for i, lin in enumerate(m.backbone.linears):
                    assert isinstance(lin, nn.Linear)
                    out.weights[i][k, : lin.in_features, : lin.out_features] = lin.weight.T
                    if lin.bias is not None:
                        out.biases[i][k, : lin.out_features] = lin.bias
                    norm = m.backbone.norms[i]
                    if out.batchnorm:
                        assert isinstance(norm, nn.BatchNorm1d)
                        assert norm.running_mean is not None and norm.running_var is not None
                        o = lin.out_features
                        out.bn_weights[i][k, :o] = norm.weight
                        out.bn_biases[i][k, :o] = norm.bias
                        out._buf(f"running_mean_{i}")[k, :o] = norm.running_mean
                        out._buf(f"running_var_{i}")[k, :o] = norm.running_var
                        out._buf(f"tracked_{i}")[k] = int(norm.num_batches_tracked or 0)
                h = m.head
                out.head_weight[k, : h.in_features] = h.weight.T
                out.head_bias[k] = h.bias
        return out.to(first.in_weight.device)

    def unstack(self, k: int) -> Hydra:
        """Trial ``k`` as a plain :class:`Hydra` (padding dropped, running statistics kept)."""
        hyd = Hydra(
            self.in_dims,
            self.n_classes,
            width=self.widths[k],
            hidden=self.hidden[k],
            dropout=self.dropouts[k],
            batchnorm=self.batchnorm,
            names=self.names,
        ).to(self.in_weight.device)
        dims = [self.widths[k], *self.hidden[k]]
        with torch.no_grad():
            hyd.in_weight.copy_(self.in_weight[k, :, :, : dims[0]])
            hyd.in_bias.copy_(self.in_bias[k, :, : dims[0]])
            for i, (a, b) in enumerate(itertools.pairwise(dims)):
                lin = hyd.backbone.linears[i]
                assert isinstance(lin, nn.Linear)
                lin.weight.copy_(self.weights[i][k, :a, :b].T)
                if lin.bias is not None:
                    lin.bias.copy_(self.biases[i][k, :b])
                if self.batchnorm:
                    norm = hyd.backbone.norms[i]
                    assert isinstance(norm, nn.BatchNorm1d)
                    assert norm.running_mean is not None and norm.running_var is not None
                    assert norm.num_batches_tracked is not None
                    norm.weight.copy_(self.bn_weights[i][k, :b])
                    norm.bias.copy_(self.bn_biases[i][k, :b])
                    norm.running_mean.copy_(self._buf(f"running_mean_{i}")[k, :b])
                    norm.running_var.copy_(self._buf(f"running_var_{i}")[k, :b])
                    norm.num_batches_tracked.fill_(int(self._buf(f"tracked_{i}")[k]))
            hyd.head.weight.copy_(self.head_weight[k, : dims[-1]].T)
            hyd.head.bias.copy_(self.head_bias[k])
        hyd.train(self.training)
        return hyd

    def shared_parameters(self) -> list[Tensor]:
        """The stacked backbone + head parameters (what MGDA balances, as for :class:`Hydra`)."""
        return [
            *self.weights,
            *self.biases,
            *self.bn_weights,
            *self.bn_biases,
            self.head_weight,
            self.head_bias,
        ]

    def _mask_units(self, i: int, h: Tensor) -> Tensor:
        """Zero the padded units of layer ``i`` (skipped when no trial is narrower than the pad)."""
        if not self.padded[i]:
            return h
        return h * self._buf(f"unit_mask_{i}").unsqueeze(1).to(h.dtype)

    def _dropout(self, h: Tensor) -> Tensor:
        """Inverted dropout with a per-trial rate (no-op in eval mode or when every rate is 0)."""
        if not self.training or max(self.dropouts) == 0.0:
            return h
        p = self._buf("p_drop").to(h.dtype).view(-1, *([1] * (h.dim() - 1)))
        keep = torch.rand_like(h) >= p
        return torch.where(keep, h / (1.0 - p), torch.zeros((), dtype=h.dtype, device=h.device))

    def _norm(self, i: int, h: Tensor, rows: Tensor) -> Tensor:
        """Per-trial masked batch norm of ``h`` ``[K, N, W]`` (rows ``[K, N]`` bool), as MaskedBatchNorm1d."""
        gamma, beta = self.bn_weights[i].unsqueeze(1), self.bn_biases[i].unsqueeze(1)
        rm, rv = self._buf(f"running_mean_{i}"), self._buf(f"running_var_{i}")
        if not self.training:
            y = (h - rm.unsqueeze(1)) * torch.rsqrt(rv.unsqueeze(1) + self.eps)
            return y * gamma + beta
        m = rows.unsqueeze(2)
        zero = torch.zeros((), dtype=h.dtype, device=h.device)
        n = m.sum(dim=1).to(h.dtype)  # [K, 1]
        n_s = n.clamp(min=1)
        mean = torch.where(m, h, zero).sum(dim=1) / n_s  # [K, W]
        d = torch.where(m, h - mean.unsqueeze(1), zero)
        var = (d * d).sum(dim=1) / n_s
        y = (h - mean.unsqueeze(1)) * torch.rsqrt(var.unsqueeze(1) + self.eps)
        y = y * gamma + beta
        with torch.no_grad():
            ok = n >= 2  # [K, 1]
            self._buf(f"tracked_{i}").add_(ok.squeeze(1).long())
            mom = self.momentum
            unbiased = var * n / (n - 1).clamp(min=1)
            rm.copy_(torch.where(ok, (1 - mom) * rm + mom * mean.detach().to(rm.dtype), rm))
            rv.copy_(torch.where(ok, (1 - mom) * rv + mom * unbiased.detach().to(rv.dtype), rv))
        return y

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Logits ``[K, M, B, C]`` (see class docstring for the input shapes)."""
        k, n_mod = self.k, len(self.in_dims)
        mask = mask.to(device=x.device, dtype=torch.bool)
        if x.dim() == 3:  # one batch for all trials
            x, mask = x.unsqueeze(0).expand(k, *x.shape), mask.unsqueeze(0).expand(k, *mask.shape)
        if x.shape[0] != k or x.shape[1] != n_mod or x.shape[3] != self.d_max:
            raise ValueError(f"expected input [{k}, {n_mod}, B, {self.d_max}], got {tuple(x.shape)}")
        batch = x.shape[2]
        keep = self._buf("band_mask").unsqueeze(1) & mask.unsqueeze(3)
        x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        w0 = self.layer_dims[0]
        h = torch.baddbmm(
            self.in_bias.reshape(k * n_mod, 1, w0),
            x.reshape(k * n_mod, batch, self.d_max),
            self.in_weight.reshape(k * n_mod, self.d_max, w0),
        ).reshape(k, n_mod * batch, w0)
        h = self._dropout(self._mask_units(0, F.relu(h)))
        rows = mask.reshape(k, n_mod * batch)
        for i in range(len(self.weights)):
            h = (
                torch.bmm(h, self.weights[i])
                if self.batchnorm
                else torch.baddbmm(self.biases[i].unsqueeze(1), h, self.weights[i])
            )
            if self.batchnorm:
                h = self._norm(i, h, rows)
            h = self._dropout(self._mask_units(i + 1, F.relu(h)))
        out = torch.baddbmm(self.head_bias.unsqueeze(1), h, self.head_weight)
        return out.reshape(k, n_mod, batch, self.n_classes)


class StackedAdam:
    """Adam over tensors with a leading trial dim K and per-trial ``lr``/``weight_decay`` ``[K]``.

    Same update as ``torch.optim.Adam`` (L2 weight decay added to the gradient, bias
    correction, ``eps`` outside the square root), applied to every trial at once.
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: Sequence[float] | Tensor,
        weight_decay: Sequence[float] | Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        dev = self.params[0].device
        self.lr = torch.as_tensor(lr, dtype=torch.float32, device=dev)
        self.wd = torch.as_tensor(weight_decay, dtype=torch.float32, device=dev)
        self.betas, self.eps = betas, eps
        self.step_count = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step for every trial."""
        self.step_count += 1
        b1, b2 = self.betas
        bc1 = 1 - b1**self.step_count
        bc2_sqrt = math.sqrt(1 - b2**self.step_count)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            shape = (-1, *([1] * (p.dim() - 1)))
            g = p.grad + self.wd.view(shape).to(p.dtype) * p
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            p.sub_((self.lr.view(shape).to(p.dtype) / bc1) * m / denom)
