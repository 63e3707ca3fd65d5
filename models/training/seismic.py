"""Seismic single-station location training (report section 4): a VGG regressor under MSE + EMIN.

The supervised target is (distance / ``distance_scale_km``, sin BAZ, cos BAZ); EMIN is the
per-event spread of the implied event locations (:func:`models.emin.seismic_emin_loss`), for
which batches carry whole events (:func:`event_grouped_order`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from models.data import SeismicData, load_seismic
from models.emin import seismic_emin_loss
from models.geo import baz_from_sincos, destination, haversine_km
from models.metrics import location_error_km, seismic_metrics
from models.nets import build_seismic_model, shared_parameters
from models.runs import save_run
from models.training.loop import (
    EarlyStopper,
    EpochCallback,
    TrainResult,
    alpha_schedule,
    autocast_for,
    epoch_order,
    fit_epochs,
    optimise,
    resolve_device,
    run_batches,
    seeded_generator,
    train_context,
)
from pipeline.errors import DataSelectionError

if TYPE_CHECKING:
    from schemas.training import SeismicTrainConfig

__all__ = [
    "SeismicSplit",
    "evaluate_seismic",
    "event_grouped_order",
    "mean_predictors",
    "predict_seismic",
    "seismic_epoch",
    "seismic_split",
    "train_seismic",
]


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
    ``alpha == 1``): :func:`models.emin.seismic_emin_loss`, student–teacher when ``teacher``
    (bool ``[N]``) is given. Returns the epoch means ``[loss, mse, emin, alpha]`` as a device tensor.
    """
    device = data.x.device
    need_emin = alpha is None or alpha < 1.0

    def step(idx: Tensor, lab: Tensor | None) -> Tensor | None:
        assert lab is not None
        if idx.numel() < 2:
            return None  # BatchNorm needs two samples
        with autocast_for(device, amp):
            out = model(data.x[idx])
        out = out.float()
        mse = ((out - target[idx]) ** 2).mean(dim=1)
        sup = torch.where(lab, mse, torch.zeros_like(mse)).sum() / lab.sum().clamp(min=1).to(mse.dtype)
        if need_emin:
            emin = seismic_emin_loss(
                out, data.station_lat[idx], data.station_lon[idx], data.event_index[idx],
                distance_scale_km=distance_scale_km, centre=centre,  # type: ignore[arg-type]
                is_teacher=None if teacher is None else teacher[idx],
            )  # fmt: skip
        else:
            emin = torch.zeros_like(sup)
        return optimise(opt, sup, emin, alpha, shared, normalization)

    return run_batches(order, labelled, batch_size, step)


@dataclass(frozen=True)
class SeismicSplit:
    """Trace indices of a seismic run; ``label_fraction`` keeps whole training *events* labelled."""

    labelled: np.ndarray  # training traces whose target counts
    unlabelled: np.ndarray
    n_labelled_events: int
    train_idx: Tensor  # what an epoch iterates: labelled, then (ssl) unlabelled
    is_labelled: Tensor
    val_idx: Tensor
    test_idx: Tensor


def seismic_split(config: SeismicTrainConfig, data: SeismicData) -> SeismicSplit:
    """The store's train/val/test split, with a seeded fraction of the training events labelled."""
    device = data.x.device
    split = data.split.cpu().numpy()
    ev_np = data.event_index.cpu().numpy()
    train_all = np.flatnonzero(split == 0)
    val_np, test_np = np.flatnonzero(split == 1), np.flatnonzero(split == 2)
    if train_all.size == 0 or val_np.size == 0:
        raise DataSelectionError(
            "the store has no training or no validation traces",
            fix="publish a store with train and val splits",
        )
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
    return SeismicSplit(
        labelled=labelled,
        unlabelled=unlabelled,
        n_labelled_events=int(lab_events.size),
        train_idx=torch.from_numpy(train_np).to(device),
        is_labelled=torch.from_numpy(np.arange(train_np.size) < labelled.size).to(device),
        val_idx=torch.from_numpy(val_np).to(device),
        test_idx=torch.from_numpy(test_np).to(device),
    )


def _targets(config: SeismicTrainConfig, data: SeismicData) -> tuple[Tensor, Tensor | None]:
    """The regression target ``[N, 3]`` (scaled distance, sin, cos) and, for student–teacher, the teacher traces."""
    target = torch.stack([data.distance_km / config.distance_scale_km, data.sin_baz, data.cos_baz], dim=1)
    if config.mode != "student-teacher":
        return target, None
    return target, torch.tensor([s == config.teacher_sensor for s in data.sensor_type], device=data.x.device)


def _metrics(
    config: SeismicTrainConfig,
    split: SeismicSplit,
    history: list[dict[str, float]],
    val_m: dict[str, Any],
    test_m: dict[str, Any],
    trivial: dict[str, np.ndarray],
    *,
    device: torch.device,
    best_epoch: int,
    start: float,
) -> dict[str, Any]:
    """The metrics.json content of one seismic run."""
    has_test = bool(split.test_idx.numel())
    return {
        "kind": "seismic",
        "mode": config.mode,
        "alpha": config.alpha if config.mode not in ("baseline", "finetune") else None,
        "arch": config.arch,
        "device": str(device),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_early": len(history) < config.epochs,
        "n_train_labelled": int(split.labelled.size),
        "n_unlabelled": int(split.unlabelled.size),
        "n_labelled_events": split.n_labelled_events,
        "n_val": int(split.val_idx.numel()),
        "n_test": int((split.test_idx if has_test else split.val_idx).numel()),
        "test_split": "test" if has_test else "val",
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


def train_seismic(
    config: SeismicTrainConfig, data: SeismicData | None = None, *, on_epoch: EpochCallback | None = None
) -> TrainResult:
    """Train a single-station location CNN as configured; write the run folder when ``config.out_dir``."""
    start = time.perf_counter()
    device = resolve_device(config.device)
    with train_context(config.seed, device, config.deterministic):
        data = (load_seismic(config.store, max_traces=config.max_traces) if data is None else data).to(device)
        split = seismic_split(config, data)
        mean, std = data.channel_stats(torch.from_numpy(split.labelled).to(device))
        data = data.standardise(mean, std)
        scale, chunk = config.distance_scale_km, config.eval_chunk
        target, teacher_all = _targets(config, data)
        model = build_seismic_model(config).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        schedule = alpha_schedule(config)
        shared = shared_parameters(model) if schedule is None else []
        gen = seeded_generator(device, config.seed)
        stopper = EarlyStopper("min", config.patience)
        n_train, bs = int(split.train_idx.numel()), config.batch_size
        ev_train = data.event_index[split.train_idx]

        def run_epoch(alpha_e: float | None) -> Tensor:
            need_emin = alpha_e is None or alpha_e < 1.0
            perm = event_grouped_order(ev_train, gen) if need_emin else epoch_order(n_train, gen, device)
            return seismic_epoch(
                model, opt, data, target, split.train_idx[perm], split.is_labelled[perm], batch_size=bs,
                alpha=alpha_e, teacher=teacher_all, shared=shared, normalization=config.mgda_normalization,
                amp=config.amp, distance_scale_km=scale, centre=config.centre,
            )  # fmt: skip

        def validate() -> dict[str, float]:
            val_m, _ = evaluate_seismic(
                model, data, split.val_idx, scale_km=scale, chunk=chunk, amp=config.amp
            )
            return {
                "val_location_error_km_median": val_m["overall"]["location_error_km_median"],
                "val_distance_error_km_median": val_m["overall"]["distance_error_km_median"],
                "val_baz_error_deg_median": val_m["overall"]["baz_error_deg_median"],
            }

        history = fit_epochs(
            model, stopper, epochs=config.epochs, schedule=schedule, n_train=n_train,
            run_epoch=run_epoch, validate=validate, supervised="mse", score="val_location_error_km_median", on_epoch=on_epoch,
        )  # fmt: skip

        eval_idx = split.test_idx if split.test_idx.numel() else split.val_idx
        test_m, test_err = evaluate_seismic(
            model, data, eval_idx, scale_km=scale, chunk=chunk, amp=config.amp
        )
        val_m, _ = evaluate_seismic(model, data, split.val_idx, scale_km=scale, chunk=chunk, amp=config.amp)
        trivial = mean_predictors(data, torch.from_numpy(split.labelled).to(device), eval_idx)
        metrics = _metrics(
            config,
            split,
            history,
            val_m,
            test_m,
            trivial,
            device=device,
            best_epoch=stopper.best_epoch,
            start=start,
        )
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
        result.run_dir = save_run(result, Path(config.out_dir))
    return result
