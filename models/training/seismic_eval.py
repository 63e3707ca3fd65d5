"""Evaluation of seismic location models: predictions in chunks, the metrics of a split, the
per-trace test locations a run saves (``locations.npz``) and the two predict-the-mean
baselines (used by :mod:`models.training.seismic`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.data import SeismicData
from models.geo import baz_from_sincos, destination, haversine_km
from models.metrics import location_error_km, seismic_metrics, variance_error_relation
from models.seismic_nets import forward_seismic
from models.training.loop import autocast_for

__all__ = ["evaluate_seismic", "mean_predictors", "predict_seismic", "test_locations"]


@torch.no_grad()
def predict_seismic(
    model: nn.Module,
    x: Tensor,
    idx: Tensor,
    *,
    chunk: int = 512,
    amp: bool = True,
    group: Tensor | None = None,
) -> Tensor:
    """Eval-mode outputs ``[len(idx), 3]`` float32, in chunks (``group``: sensor index per trace, per-sensor nets)."""
    if group is None:
        group = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
    was = model.training
    model.eval()
    outs = [torch.zeros((0, 3), device=x.device)]
    for s in range(0, int(idx.numel()), chunk):
        with autocast_for(x.device, amp):
            j = idx[s : s + chunk]
            outs.append(forward_seismic(model, x[j], group[j]).float())
    model.train(was)
    return torch.cat(outs, dim=0)


def evaluate_seismic(
    model: nn.Module,
    data: SeismicData,
    idx: Tensor,
    *,
    scale_km: float,
    chunk: int = 512,
    amp: bool = True,
    group: Tensor | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`models.metrics.seismic_metrics` (+ the variance–error relation) on ``idx``, and per
    trace the predicted location (``pred_lat``/``pred_lon``, degrees), distance (km), back
    azimuth (degrees) and ``location_error_km``."""
    out = predict_seismic(model, data.x, idx, chunk=chunk, amp=amp, group=group)
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
    m["variance_vs_error"] = variance_error_relation(lat, lon, err, data.event_index[idx])
    per_trace = {
        "pred_lat": lat.cpu().numpy(),
        "pred_lon": lon.cpu().numpy(),
        "pred_distance_km": dist.cpu().numpy(),
        "pred_baz_deg": baz.cpu().numpy(),
        "location_error_km": err,
    }
    return m, per_trace


def test_locations(
    data: SeismicData, at: np.ndarray, per_trace: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``locations.npz``: per evaluated trace (store positions ``at``) the prediction of
    :func:`evaluate_seismic` beside the truth (report Fig. 14, 16 and the variance–error relation)."""

    def take(t: Tensor) -> np.ndarray:
        return t.cpu().numpy()[at]

    return {
        "trace_index": at.astype(np.int64),
        "event_id": np.asarray(data.event_ids)[take(data.event_index)],
        "sensor_type": np.asarray(data.sensor_type)[at],
        "station_lat": take(data.station_lat),
        "station_lon": take(data.station_lon),
        "event_lat": take(data.event_lat),
        "event_lon": take(data.event_lon),
        "distance_km": take(data.distance_km),
        **per_trace,
    }


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
