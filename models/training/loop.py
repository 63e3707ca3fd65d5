"""Training loops for the report's experiments: HSI fusion classifiers and seismic location CNNs.

Hot path: the whole dataset lives on the device (:mod:`models.data`); each epoch draws one
seeded permutation on the device and batches are plain index gathers, no DataLoader. Losses
and α are accumulated as device tensors and read back once per epoch (one host sync), except
inside :func:`models.emin.seismic_emin`, whose event grouping needs the event count. On CUDA
the forward runs under bf16 autocast (losses in float32); on the CPU the run is deterministic
(``torch.use_deterministic_algorithms(True)``, seeded generators, RNG state restored after).

Modes (``config.mode``) and α strategies (``config.alpha``) are described in
:class:`schemas.training.TrainConfig`; this module imports neither pydantic, xarray nor
matplotlib at import time, so :mod:`bench.train` can reuse the step code with torch alone.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.emin import gaussian_emin, seismic_emin, student_teacher_emin
from models.geo import EARTH_RADIUS_KM, baz_from_sincos, destination, haversine_km, location_from_prediction
from models.nets import VGG_CFGS, Hydra, PerModalityMLPs, VGGRegressor
from models.weighting import FinetuneSchedule, FixedAlpha, SampledAlpha, combine, flat_grad, mgda_alpha

if TYPE_CHECKING:
    from models.data import HSIData, SeismicData
    from schemas.training import HSITrainConfig, SeismicTrainConfig, TrainConfig

__all__ = [
    "SMALL_VGG",
    "EarlyStopper",
    "TrainResult",
    "alpha_schedule",
    "build_hsi_model",
    "build_seismic_model",
    "emin_hsi",
    "event_grouped_order",
    "forward_hsi",
    "hsi_epoch",
    "masked_ce",
    "predict_hsi",
    "predict_seismic",
    "resolve_device",
    "seismic_emin_loss",
    "seismic_epoch",
    "shared_parameters",
    "teacher_vector",
    "train_context",
    "train_hsi",
    "train_seismic",
]

#: A light VGG-style stack for CPU demos (``arch="small"``); the report used VGG16.
SMALL_VGG: tuple[int | str, ...] = (32, "M", 64, "M", 128, "M", 128, "M")


# --------------------------------------------------------------------------------------------
# Plumbing: device, determinism, α, early stopping
# --------------------------------------------------------------------------------------------


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
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


def autocast_for(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when ``amp``; a no-op context otherwise."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def alpha_schedule(config: TrainConfig) -> Callable[[int], float] | None:
    """α per epoch for ``config`` (1.0 for the baseline); None means MGDA (α chosen per step)."""
    if config.mode == "baseline":
        return FixedAlpha(1.0)
    if config.mode == "finetune":
        return FinetuneSchedule(config.switch_epoch, after=config.finetune_alpha)
    if config.alpha == "fixed":
        return FixedAlpha(config.alpha_value)
    if config.alpha == "sampled":
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2]))
        return SampledAlpha.draw(config.alpha_low, config.alpha_high, rng=rng)
    return None


class EarlyStopper:
    """Track the best validation score, keep a copy of the best weights, stop after ``patience``.

    ``patience=None`` never stops (the best weights are still kept and restored).
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


def _mix(
    ce: Tensor, emin: Tensor, alpha: float | None, shared: Sequence[Tensor], norm: str
) -> tuple[Tensor, Tensor]:
    """Combined loss and the α used (MGDA on ``shared`` when ``alpha`` is None)."""
    if alpha is None:
        a = mgda_alpha(flat_grad(ce, shared), flat_grad(emin, shared), norm, ce, emin)  # type: ignore[arg-type]
        return combine(ce, emin, a), a
    a_t = torch.full((), alpha, dtype=ce.dtype, device=ce.device)
    if alpha >= 1.0:
        return ce, a_t
    return combine(ce, emin, alpha), a_t


def _optimise(
    opt: torch.optim.Optimizer,
    sup: Tensor,
    emin: Tensor,
    alpha: float | None,
    shared: Sequence[Tensor],
    norm: str,
) -> Tensor:
    """One optimiser step on the mixed loss; returns detached (loss, supervised, EMIN, α)."""
    loss, a = _mix(sup, emin, alpha, shared, norm)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return torch.stack([loss.detach(), sup.detach(), emin.detach(), a.detach().to(loss.dtype)])


def _epoch_order(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """Seeded permutation of ``0 … n−1`` drawn on the device."""
    return torch.randperm(n, generator=generator, device=device)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


# --------------------------------------------------------------------------------------------
# HSI
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
) -> list[dict[str, float]]:
    """The epoch loop of every trainer: train, validate, record, stop early, restore the best.

    ``run_epoch(alpha)`` trains one epoch (``alpha=None``: MGDA) and returns the device tensor
    of epoch means ``[loss, <supervised>, emin, alpha]``; ``validate()`` returns the history's
    validation columns, ``score`` among them (what ``stopper`` watches).
    """
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        t_epoch = time.perf_counter()
        model.train()
        means = run_epoch(schedule(epoch) if schedule is not None else None).tolist()
        train_time = time.perf_counter() - t_epoch  # one host sync per epoch, just above
        val = validate()
        history.append(epoch_row(epoch, means, supervised, val, train_time, n_train))
        stopper.update(val[score], epoch, model)
        if stopper.should_stop:
            break
    stopper.restore(model)
    return history


def build_hsi_model(
    config: HSITrainConfig, in_dims: Sequence[int], n_classes: int, names: Sequence[str]
) -> nn.Module:
    """Hydra (default) or per-modality MLPs as configured."""
    if config.net == "hydra":
        return Hydra(
            in_dims,
            n_classes,
            width=config.width,
            hidden=config.hidden,
            dropout=config.dropout,
            batchnorm=config.batchnorm,
            names=names,
        )
    return PerModalityMLPs(
        in_dims,
        n_classes,
        hidden=config.hidden,
        dropout=config.dropout,
        batchnorm=config.batchnorm,
        names=names,
    )


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
    return model(x, mask)


def masked_ce(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Mean cross entropy over the (modality, sample) pairs where ``mask`` is True (0 if none)."""
    n_mod, batch, n_cls = logits.shape
    ce = F.cross_entropy(logits.reshape(n_mod * batch, n_cls), labels.repeat(n_mod), reduction="none")
    ce = torch.where(mask.reshape(-1), ce, torch.zeros((), dtype=ce.dtype, device=ce.device))
    return ce.sum() / mask.sum().clamp(min=1).to(ce.dtype)


def emin_hsi(logits: Tensor, mask: Tensor, teacher: Tensor | None = None) -> Tensor:
    """EMIN on the softmax probabilities of the present modalities (student–teacher if given)."""
    probs = torch.softmax(logits, dim=-1)
    if teacher is None:
        return gaussian_emin(probs, mask)
    return student_teacher_emin(probs, mask, teacher)


def teacher_vector(teachers: Sequence[str], modalities: Sequence[str]) -> Tensor:
    """Bool ``[M]``: modality names matching a teacher name or prefix (``SWIR`` → SWIR1…)."""
    vec = torch.tensor([any(m == t or m.startswith(t) for t in teachers) for m in modalities])
    if not bool(vec.any()) or bool(vec.all()):
        raise ValueError(f"teachers {list(teachers)} must select some but not all of {list(modalities)}")
    return vec


@torch.no_grad()
def predict_hsi(
    model: nn.Module, data: HSIData, idx: Tensor, *, chunk: int = 8192, amp: bool = True
) -> Tensor:
    """Eval-mode logits ``[M, len(idx), C]`` float32, computed in chunks."""
    was = model.training
    model.eval()
    outs = []
    device = data.x.device
    for s in range(0, int(idx.numel()), chunk):
        j = idx[s : s + chunk]
        with autocast_for(device, amp):
            outs.append(forward_hsi(model, data.x[:, j], data.mask[:, j]).float())
    model.train(was)
    if not outs:
        return torch.zeros((data.x.shape[0], 0, 1), device=device)
    return torch.cat(outs, dim=1)


def evaluate_hsi(
    model: nn.Module, data: HSIData, idx: Tensor, *, chunk: int = 8192, amp: bool = True
) -> dict[str, Any]:
    """Fused/per-modality macro accuracy, mean cross-modality variance and the fused confusion matrix."""
    from models.metrics import classification_metrics, confusion_matrix, fused_probs, predictive_variance

    logits = predict_hsi(model, data, idx, chunk=chunk, amp=amp)
    labels = data.labels[idx]
    mask = data.mask[:, idx]
    n_cls = len(data.class_names)
    cls = classification_metrics(logits, labels, mask, n_classes=n_cls, names=data.modalities)
    var = predictive_variance(logits, mask)
    fused = fused_probs(logits, mask)
    seen = mask.any(dim=0)
    cm = confusion_matrix(fused[seen].argmax(dim=-1), labels[seen], n_cls)
    finite = var[np.isfinite(var)]
    return {
        "classification": cls,
        "variance_mean": float(finite.mean()) if finite.size else math.nan,
        "variance_median": float(np.median(finite)) if finite.size else math.nan,
        "variance_p95": float(np.quantile(finite, 0.95)) if finite.size else math.nan,
        "confusion": cm,
    }


def hsi_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: HSIData,
    order: Tensor,
    labelled: Tensor,
    *,
    batch_size: int,
    alpha: float | None,
    teacher: Tensor | None = None,
    shared: Sequence[Tensor] = (),
    normalization: str = "none",
    amp: bool = True,
) -> Tensor:
    """One training epoch over ``order`` (sample indices, already shuffled) in batches.

    ``labelled`` (bool, aligned with ``order``) selects the samples whose CE counts; EMIN is
    computed unless ``alpha == 1`` (``alpha=None`` = MGDA on ``shared``). Returns the epoch
    means ``[loss, ce, emin, alpha]`` as a device tensor; no host sync inside.
    """
    device = data.x.device
    need_emin = alpha is None or alpha < 1.0
    sums = torch.zeros(4, device=device)
    n_steps = 0
    for s in range(0, int(order.numel()), batch_size):
        idx, lab = order[s : s + batch_size], labelled[s : s + batch_size]
        xb, mb, yb = data.x[:, idx], data.mask[:, idx], data.labels[idx]
        with autocast_for(device, amp):
            logits = forward_hsi(model, xb, mb)
        logits = logits.float()
        ce = masked_ce(logits, yb, mb & lab.unsqueeze(0))
        emin = emin_hsi(logits, mb, teacher) if need_emin else torch.zeros_like(ce)
        sums += _optimise(opt, ce, emin, alpha, shared, normalization).to(sums.dtype)
        n_steps += 1
    return sums / max(n_steps, 1)


def eval_indices(
    folds: np.ndarray, train_idx: Tensor, val_fold: int, test_fold: int
) -> tuple[Tensor, Tensor]:
    """Validation and test sample indices (on ``train_idx``'s device); refuses empty sets."""
    device = train_idx.device
    val_idx = torch.from_numpy(np.flatnonzero(folds == val_fold)).to(device)
    test_idx = torch.from_numpy(np.flatnonzero(folds == test_fold)).to(device)
    if train_idx.numel() == 0 or val_idx.numel() == 0:
        raise ValueError("empty training or validation set (check val_fold/test_fold)")
    return val_idx, test_idx


def hsi_meta(data: HSIData) -> dict[str, Any]:
    """What a checkpoint needs to rebuild an HSI model and name its outputs."""
    return {
        "kind": "hsi",
        "in_dims": list(data.in_dims),
        "modalities": list(data.modalities),
        "class_names": list(data.class_names),
    }


def hsi_metrics(
    config: HSITrainConfig,
    data: HSIData,
    history: list[dict[str, Any]],
    val: dict[str, Any],
    test: dict[str, Any],
    *,
    alpha: str | None,
    device: torch.device,
    best_epoch: int,
    n_train_labelled: int,
    n_unlabelled: int,
    n_val: int,
    n_test: int,
    test_fold: int,
    start: float,
) -> dict[str, Any]:
    """The metrics.json content of one HSI run (single or one trial of a stack)."""
    return {
        "kind": "hsi",
        "mode": config.mode,
        "alpha": alpha,
        "net": config.net,
        "device": str(device),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_early": len(history) < config.epochs,
        "alpha_last_epoch": history[-1]["alpha"] if history else math.nan,
        "n_train_labelled": n_train_labelled,
        "n_unlabelled": n_unlabelled,
        "n_val": n_val,
        "n_test": n_test,
        "val_fold": config.val_fold,
        "test_fold": test_fold,
        "val": val["classification"],
        "test": test["classification"],
        "val_variance_mean": val["variance_mean"],
        "test_variance_mean": test["variance_mean"],
        "test_variance_median": test["variance_median"],
        "test_variance_p95": test["variance_p95"],
        "class_names": data.class_names,
        "modalities": data.modalities,
        "wall_time_s": time.perf_counter() - start,
    }


def train_hsi(config: HSITrainConfig, data: HSIData | None = None) -> TrainResult:
    """Train an HSI fusion classifier as configured; write the run folder when ``config.out_dir``."""
    from models.data import load_hsi, stratified_label_split

    start = time.perf_counter()
    device = resolve_device(config.device)
    with train_context(config.seed, device, config.deterministic):
        data = (load_hsi(config.store) if data is None else data).to(device)
        folds = data.folds.cpu().numpy()
        labels_np = data.labels.cpu().numpy()
        test_fold = config.test_fold if config.test_fold is not None else int(folds.max())
        if config.val_fold == test_fold:
            raise ValueError("val_fold and test_fold must differ")
        train_all = np.flatnonzero((folds != test_fold) & (folds != config.val_fold))
        lab_rel, unlab_rel = stratified_label_split(labels_np[train_all], config.label_fraction, config.seed)
        labelled, unlabelled = train_all[lab_rel], train_all[unlab_rel]
        use_unlabelled = config.mode == "ssl"
        train_np = np.concatenate([labelled, unlabelled]) if use_unlabelled else labelled
        is_lab_np = np.arange(train_np.size) < labelled.size
        train_idx = torch.from_numpy(train_np).to(device)
        is_lab = torch.from_numpy(is_lab_np).to(device)
        val_idx, test_idx = eval_indices(folds, train_idx, config.val_fold, test_fold)
        meta = hsi_meta(data)
        if config.standardise:
            band_mean, band_std = data.band_stats(torch.from_numpy(labelled).to(device))
            data = data.standardise(band_mean, band_std)
            meta |= {"band_mean": band_mean.cpu(), "band_std": band_std.cpu()}
        n_cls = len(data.class_names)
        model = build_hsi_model(config, data.in_dims, n_cls, data.modalities).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        teacher = (
            teacher_vector(config.teachers, data.modalities).to(device)
            if config.mode == "student-teacher"
            else None
        )
        schedule = alpha_schedule(config)
        shared = shared_parameters(model) if schedule is None else []
        gen = _generator(device, config.seed)
        stopper = EarlyStopper("max", config.patience)
        n_train, bs = int(train_idx.numel()), config.batch_size

        def run_epoch(alpha_e: float | None) -> Tensor:
            perm = _epoch_order(n_train, gen, device)
            return hsi_epoch(
                model, opt, data, train_idx[perm], is_lab[perm], batch_size=bs, alpha=alpha_e,
                teacher=teacher, shared=shared, normalization=config.mgda_normalization, amp=config.amp,
            )  # fmt: skip

        def validate() -> dict[str, float]:
            ev = evaluate_hsi(model, data, val_idx, chunk=config.eval_chunk, amp=config.amp)
            return {
                "val_macro_accuracy": ev["classification"]["fused"]["macro_accuracy"],
                "val_variance": ev["variance_mean"],
            }

        history = fit_epochs(
            model, stopper, epochs=config.epochs, schedule=schedule, n_train=n_train,
            run_epoch=run_epoch, validate=validate, supervised="ce", score="val_macro_accuracy",
        )  # fmt: skip

        val = evaluate_hsi(model, data, val_idx, chunk=config.eval_chunk, amp=config.amp)
        test = evaluate_hsi(model, data, test_idx, chunk=config.eval_chunk, amp=config.amp)
        metrics = hsi_metrics(
            config,
            data,
            history,
            val,
            test,
            alpha=config.alpha if config.mode not in ("baseline", "finetune") else None,
            device=device,
            best_epoch=stopper.best_epoch,
            n_train_labelled=int(labelled.size),
            n_unlabelled=int(unlabelled.size),
            n_val=int(val_idx.numel()),
            n_test=int(test_idx.numel()),
            test_fold=test_fold,
            start=start,
        )
        metrics["test_confusion"] = test["confusion"].tolist()
    result = TrainResult(model, config, history, metrics, meta, extras={"confusion": test["confusion"]})
    if config.out_dir:
        from models.runs import save_run

        result.run_dir = save_run(result, Path(config.out_dir))
    return result


# --------------------------------------------------------------------------------------------
# Seismic
# --------------------------------------------------------------------------------------------


def build_seismic_model(config: SeismicTrainConfig) -> VGGRegressor:
    """VGG-style regressor on 3-channel spectrograms (``arch="small"`` or a VGG config)."""
    cfg = SMALL_VGG if config.arch == "small" else VGG_CFGS[config.arch]
    return VGGRegressor(3, cfg=cfg, head_hidden=config.head_hidden, dropout=config.dropout)


def event_grouped_order(event_index: Tensor, generator: torch.Generator) -> Tensor:
    """Positions ``0 … B−1`` ordered so the traces of an event are contiguous, events in random order.

    Batches cut from this order carry whole events (except at the cuts), which seismic EMIN
    needs: its variance is taken over the traces of one event.
    """
    n_ev = int(event_index.max()) + 1 if event_index.numel() else 0  # one sync per epoch
    rank = torch.randperm(n_ev, generator=generator, device=event_index.device)
    jitter = torch.randperm(event_index.numel(), generator=generator, device=event_index.device)
    key = rank[event_index] * event_index.numel() + jitter
    return torch.argsort(key)


def seismic_emin_loss(
    out: Tensor,
    station_lat: Tensor,
    station_lon: Tensor,
    event_index: Tensor,
    *,
    distance_scale_km: float,
    is_teacher: Tensor | None = None,
    centre: str = "median",
) -> Tensor:
    """Seismic EMIN on the locations implied by ``out [B, 3]`` (scaled distance, sin, cos).

    :func:`models.emin.seismic_emin` is in radians²; it is multiplied by
    ``(R / distance_scale_km)²`` so that it is in the same units as the scaled distance target.
    """
    o = out.double()
    lat, lon = location_from_prediction(
        station_lat, station_lon, o[:, 0] * distance_scale_km, o[:, 1], o[:, 2]
    )
    var = seismic_emin(lat, lon, event_index, is_teacher=is_teacher, centre=centre)  # type: ignore[arg-type]
    return (var * (EARTH_RADIUS_KM / distance_scale_km) ** 2).to(out.dtype)


@torch.no_grad()
def predict_seismic(
    model: nn.Module, x: Tensor, idx: Tensor, *, chunk: int = 512, amp: bool = True
) -> Tensor:
    """Eval-mode outputs ``[len(idx), 3]`` float32, in chunks."""
    was = model.training
    model.eval()
    outs = [torch.zeros((0, 3), device=x.device)]
    for s in range(0, int(idx.numel()), chunk):
        with autocast_for(x.device, amp):
            outs.append(model(x[idx[s : s + chunk]]).float())
    model.train(was)
    return torch.cat(outs, dim=0)


def evaluate_seismic(
    model: nn.Module, data: SeismicData, idx: Tensor, *, scale_km: float, chunk: int = 512, amp: bool = True
) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`models.metrics.seismic_metrics` on ``idx`` and the per-trace location errors (km)."""
    from models.metrics import location_error_km, seismic_metrics

    out = predict_seismic(model, data.x, idx, chunk=chunk, amp=amp)
    dist = out[:, 0].double() * scale_km
    baz = baz_from_sincos(out[:, 1].double(), out[:, 2].double())
    sensors = np.asarray(data.sensor_type)[idx.cpu().numpy()]
    m = seismic_metrics(
        pred_dist_km=dist,
        pred_baz_deg=baz,
        true_dist_km=data.distance_km[idx],
        true_baz_deg=data.baz_deg[idx],
        station_lat=data.station_lat[idx],
        station_lon=data.station_lon[idx],
        event_lat=data.event_lat[idx],
        event_lon=data.event_lon[idx],
        sensor_type=sensors,
        event_ids=data.event_index[idx],
    )
    lat, lon = destination(data.station_lat[idx], data.station_lon[idx], baz, dist)
    err = location_error_km(lat, lon, data.event_lat[idx], data.event_lon[idx])
    return m, err


def mean_predictors(data: SeismicData, train: Tensor, idx: Tensor) -> dict[str, np.ndarray]:
    """Location errors (km) on ``idx`` of two trivial predictors fitted on ``train``.

    ``centroid``: every event is at the mean training-event location. ``mean_target``: the
    mean training distance along the circular-mean training back azimuth from each station.
    """
    lat0 = data.event_lat[train].mean()
    lon0 = data.event_lon[train].mean()
    centroid = haversine_km(
        lat0.expand(idx.numel()), lon0.expand(idx.numel()), data.event_lat[idx], data.event_lon[idx]
    )
    d0 = data.distance_km[train].double().mean()
    b0 = baz_from_sincos(data.sin_baz[train].double().mean(), data.cos_baz[train].double().mean())
    lat, lon = destination(
        data.station_lat[idx], data.station_lon[idx], b0.expand(idx.numel()), d0.expand(idx.numel())
    )
    mean_t = haversine_km(lat, lon, data.event_lat[idx], data.event_lon[idx])
    return {"centroid": centroid.cpu().numpy(), "mean_target": mean_t.cpu().numpy()}


def seismic_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: SeismicData,
    target: Tensor,
    order: Tensor,
    labelled: Tensor,
    *,
    batch_size: int,
    alpha: float | None,
    teacher: Tensor | None = None,
    shared: Sequence[Tensor] = (),
    normalization: str = "none",
    amp: bool = True,
    distance_scale_km: float = 100.0,
    centre: str = "median",
) -> Tensor:
    """One epoch of the location CNN over ``order`` (trace indices, already ordered) in batches.

    Supervised term: MSE on ``target [N, 3]`` for the ``labelled`` traces; EMIN (unless
    ``alpha == 1``): :func:`seismic_emin_loss`, student–teacher when ``teacher`` (bool ``[N]``)
    is given. Returns the epoch means ``[loss, mse, emin, alpha]`` as a device tensor.
    """
    device = data.x.device
    need_emin = alpha is None or alpha < 1.0
    sums = torch.zeros(4, device=device)
    n_steps = 0
    for s in range(0, int(order.numel()), batch_size):
        idx, lab = order[s : s + batch_size], labelled[s : s + batch_size]
        if idx.numel() < 2:
            continue  # BatchNorm needs two samples
        with autocast_for(device, amp):
            out = model(data.x[idx])
        out = out.float()
        mse = ((out - target[idx]) ** 2).mean(dim=1)
        sup = torch.where(lab, mse, torch.zeros_like(mse)).sum() / lab.sum().clamp(min=1).to(mse.dtype)
        if need_emin:
            emin = seismic_emin_loss(
                out, data.station_lat[idx], data.station_lon[idx], data.event_index[idx],
                distance_scale_km=distance_scale_km, centre=centre,
                is_teacher=None if teacher is None else teacher[idx],
            )  # fmt: skip
        else:
            emin = torch.zeros_like(sup)
        sums += _optimise(opt, sup, emin, alpha, shared, normalization).to(sums.dtype)
        n_steps += 1
    return sums / max(n_steps, 1)


def train_seismic(config: SeismicTrainConfig, data: SeismicData | None = None) -> TrainResult:
    """Train a single-station location CNN as configured; write the run folder when ``config.out_dir``."""
    from models.data import load_seismic

    start = time.perf_counter()
    device = resolve_device(config.device)
    with train_context(config.seed, device, config.deterministic):
        data = (load_seismic(config.store, max_traces=config.max_traces) if data is None else data).to(device)
        split = data.split.cpu().numpy()
        ev_np = data.event_index.cpu().numpy()
        train_all = np.flatnonzero(split == 0)
        val_np, test_np = np.flatnonzero(split == 1), np.flatnonzero(split == 2)
        if train_all.size == 0 or val_np.size == 0:
            raise ValueError("the store has no training or no validation traces")
        train_events = np.unique(ev_np[train_all])
        if config.label_fraction < 1.0:
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
            k = max(1, round(config.label_fraction * train_events.size))
            lab_events = np.sort(rng.permutation(train_events)[:k])
        else:
            lab_events = train_events
        lab_trace = np.isin(ev_np[train_all], lab_events)
        labelled, unlabelled = train_all[lab_trace], train_all[~lab_trace]
        train_np = np.concatenate([labelled, unlabelled]) if config.mode == "ssl" else labelled
        train_idx = torch.from_numpy(train_np).to(device)
        is_lab = torch.from_numpy(np.arange(train_np.size) < labelled.size).to(device)
        val_idx, test_idx = torch.from_numpy(val_np).to(device), torch.from_numpy(test_np).to(device)
        mean, std = data.channel_stats(torch.from_numpy(labelled).to(device))
        data = data.standardise(mean, std)
        scale = config.distance_scale_km
        target = torch.stack([data.distance_km / scale, data.sin_baz, data.cos_baz], dim=1)
        teacher_all = (
            torch.tensor([s == config.teacher_sensor for s in data.sensor_type], device=device)
            if config.mode == "student-teacher"
            else None
        )

        model = build_seismic_model(config).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        schedule = alpha_schedule(config)
        shared = [p for p in model.parameters() if p.requires_grad] if schedule is None else []
        gen = _generator(device, config.seed)
        stopper = EarlyStopper("min", config.patience)
        n_train, bs = int(train_idx.numel()), config.batch_size
        ev_train = data.event_index[train_idx]

        def run_epoch(alpha_e: float | None) -> Tensor:
            need_emin = alpha_e is None or alpha_e < 1.0
            perm = event_grouped_order(ev_train, gen) if need_emin else _epoch_order(n_train, gen, device)
            return seismic_epoch(
                model, opt, data, target, train_idx[perm], is_lab[perm], batch_size=bs, alpha=alpha_e,
                teacher=teacher_all, shared=shared, normalization=config.mgda_normalization, amp=config.amp,
                distance_scale_km=scale, centre=config.centre,
            )  # fmt: skip

        def validate() -> dict[str, float]:
            val_m, _ = evaluate_seismic(
                model, data, val_idx, scale_km=scale, chunk=config.eval_chunk, amp=config.amp
            )
            return {
                "val_location_error_km_median": val_m["overall"]["location_error_km_median"],
                "val_distance_error_km_median": val_m["overall"]["distance_error_km_median"],
                "val_baz_error_deg_median": val_m["overall"]["baz_error_deg_median"],
            }

        history = fit_epochs(
            model, stopper, epochs=config.epochs, schedule=schedule, n_train=n_train,
            run_epoch=run_epoch, validate=validate, supervised="mse", score="val_location_error_km_median",
        )  # fmt: skip

        eval_idx = test_idx if test_idx.numel() else val_idx
        test_m, test_err = evaluate_seismic(
            model, data, eval_idx, scale_km=scale, chunk=config.eval_chunk, amp=config.amp
        )
        val_m, _ = evaluate_seismic(
            model, data, val_idx, scale_km=scale, chunk=config.eval_chunk, amp=config.amp
        )
        trivial = mean_predictors(data, torch.from_numpy(labelled).to(device), eval_idx)
        metrics: dict[str, Any] = {
            "kind": "seismic",
            "mode": config.mode,
            "alpha": config.alpha if config.mode not in ("baseline", "finetune") else None,
            "arch": config.arch,
            "device": str(device),
            "best_epoch": stopper.best_epoch,
            "epochs_run": len(history),
            "stopped_early": len(history) < config.epochs,
            "n_train_labelled": int(labelled.size),
            "n_unlabelled": int(unlabelled.size),
            "n_labelled_events": int(lab_events.size),
            "n_val": int(val_idx.numel()),
            "n_test": int(eval_idx.numel()),
            "test_split": "test" if test_idx.numel() else "val",
            "val": val_m,
            "test": test_m,
            "predict_the_mean": {
                name: {
                    "location_error_km_median": float(np.median(e)),
                    "location_error_km_mean": float(np.mean(e)),
                }
                for name, e in trivial.items()
            },
            "wall_time_s": time.perf_counter() - start,
        }
        meta = {
            "kind": "seismic",
            "channel_mean": mean.cpu(),
            "channel_std": std.cpu(),
            "distance_scale_km": scale,
        }
    sens = np.asarray(data.sensor_type)[eval_idx.cpu().numpy()]
    extras = {
        "location_error_km": test_err,
        "sensor_type": sens,
        **{f"mean_{k}": v for k, v in trivial.items()},
    }
    result = TrainResult(model, config, history, metrics, meta, extras=extras)
    if config.out_dir:
        from models.runs import save_run

        result.run_dir = save_run(result, Path(config.out_dir))
    return result
