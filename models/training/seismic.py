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

from models.data import SeismicData, load_seismic, stratified_label_split
from models.emin import seismic_emin_loss
from models.nets import shared_parameters
from models.runs import save_run
from models.seismic_nets import build_seismic_model, forward_seismic, sensor_groups
from models.training.loop import (
    EarlyStopper,
    EpochCallback,
    FitOutcome,
    TrainResult,
    alpha_schedule,
    autocast_for,
    epoch_order,
    fit_epochs,
    optimise,
    resolve_device,
    run_batches,
    seeded_generator,
    switch_epoch_of,
    train_context,
)
from models.training.seismic_eval import evaluate_seismic, mean_predictors, predict_seismic, test_locations
from pipeline.errors import DataSelectionError, TrainingConfigError

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
    group: Tensor | None = None,
) -> Tensor:
    """One epoch of the location CNN over ``order`` (trace indices, already ordered) in batches.

    Supervised term: MSE on ``target [N, 3]`` for the ``labelled`` traces; EMIN (unless
    ``alpha == 1``): :func:`models.emin.seismic_emin_loss`, student–teacher when ``teacher``
    (bool ``[N]``) is given; ``group`` (sensor index ``[N]``) routes traces of per-sensor
    networks. Returns the epoch means ``[loss, mse, emin, alpha]`` as a device tensor (EMIN NaN
    when not computed, α = 1).
    """
    device = data.x.device
    need_emin = alpha is None or alpha < 1.0
    if group is None:
        group = torch.zeros(data.n, dtype=torch.int64, device=device)

    def step(idx: Tensor, lab: Tensor | None) -> Tensor | None:
        assert lab is not None
        if idx.numel() < 2:
            return None  # BatchNorm needs two samples
        with autocast_for(device, amp):
            out = forward_seismic(model, data.x[idx], group[idx])
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
            emin = torch.full_like(sup, float("nan"))  # not computed: logged as NaN, never mixed in
        return optimise(opt, sup, emin, alpha, shared, normalization)

    return run_batches(order, labelled, batch_size, step)


@dataclass(frozen=True)
class SeismicSplit:
    """Trace indices of a seismic run; the label budget keeps whole training *events* labelled."""

    labelled: np.ndarray  # training traces whose target counts
    unlabelled: np.ndarray
    labelled_events: np.ndarray  # event indices (into SeismicData.event_ids)
    train_idx: Tensor  # what an epoch iterates: labelled, then (unlabelled=use) unlabelled
    is_labelled: Tensor
    val_idx: Tensor
    test_idx: Tensor

    @property
    def n_labelled_events(self) -> int:
        """Number of labelled training events."""
        return int(self.labelled_events.size)


def seismic_split(config: SeismicTrainConfig, data: SeismicData) -> SeismicSplit:
    """The store's train/val/test split, with a seeded budget of training events labelled.

    The events are drawn by :func:`models.data.stratified_label_split` over the training
    events as one class (``label_fraction`` or ``labelled_events``), so the subset depends
    only on (seed, budget).
    """
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
    pick, _ = stratified_label_split(
        np.zeros(train_events.size, np.int64),
        config.label_fraction,
        config.seed,
        per_class=config.labelled_events,
    )
    lab_events = np.sort(train_events[pick])
    lab_trace = np.isin(ev_np[train_all], lab_events)
    labelled, unlabelled = train_all[lab_trace], train_all[~lab_trace]
    train_np = np.concatenate([labelled, unlabelled]) if config.uses_unlabelled else labelled
    return SeismicSplit(
        labelled=labelled,
        unlabelled=unlabelled,
        labelled_events=lab_events,
        train_idx=torch.from_numpy(train_np).to(device),
        is_labelled=torch.from_numpy(np.arange(train_np.size) < labelled.size).to(device),
        val_idx=torch.from_numpy(val_np).to(device),
        test_idx=torch.from_numpy(test_np).to(device),
    )


def _targets(config: SeismicTrainConfig, data: SeismicData) -> tuple[Tensor, Tensor | None]:
    """The regression target ``[N, 3]`` (scaled distance, sin, cos) and, for student–teacher, the teacher traces."""
    target = torch.stack([data.distance_km / config.distance_scale_km, data.sin_baz, data.cos_baz], dim=1)
    if config.effective_emin != "student-teacher":
        return target, None
    return target, torch.tensor([s == config.teacher_sensor for s in data.sensor_type], device=data.x.device)


def _metrics(
    config: SeismicTrainConfig,
    split: SeismicSplit,
    fit: FitOutcome,
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
    history = fit.history
    out: dict[str, Any] = {
        "kind": "seismic",
        "mode": config.mode,
        "alpha": config.alpha_label,
        "arch": config.arch,
        "device": str(device),
        "best_epoch": best_epoch,
        "restore": fit.restore,
        "restored_epoch": fit.restored_epoch,
        "switch_epoch": fit.switch_epoch,
        "epochs_run": len(history),
        "stopped_early": len(history) < config.epochs,
        "n_train_labelled": int(split.labelled.size),
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
    if config.uses_unlabelled:
        out["n_unlabelled"] = int(split.unlabelled.size)
    return out


def _setup(config: SeismicTrainConfig, data: SeismicData, device: torch.device) -> dict[str, Any]:
    """Split, standardisation, targets, sensor groups and the model of one run."""
    if data.x.shape[1] != config.in_channels:
        raise TrainingConfigError(
            f"inputs={config.inputs!r} needs {config.in_channels} input channels, the data has {data.x.shape[1]}",
            field="inputs",
            fix="load the data with load_seismic(..., polarity=True) for power+polarity, or set inputs to match",
        )
    split = seismic_split(config, data)
    mean, std = data.channel_stats(torch.from_numpy(split.labelled).to(device))
    data = data.standardise(mean, std)
    target, teacher = _targets(config, data)
    sensors = sorted(set(data.sensor_type))
    group = sensor_groups(data.sensor_type, sensors).to(device)
    model = build_seismic_model(config, sensors).to(device)
    meta = {
        "kind": "seismic",
        "channel_mean": mean.cpu(),
        "channel_std": std.cpu(),
        "distance_scale_km": config.distance_scale_km,
        "sensors": sensors,
    }
    return {
        "split": split,
        "data": data,
        "target": target,
        "teacher": teacher,
        "group": group,
        "model": model,
        "meta": meta,
    }


def train_seismic(
    config: SeismicTrainConfig, data: SeismicData | None = None, *, on_epoch: EpochCallback | None = None
) -> TrainResult:
    """Train a single-station location CNN as configured; write the run folder when ``config.out_dir``."""
    start = time.perf_counter()
    device = resolve_device(config.device)
    with train_context(config.seed, device, config.deterministic):
        if data is None:
            data = load_seismic(
                config.store, max_traces=config.max_traces, polarity=config.inputs == "power+polarity"
            )
        data = data.to(device)
        st = _setup(config, data, device)
        split, data, target, group, model = st["split"], st["data"], st["target"], st["group"], st["model"]
        scale, chunk = config.distance_scale_km, config.eval_chunk
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        schedule = alpha_schedule(config)
        shared = shared_parameters(model) if schedule is None else []
        gen = seeded_generator(device, config.seed)
        stopper = EarlyStopper("min", config.patience)
        n_train, bs = int(split.train_idx.numel()), config.batch_size
        ev_train = data.event_index[split.train_idx]
        eval_idx = split.test_idx if split.test_idx.numel() else split.val_idx

        def run_epoch(alpha_e: float | None) -> Tensor:
            need_emin = alpha_e is None or alpha_e < 1.0
            perm = event_grouped_order(ev_train, gen) if need_emin else epoch_order(n_train, gen, device)
            return seismic_epoch(
                model, opt, data, target, split.train_idx[perm], split.is_labelled[perm], batch_size=bs,
                alpha=alpha_e, teacher=st["teacher"], shared=shared, normalization=config.mgda_normalization,
                amp=config.amp, distance_scale_km=scale, centre=config.effective_centre, group=group,
            )  # fmt: skip

        def evaluate(idx: Tensor) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
            return evaluate_seismic(
                model, data, idx, scale_km=scale, chunk=chunk, amp=config.amp, group=group
            )

        def validate() -> dict[str, float]:
            o = evaluate(split.val_idx)[0]["overall"]
            return {
                "val_location_error_km_median": o["location_error_km_median"],
                "val_distance_error_km_median": o["distance_error_km_median"],
                "val_baz_error_deg_median": o["baz_error_deg_median"],
            }

        before: dict[str, Any] = {}

        def on_switch(epoch: int) -> None:
            before.update(epoch=epoch - 1, val=evaluate(split.val_idx)[0], test=evaluate(eval_idx)[0])

        fit = fit_epochs(
            model, stopper, epochs=config.epochs, schedule=schedule, n_train=n_train,
            run_epoch=run_epoch, validate=validate, supervised="mse", score="val_location_error_km_median",
            on_epoch=on_epoch, restore=config.effective_restore, switch_epoch=switch_epoch_of(config),
            on_switch=on_switch,
        )  # fmt: skip
        test_m, test_trace = evaluate(eval_idx)
        val_m, _ = evaluate(split.val_idx)
        trivial = mean_predictors(data, torch.from_numpy(split.labelled).to(device), eval_idx)
        metrics = _metrics(
            config,
            split,
            fit,
            val_m,
            test_m,
            trivial,
            device=device,
            best_epoch=stopper.best_epoch,
            start=start,
        )
        metrics["before_switch"] = before or None
        metrics["final"] = {"epoch": fit.restored_epoch, "val": val_m, "test": test_m}
    at = eval_idx.cpu().numpy()
    sens = np.asarray(data.sensor_type)[at]
    extras = {
        "location_error_km": test_trace["location_error_km"],
        "sensor_type": sens,
        "locations": test_locations(data, at, test_trace),
        "labelled_ids": {
            "labelled_trace_index": split.labelled.tolist(),
            "labelled_event_ids": [data.event_ids[i] for i in split.labelled_events.tolist()],
        },
        **{f"mean_{k}": v for k, v in trivial.items()},
    }
    result = TrainResult(model, config, fit.history, metrics, st["meta"], extras=extras)
    if config.out_dir:
        result.run_dir = save_run(result, Path(config.out_dir))
    return result
