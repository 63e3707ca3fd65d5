"""Many HSI trials at once on one device: a Hydra stacked along a leading trial dimension.

:class:`models.training.stacked_hydra.StackedHydra` holds K Hydra networks of one architecture family (same modalities,
classes and number of backbone layers) as stacked tensors — input weights
``[K, M, D_max, W0]``, backbone weights ``[K, W_l, W_{l+1}]``, head ``[K, W_L, C]`` — with
every width padded to the largest over the trials and per-trial unit masks that keep the
padding exactly zero (zero init, zeroed activations, hence zero gradients). One forward is
a handful of ``baddbmm`` kernels for all K trials. :class:`~models.training.stacked_hydra.StackedAdam` is Adam (PyTorch's
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

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

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
from models.training.stacked_hydra import StackedAdam, StackedHydra
from pipeline.errors import TrainingConfigError

if TYPE_CHECKING:
    from schemas.training import HSITrainConfig

__all__ = [
    "check_stackable",
    "fused_macro_accuracy",
    "stacked_hsi_epoch",
    "stacked_losses",
    "train_hsi_stacked",
]


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
        if (
            c.effective_emin not in ("none", "gaussian")
            or c.effective_alpha_schedule not in ("fixed", "mgda")
            or c.uses_unlabelled
            or c.effective_restore not in ("best", "last")
            or (c.effective_restore == "last" and c.patience is not None)
            or c.modalities is not None
            or c.trace_samples
        ):
            raise TrainingConfigError(
                "stacked training supports the baseline, or gaussian EMIN with alpha fixed or mgda",
                field="mode",
                fix=fix,
            )
        if c.label_fraction != 1.0 or c.labelled_per_class is not None:
            raise TrainingConfigError(
                "stacked training needs label_fraction=1", field="label_fraction", fix=fix
            )
    shared = (
        "store", "batch_size", "epochs", "batchnorm", "val_fold", "test_fold", "effective_normalise", "device",
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
    alpha = torch.tensor([c.effective_alpha_value for c in configs], device=device)
    mgda = torch.tensor([c.effective_alpha_schedule == "mgda" for c in configs], device=device)
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
    last = [i for i, c in enumerate(configs) if c.effective_restore == "last"]
    if last:  # restore="last" (no early stopping): those trials keep their final weights
        sel = torch.tensor(last, device=device)
        for name, t in model.state_dict().items():
            best[name].index_copy_(0, sel, t.detach().index_select(0, sel))
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
            c, data, histories[i], val, test, split=split, alpha=c.alpha_label,
            device=device, best_epoch=stoppers[i].best_epoch, start=start,
        )  # fmt: skip
        metrics["stacked_k"] = len(configs)
        last = c.effective_restore == "last"
        metrics |= {
            "restore": c.effective_restore,
            "restored_epoch": len(histories[i]) - 1 if last else stoppers[i].best_epoch,
            "switch_epoch": None,
        }
        results.append(
            TrainResult(net, c, histories[i], metrics, meta, extras={"confusion": test["confusion"]})
        )
    return results
