"""The training core shared by every trainer: device, determinism, α, early stopping, the step.

Hot path: the whole dataset lives on the device (:mod:`models.data`); each epoch draws one
seeded permutation on the device (:func:`epoch_order`) and batches are plain index gathers
(:func:`run_batches`), no DataLoader. Losses and α are accumulated as device tensors and read
back once per epoch (one host sync) by :func:`fit_epochs`, the one epoch loop. On CUDA the
forward runs under bf16 autocast (:func:`autocast_for`, losses in float32); on the CPU the
run is deterministic (:func:`train_context`: ``torch.use_deterministic_algorithms(True)``,
seeded generators, RNG state restored after). :func:`optimise` is the one optimiser step of
single and stacked runs: ``α·supervised + (1 − α)·EMIN`` with α fixed or chosen by MGDA.

The trainers built on it are :mod:`models.training.hsi`, :mod:`models.training.seismic` and
:mod:`models.training.stacked`. Modes (``config.mode``) and α strategies (``config.alpha``)
are described in :class:`schemas.training.TrainConfig`; this package imports neither
pydantic (only ``pydantic_core``, via :mod:`models.runs`), xarray nor matplotlib at import
time, so :mod:`bench.train` can reuse the step code with torch alone.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from models.weighting import FinetuneSchedule, FixedAlpha, SampledAlpha, combine, flat_grad, mgda_alpha
from pipeline.errors import TrainingConfigError

if TYPE_CHECKING:
    from schemas.training import TrainConfig

__all__ = [
    "EarlyStopper",
    "FitOutcome",
    "Optimiser",
    "TrainResult",
    "alpha_schedule",
    "autocast_for",
    "epoch_order",
    "epoch_row",
    "fit_epochs",
    "mix",
    "optimise",
    "resolve_device",
    "run_batches",
    "seeded_generator",
    "switch_epoch_of",
    "train_context",
]


# --------------------------------------------------------------------------------------------
# Plumbing: device, determinism, α, early stopping
# --------------------------------------------------------------------------------------------


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingConfigError(
            "device 'cuda' requested but CUDA is not available",
            field="device",
            fix="use --device cpu or auto",
        )
    return torch.device(name)


@contextlib.contextmanager
def train_context(seed: int, device: torch.device, deterministic: bool = True) -> Iterator[None]:
    """Seed torch (global RNG forked, so callers' RNG state is untouched) and, on CPU, turn on
    deterministic algorithms for the duration."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        if deterministic and device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def autocast_for(
    device: torch.device, amp: bool, *, allow_cpu: bool = False
) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when ``amp`` (on the CPU too with ``allow_cpu``); a no-op otherwise.

    The CPU default stays no autocast; ``allow_cpu`` exists so tests can exercise the bf16
    path (heads, losses and evaluation stay float32: :class:`models.nets.FP32Linear`).
    """
    if amp and (device.type == "cuda" or allow_cpu):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def alpha_schedule(config: TrainConfig) -> Callable[[int], float] | None:
    """α per epoch for ``config`` (1.0 without EMIN); None means MGDA (α chosen per step)."""
    kind = config.effective_alpha_schedule
    if kind == "finetune":
        return FinetuneSchedule(config.switch_epoch, after=config.finetune_alpha)
    if kind == "fixed":
        return FixedAlpha(config.effective_alpha_value)
    if kind == "sampled":
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2]))
        return SampledAlpha.draw(config.alpha_low, config.alpha_high, rng=rng)
    return None


def switch_epoch_of(config: TrainConfig) -> int | None:
    """The epoch α switches at (fine-tuning), else None."""
    return config.switch_epoch if config.effective_alpha_schedule == "finetune" else None


class EarlyStopper:
    """Track the best validation score, keep a copy of the best weights, stop after ``patience``.

    ``patience=None`` never stops (the best weights are still kept; whether they are restored
    is the caller's restore policy, see :func:`fit_epochs`).
    """

    def __init__(self, direction: str, patience: int | None) -> None:
        if direction not in ("max", "min"):
            raise ValueError("direction must be 'max' or 'min'")
        self.direction = direction
        self.patience = patience
        self.best: float = -math.inf if direction == "max" else math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.best_state: dict[str, Tensor] | None = None

    def update(self, value: float, epoch: int, model: nn.Module | None = None) -> bool:
        """Record ``value``; True if it improved (NaN never improves)."""
        better = value > self.best if self.direction == "max" else value < self.best
        if better and not math.isnan(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            if model is not None:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs passed without improvement."""
        return self.patience is not None and self.bad_epochs >= self.patience

    def reset(self) -> None:
        """Forget the best so far (``best-after-switch``: only post-switch epochs compete)."""
        self.best = -math.inf if self.direction == "max" else math.inf
        self.best_epoch, self.bad_epochs, self.best_state = -1, 0, None

    def restore(self, model: nn.Module) -> None:
        """Load the best weights back into ``model`` (no-op if none were recorded)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


@dataclass
class TrainResult:
    """What a training run produced; ``extras`` carries arrays for plots (not written as JSON)."""

    model: nn.Module
    config: Any
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    meta: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None


class Optimiser(Protocol):
    """What :func:`optimise` needs: ``torch.optim.Optimizer`` or :class:`models.training.stacked_hydra.StackedAdam`."""

    def zero_grad(self) -> None:
        """Drop the gradients."""

    def step(self) -> object:
        """Apply one update."""


def mix(
    sup: Tensor,
    emin: Tensor,
    alpha: float | Tensor | None,
    shared: Sequence[Tensor],
    normalization: str,
    *,
    mgda: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Combined loss ``α·sup + (1 − α)·emin`` and the α used.

    Single run (0-d losses): ``alpha`` a float, or None for MGDA on ``shared``. Stacked run
    (losses ``[K]``, ``shared`` stacked along K): ``alpha`` the ``[K]`` fixed weights, replaced
    by the per-trial MGDA α where ``mgda`` ``[K]`` (bool) is True. Both use the one MGDA,
    :func:`models.weighting.mgda_alpha`.
    """
    if isinstance(alpha, Tensor):
        a = alpha
        if mgda is not None:
            k = int(sup.shape[0])
            g_sup = flat_grad(sup.sum(), shared, trials=k)
            g_emin = flat_grad(emin.sum(), shared, trials=k)
            a = torch.where(mgda, mgda_alpha(g_sup, g_emin, normalization, sup, emin), alpha)  # type: ignore[arg-type]
        return combine(sup, emin, a), a
    if alpha is None:
        a = mgda_alpha(flat_grad(sup, shared), flat_grad(emin, shared), normalization, sup, emin)  # type: ignore[arg-type]
        return combine(sup, emin, a), a
    a_t = torch.full((), alpha, dtype=sup.dtype, device=sup.device)
    if alpha >= 1.0:
        return sup, a_t
    return combine(sup, emin, alpha), a_t


def optimise(
    opt: Optimiser,
    sup: Tensor,
    emin: Tensor,
    alpha: float | Tensor | None,
    shared: Sequence[Tensor],
    normalization: str,
    *,
    mgda: Tensor | None = None,
) -> Tensor:
    """One optimiser step on the mixed loss (:func:`mix`); returns detached (loss, supervised, EMIN, α).

    Stacked losses ``[K]`` are summed for the backward (separable per trial) and give ``[K, 4]``.
    """
    loss, a = mix(sup, emin, alpha, shared, normalization, mgda=mgda)
    opt.zero_grad()
    loss.sum().backward()
    opt.step()
    return torch.stack([loss.detach(), sup.detach(), emin.detach(), a.detach().to(loss.dtype)], dim=-1)


def run_batches(
    order: Tensor,
    labelled: Tensor | None,
    batch_size: int,
    step: Callable[[Tensor, Tensor | None], Tensor | None],
) -> Tensor:
    """The batch loop of every epoch: cut ``order`` (``[N]``, or ``[K, N]`` for K trials) into batches.

    ``step(idx, lab)`` trains on one batch (``lab``: the matching slice of ``labelled``) and
    returns its detached ``[..., 4]`` statistics, or None to skip the batch. Returns their
    mean over the steps taken (a device tensor; no host sync inside).
    """
    sums = torch.zeros((*order.shape[:-1], 4), device=order.device)
    n_steps = 0
    for s in range(0, int(order.shape[-1]), batch_size):
        lab = None if labelled is None else labelled[..., s : s + batch_size]
        stats = step(order[..., s : s + batch_size], lab)
        if stats is None:
            continue
        sums += stats.to(sums.dtype)
        n_steps += 1
    return sums / max(n_steps, 1)


def epoch_order(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """Seeded permutation of ``0 … n−1`` drawn on the device."""
    return torch.randperm(n, generator=generator, device=device)


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (each run's data order)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


# --------------------------------------------------------------------------------------------
# The epoch loop
# --------------------------------------------------------------------------------------------


def epoch_row(
    epoch: int, means: list[float], supervised: str, val: dict[str, float], train_time: float, n_samples: int
) -> dict[str, float]:
    """One history row: the epoch's training means ``[loss, <supervised>, emin, alpha]``, then ``val``."""
    loss_m, sup_m, emin_m, alpha_m = means
    return {
        "epoch": epoch,
        "train_loss": loss_m,
        f"train_{supervised}": sup_m,
        "train_emin": emin_m,
        "alpha": alpha_m,
        **val,
        "epoch_time_s": train_time,
        "samples_per_s": n_samples / max(train_time, 1e-9),
    }


#: Called once per finished epoch with (epoch index, planned epochs, that epoch's history row):
#: progress bars, per-epoch log lines and progress artifacts hang off this.
EpochCallback = Callable[[int, int, dict[str, float]], None]


@dataclass
class FitOutcome:
    """What :func:`fit_epochs` did: the history, the restore policy and the epoch whose weights were kept."""

    history: list[dict[str, float]]
    restore: str
    restored_epoch: int
    switch_epoch: int | None = None


def fit_epochs(
    model: nn.Module,
    stopper: EarlyStopper,
    *,
    epochs: int,
    schedule: Callable[[int], float] | None,
    n_train: int,
    run_epoch: Callable[[float | None], Tensor],
    validate: Callable[[], dict[str, float]],
    supervised: str,
    score: str,
    on_epoch: EpochCallback | None = None,
    restore: str = "best",
    switch_epoch: int | None = None,
    on_switch: Callable[[int], None] | None = None,
) -> FitOutcome:
    """The epoch loop of every trainer: train, validate, record, stop early, restore per policy.

    ``run_epoch(alpha)`` trains one epoch (``alpha=None``: MGDA) and returns the device tensor
    of epoch means ``[loss, <supervised>, emin, alpha]``; ``validate()`` returns the history's
    validation columns, ``score`` among them (what ``stopper`` watches); ``on_epoch`` is
    called after every epoch's row is recorded. ``restore``: ``best`` (best validation
    epoch), ``last`` (the weights of the last epoch run) or ``best-after-switch`` (best among
    epochs ≥ ``switch_epoch``; the stopper is reset at the switch). ``on_switch(epoch)`` is
    called just before the first epoch at ``switch_epoch`` trains (the pre-switch weights).
    """
    if restore not in ("best", "last", "best-after-switch"):
        raise TrainingConfigError(f"unknown restore policy {restore!r}", field="restore", fix="best | last")
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        if switch_epoch is not None and epoch == switch_epoch and epoch > 0:
            if on_switch is not None:
                on_switch(epoch)
            if restore == "best-after-switch":
                stopper.reset()
        t_epoch = time.perf_counter()
        model.train()
        means = run_epoch(schedule(epoch) if schedule is not None else None).tolist()
        train_time = time.perf_counter() - t_epoch  # one host sync per epoch, just above
        val = validate()
        history.append(epoch_row(epoch, means, supervised, val, train_time, n_train))
        if on_epoch is not None:
            on_epoch(epoch, epochs, history[-1])
        stopper.update(val[score], epoch, model)
        pre_switch = restore == "best-after-switch" and switch_epoch is not None and epoch < switch_epoch
        if stopper.should_stop and not pre_switch:
            break
    last = len(history) - 1
    if restore == "last" or stopper.best_state is None:
        return FitOutcome(history, restore, last, switch_epoch)
    stopper.restore(model)
    return FitOutcome(history, restore, stopper.best_epoch, switch_epoch)
