"""Many HSI trials at once on one device: a Hydra stacked along a leading trial dimension.

:class:`StackedHydra` holds K Hydra networks of one architecture family (same modalities,
classes and number of backbone layers) as stacked tensors — input weights
``[K, M, D_max, W0]``, backbone weights ``[K, W_l, W_{l+1}]``, head ``[K, W_L, C]`` — with
every width padded to the largest over the trials and per-trial unit masks that keep the
padding exactly zero (zero init, zeroed activations, hence zero gradients). One forward is
a handful of ``baddbmm`` kernels for all K trials. :class:`StackedAdam` is Adam (PyTorch's
formula, L2 weight decay as in ``torch.optim.Adam``) over the stacked tensors with a ``[K]``
learning-rate and weight-decay vector. The summed loss ``Σ_k loss_k`` has separable
gradients, so each trial gets exactly its own gradient.

:func:`train_hsi_stacked` trains K :class:`schemas.training.HSITrainConfig` at once with the
semantics of :func:`models.training.hsi.train_hsi` (the same split, :func:`models.training.hsi.prepare_hsi`,
the same batch loop and optimiser step, :func:`models.training.loop.run_batches` and
:func:`models.training.loop.optimise`, the same MGDA, :func:`models.weighting.mgda_alpha`): same initial weights (each trial's Hydra is
built under its own seed, then copied in), same per-seed data order, per-trial early
stopping and best-weight restore, and the final metrics computed by the same
:func:`models.training.hsi.evaluate_hsi` on the un-stacked networks. Without dropout the per-trial
losses equal one-at-a-time training up to float round-off; with dropout the masks come from
one shared generator, so runs agree in distribution only (not bit for bit).

Supported: ``net="hydra"``, modes ``baseline`` and ``emin`` with ``alpha="fixed"`` or
``"mgda"`` (per-trial min-norm α per step; trials of both kinds can share a stack),
``label_fraction=1``. The trials of one call must share ``store``, ``batch_size``,
``epochs``, the number of backbone layers, ``batchnorm``, ``val_fold``/``test_fold``,
``standardise``, ``mgda_normalization`` and ``device``; width, hidden widths, dropout, lr, weight decay, α, seed
and patience may differ. torch + numpy only (no pydantic import at run time).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.data import HSIData, load_hsi
from models.emin import gaussian_emin
from models.nets import Hydra, build_hsi_model
from models.training.hsi import HSISplit, evaluate_hsi, hsi_metrics, prepare_hsi
from models.training.loop import (
    EarlyStopper,
    TrainResult,
    autocast_for,
    epoch_row,
    optimise,
    resolve_device,
    run_batches,
    seeded_generator,
    train_context,
)
from pipeline.errors import TrainingConfigError

if TYPE_CHECKING:
    from schemas.training import HSITrainConfig

__all__ = [
    "StackedAdam",
    "StackedHydra",
    "check_stackable",
    "fused_macro_accuracy",
    "stacked_hsi_epoch",
    "stacked_losses",
    "train_hsi_stacked",
]


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
            self.biases.append(nn.Parameter(torch.zeros(k, b)))
            if batchnorm:
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
            h = torch.baddbmm(self.biases[i].unsqueeze(1), h, self.weights[i])
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


def stacked_losses(logits: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-trial masked CE and Gaussian EMIN ``[K]`` from logits ``[K, M, B, C]``, labels ``[K, B]``.

    Same definitions as :func:`models.emin.masked_ce` and :func:`models.emin.emin_hsi`.
    """
    k, n_mod, batch, n_cls = logits.shape
    y = labels.unsqueeze(1).expand(k, n_mod, batch)
    ce = F.cross_entropy(logits.reshape(-1, n_cls), y.reshape(-1), reduction="none").reshape(k, n_mod, batch)
    ce = torch.where(mask, ce, torch.zeros((), dtype=ce.dtype, device=ce.device))
    ce_k = ce.sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1).to(ce.dtype)
    probs = torch.softmax(logits, dim=-1).permute(1, 0, 2, 3).reshape(n_mod, k * batch, n_cls)
    per = gaussian_emin(probs, mask.permute(1, 0, 2).reshape(n_mod, k * batch), reduction="none")
    valid = (mask.sum(dim=1) >= 2).to(per.dtype)  # [K, B]
    em_k = per.reshape(k, batch).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    return ce_k, em_k


def stacked_hsi_epoch(
    model: StackedHydra,
    opt: StackedAdam,
    data: HSIData,
    order: Tensor,
    *,
    batch_size: int,
    alpha: Tensor,
    mgda: Tensor | None = None,
    normalization: str = "none",
    amp: bool = True,
) -> Tensor:
    """One epoch for all trials; ``order`` ``[K, N]`` (one shuffled index row per trial).

    ``alpha`` ``[K]`` is the CE weight per trial (1 = baseline); trials where ``mgda`` ``[K]``
    (bool) is True get their α per step by MGDA on their shared parameters (backbone +
    head), as :func:`models.training.hsi.hsi_epoch` with ``alpha=None``. Returns the per-trial
    epoch means ``[K, 4]`` (loss, CE, EMIN, α) as a device tensor, no host sync inside.
    """
    device = data.x.device
    a_fixed = alpha.to(device=device, dtype=torch.float32)
    use_mgda = mgda is not None and bool(mgda.any())
    shared = model.shared_parameters() if use_mgda else []
    mgda_d = mgda.to(device) if use_mgda and mgda is not None else None

    def step(idx: Tensor, lab: Tensor | None) -> Tensor:
        xb = data.x[:, idx].transpose(0, 1)  # [K, M, B, D]
        mb = data.mask[:, idx].transpose(0, 1)  # [K, M, B]
        with autocast_for(device, amp):
            logits = model(xb, mb)
        ce, em = stacked_losses(logits.float(), data.labels[idx], mb)
        return optimise(opt, ce, em, a_fixed, shared, normalization, mgda=mgda_d)

    return run_batches(order, None, batch_size, step)


@torch.no_grad()
def fused_macro_accuracy(
    model: StackedHydra, data: HSIData, idx: Tensor, *, chunk: int = 8192, amp: bool = True
) -> Tensor:
    """Per-trial fused macro accuracy ``[K]`` on ``idx`` (eval mode), as :mod:`models.metrics` defines it."""
    was = model.training
    model.eval()
    k, n_cls = model.k, model.n_classes
    step = max(1, chunk // k)
    preds, keep = [], []
    for s in range(0, int(idx.numel()), step):
        j = idx[s : s + step]
        mb = data.mask[:, j]
        with autocast_for(data.x.device, amp):
            logits = model(data.x[:, j], mb).float()
        prob = torch.softmax(logits.double(), dim=-1)  # [K, M, B, C]
        m = mb.unsqueeze(0).unsqueeze(-1)
        n = m.sum(dim=1).to(prob.dtype).clamp(min=1)
        fused = torch.where(m, prob, torch.zeros((), dtype=prob.dtype, device=prob.device)).sum(dim=1) / n
        preds.append(fused.argmax(dim=-1))  # [K, B]
        keep.append(mb.any(dim=0))
    model.train(was)
    if not preds:
        return torch.full((k,), math.nan)
    pred, seen = torch.cat(preds, dim=1), torch.cat(keep)
    y = data.labels[idx]
    trial = torch.arange(k, device=pred.device).unsqueeze(1).expand_as(pred)
    flat = (trial[:, seen] * n_cls + y[seen].unsqueeze(0)) * n_cls + pred[:, seen]
    cm = torch.bincount(flat.reshape(-1), minlength=k * n_cls * n_cls).reshape(k, n_cls, n_cls).double()
    support = cm.sum(dim=2)
    recall = torch.diagonal(cm, dim1=1, dim2=2) / support.clamp(min=1)
    has = support > 0
    return (torch.where(has, recall, 0.0).sum(dim=1) / has.sum(dim=1).clamp(min=1)).cpu()


def check_stackable(configs: Sequence[HSITrainConfig]) -> None:
    """Raise :class:`pipeline.errors.TrainingConfigError` unless ``configs`` can train together in one stack."""
    if not configs:
        raise TrainingConfigError("need at least one config", fix="give one or more trial configs")
    fix = "train such trials one at a time (without --stack)"
    for c in configs:
        if c.net != "hydra":
            raise TrainingConfigError("stacked training supports net='hydra' only", field="net", fix=fix)
        if c.mode not in ("baseline", "emin") or (c.mode == "emin" and c.alpha == "sampled"):
            raise TrainingConfigError(
                "stacked training supports mode baseline, or emin with alpha fixed or mgda",
                field="mode",
                fix=fix,
            )
        if c.label_fraction != 1.0:
            raise TrainingConfigError(
                "stacked training needs label_fraction=1", field="label_fraction", fix=fix
            )
    shared = (
        "store", "batch_size", "epochs", "batchnorm", "val_fold", "test_fold", "standardise", "device",
        "mgda_normalization",
    )  # fmt: skip
    for name in shared:
        values = {repr(getattr(c, name)) for c in configs}
        if len(values) > 1:
            raise TrainingConfigError(
                f"stacked trials must share {name!r}, got {sorted(values)}",
                field=name,
                fix="stack trials of one family",
            )
    if len({len(c.hidden) for c in configs}) > 1:
        raise TrainingConfigError(
            "stacked trials must have the same number of backbone layers",
            field="hidden",
            fix="stack trials of one family",
        )


def _initial_stack(configs: Sequence[HSITrainConfig], data: HSIData, device: torch.device) -> StackedHydra:
    """Each trial's Hydra built exactly as :func:`models.training.hsi.train_hsi` draws it (seeded), then stacked."""
    models: list[Hydra] = []
    for c in configs:
        with train_context(c.seed, device, c.deterministic):
            net = build_hsi_model(c, data.in_dims, len(data.class_names), data.modalities).to(device)
            assert isinstance(net, Hydra)
            models.append(net)
    return StackedHydra.from_models(models)


def _fit_stacked(
    configs: Sequence[HSITrainConfig], model: StackedHydra, data: HSIData, split: HSISplit
) -> tuple[list[list[dict[str, float]]], list[EarlyStopper]]:
    """The epoch loop of a stack: per-trial history rows, early stopping and best-weight restore.

    :func:`models.training.loop.fit_epochs` for K trials at once: a trial that stops keeps its
    best weights (copied by trial index) while the others train on.
    """
    c0, k, device = configs[0], len(configs), data.x.device
    alpha = torch.tensor([1.0 if c.mode == "baseline" else c.alpha_value for c in configs], device=device)
    mgda = torch.tensor([c.mode == "emin" and c.alpha == "mgda" for c in configs], device=device)
    gens = [seeded_generator(device, c.seed) for c in configs]
    stoppers = [EarlyStopper("max", c.patience) for c in configs]
    histories: list[list[dict[str, float]]] = [[] for _ in configs]
    train_idx, n_train = split.train_idx, int(split.train_idx.numel())
    opt = StackedAdam(list(model.parameters()), [c.lr for c in configs], [c.weight_decay for c in configs])
    best = {name: t.detach().clone() for name, t in model.state_dict().items()}
    active = [True] * k
    for epoch in range(c0.epochs):
        t_epoch = time.perf_counter()
        model.train()
        order = torch.stack([train_idx[torch.randperm(n_train, generator=g, device=device)] for g in gens])
        means = stacked_hsi_epoch(
            model, opt, data, order, batch_size=c0.batch_size, alpha=alpha, mgda=mgda,
            normalization=c0.mgda_normalization, amp=c0.amp,
        )  # fmt: skip
        rows = means.tolist()
        train_time = time.perf_counter() - t_epoch
        val_acc = fused_macro_accuracy(model, data, split.val_idx, chunk=c0.eval_chunk, amp=c0.amp).tolist()
        improved = []
        for i in (i for i in range(k) if active[i]):
            val = {"val_macro_accuracy": val_acc[i]}
            histories[i].append(epoch_row(epoch, rows[i], "ce", val, train_time, k * n_train))
            if stoppers[i].update(val_acc[i], epoch):
                improved.append(i)
            active[i] = not stoppers[i].should_stop
        if improved:
            sel = torch.tensor(improved, device=device)
            for name, t in model.state_dict().items():
                best[name].index_copy_(0, sel, t.detach().index_select(0, sel))
        if not any(active):
            break
    model.load_state_dict(best)
    return histories, stoppers


def train_hsi_stacked(configs: Sequence[HSITrainConfig], data: HSIData | None = None) -> list[TrainResult]:
    """Train ``configs`` (K trials of one Hydra family) at once; one :class:`TrainResult` per trial.

    Same semantics as :func:`models.training.hsi.train_hsi` per trial (see the module docstring);
    run folders are not written (``out_dir`` is ignored).
    """
    check_stackable(configs)
    start = time.perf_counter()
    c0 = configs[0]
    device = resolve_device(c0.device)
    data = (load_hsi(c0.store) if data is None else data).to(device)
    data, split, meta = prepare_hsi(c0, data)
    model = _initial_stack(configs, data, device)
    with train_context(c0.seed + 7919, device, c0.deterministic):  # dropout RNG of the stacked run
        histories, stoppers = _fit_stacked(configs, model, data, split)
    results = []
    for i, c in enumerate(configs):
        net = model.unstack(i)
        val = evaluate_hsi(net, data, split.val_idx, chunk=c.eval_chunk, amp=c.amp)
        test = evaluate_hsi(net, data, split.test_idx, chunk=c.eval_chunk, amp=c.amp)
        metrics = hsi_metrics(
            c, data, histories[i], val, test, split=split, alpha=c.alpha if c.mode != "baseline" else None,
            device=device, best_epoch=stoppers[i].best_epoch, start=start,
        )  # fmt: skip
        metrics["stacked_k"] = len(configs)
        results.append(
            TrainResult(net, c, histories[i], metrics, meta, extras={"confusion": test["confusion"]})
        )
    return results
