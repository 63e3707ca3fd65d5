"""Evaluation metrics for the report's experiments (sections 3.3–3.7, 4.4–4.6).

Inputs are torch tensors (numpy arrays are accepted too) on any device;
results are Python floats, plain dicts of floats, or numpy arrays, so they
can go straight into run records.

Classification conventions: ``logits`` is ``[M, B, C]``, ``mask`` ``[M, B]``
bool (True = modality observed the sample), ``labels`` ``[B]`` int. Macro
accuracy is the mean per-class recall over the classes that occur in the
evaluated labels; macro error is ``1 − macro accuracy``. Fusion is the
report's: mean of the per-modality softmax over the present modalities of
each sample, then argmax.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.emin import event_centres
from models.geo import REPORT_EARTH_RADIUS_KM, destination, haversine_km

ArrayLike = Tensor | np.ndarray

DEFAULT_DISTANCE_BINS_KM: tuple[float, ...] = (0.0, 40.0, 100.0, 200.0, math.inf)

__all__ = [
    "DEFAULT_DISTANCE_BINS_KM",
    "baz_error_deg",
    "classification_metrics",
    "confusion_matrix",
    "event_spread_error",
    "fused_probs",
    "location_error_km",
    "macro_accuracy",
    "predictive_variance",
    "seismic_metrics",
    "variance_distribution",
    "variance_error_relation",
]


def _t(x: ArrayLike) -> Tensor:
    """As a (detached) tensor."""
    return x.detach() if isinstance(x, Tensor) else torch.as_tensor(x)


def _probs(logits: Tensor, from_logits: bool) -> Tensor:
    """Softmax over the class dimension (in float64 for stable statistics), unless already probabilities."""
    x = logits.double()
    return torch.softmax(x, dim=-1) if from_logits else x


def confusion_matrix(pred: ArrayLike, labels: ArrayLike, n_classes: int) -> np.ndarray:
    """``[C, C]`` int64 counts; row = true class, column = predicted class."""
    p = _t(pred).long().reshape(-1)
    y = _t(labels).long().reshape(-1).to(p.device)
    if p.shape != y.shape:
        raise ValueError("pred and labels must have the same length")
    flat = torch.bincount(y * n_classes + p, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).cpu().numpy()


def macro_accuracy(pred: ArrayLike, labels: ArrayLike, *, n_classes: int | None = None) -> float:
    """Mean per-class recall over the classes present in ``labels`` (NaN if there are no labels)."""
    y = _t(labels).long().reshape(-1)
    if y.numel() == 0:
        return math.nan
    p = _t(pred).long().reshape(-1)
    c = int(max(int(y.max()), int(p.max()) if p.numel() else 0) + 1) if n_classes is None else n_classes
    cm = confusion_matrix(p, y, c)
    support = cm.sum(axis=1)
    seen = support > 0
    return float(np.mean(np.diag(cm)[seen] / support[seen]))


def fused_probs(logits: ArrayLike, mask: ArrayLike, *, from_logits: bool = True) -> Tensor:
    """Report fusion: mean of per-modality softmax over present modalities, ``[B, C]`` float64.

    Rows of samples that no modality observed are NaN.
    """
    prob = _probs(_t(logits), from_logits)
    m = _t(mask).to(device=prob.device, dtype=torch.bool).unsqueeze(-1)
    n = m.sum(dim=0).to(prob.dtype)
    s = torch.where(m, prob, torch.zeros((), dtype=prob.dtype, device=prob.device)).sum(dim=0)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, math.nan))


def _cls_stats(pred: Tensor, labels: Tensor, n_classes: int) -> dict[str, float]:
    """Macro accuracy/error, plain accuracy and count for one set of predictions."""
    n = int(labels.numel())
    if n == 0:
        return {"macro_accuracy": math.nan, "macro_error": math.nan, "accuracy": math.nan, "n": 0.0}
    macc = macro_accuracy(pred, labels, n_classes=n_classes)
    acc = float((pred == labels).double().mean())
    return {"macro_accuracy": macc, "macro_error": 1.0 - macc, "accuracy": acc, "n": float(n)}


def classification_metrics(
    logits: ArrayLike,
    labels: ArrayLike,
    mask: ArrayLike,
    *,
    n_classes: int | None = None,
    names: Sequence[str] | None = None,
    from_logits: bool = True,
) -> dict[str, dict[str, float]]:
    """Fused and per-modality macro accuracy/error (report Figures 6, 8, 10–13).

    Returns ``{"fused": stats, <modality name>: stats, ...}`` where ``stats``
    has ``macro_accuracy``, ``macro_error``, ``accuracy`` and ``n``. A
    modality is scored only on the samples it observed; fusion only on
    samples with at least one present modality. Modality names default to
    ``"m0", "m1", ...``.
    """
    lg = _t(logits)
    y = _t(labels).long().to(lg.device)
    m = _t(mask).to(device=lg.device, dtype=torch.bool)
    n_mod, _, c = lg.shape
    n_classes = c if n_classes is None else n_classes
    names = [f"m{i}" for i in range(n_mod)] if names is None else list(names)
    if len(names) != n_mod:
        raise ValueError("names must have one entry per modality")
    fused = fused_probs(lg, m, from_logits=from_logits)
    any_present = m.any(dim=0)
    out = {"fused": _cls_stats(fused[any_present].argmax(dim=-1), y[any_present], n_classes)}
    pred_m = lg.argmax(dim=-1)  # softmax is monotonic: argmax of logits = argmax of probabilities
    for i, name in enumerate(names):
        out[name] = _cls_stats(pred_m[i][m[i]], y[m[i]], n_classes)
    return out


def predictive_variance(
    logits: ArrayLike, mask: ArrayLike, *, from_logits: bool = True, min_present: int = 2
) -> np.ndarray:
    """Per-sample cross-modality predictive variance (report section 3.6), ``[B]`` float64.

    Population variance (divide by ``n`` present) of the softmax outputs over
    the present modalities, averaged over classes. NaN for samples with fewer
    than ``min_present`` present modalities (a single model cannot disagree).
    """
    prob = _probs(_t(logits), from_logits)
    m = _t(mask).to(device=prob.device, dtype=torch.bool)
    m3 = m.unsqueeze(-1)
    zero = torch.zeros((), dtype=prob.dtype, device=prob.device)
    n = m.sum(dim=0)
    n_f = n.clamp(min=1).to(prob.dtype).unsqueeze(-1)
    mean = torch.where(m3, prob, zero).sum(dim=0) / n_f
    dev = torch.where(m3, prob - mean, zero)
    var = ((dev * dev).sum(dim=0) / n_f).mean(dim=-1)
    var = torch.where(n >= min_present, var, torch.full_like(var, math.nan))
    return var.cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Seismic location
# ---------------------------------------------------------------------------------------------


def baz_error_deg(pred_deg: ArrayLike, true_deg: ArrayLike) -> np.ndarray:
    """Circular absolute back-azimuth error in degrees, in ``[0, 180]``."""
    p = _t(pred_deg).double()
    d = torch.remainder(p - _t(true_deg).double().to(p.device), 360.0)
    return torch.minimum(d, 360.0 - d).cpu().numpy()


def location_error_km(
    pred_lat: ArrayLike,
    pred_lon: ArrayLike,
    true_lat: ArrayLike,
    true_lon: ArrayLike,
    *,
    radius_km: float = REPORT_EARTH_RADIUS_KM,
) -> np.ndarray:
    """Great-circle distance (km) between predicted and true locations (degrees in)."""
    a = _t(pred_lat).double()
    return (
        haversine_km(a, _t(pred_lon).double(), _t(true_lat).double(), _t(true_lon).double(), radius_km)
        .cpu()
        .numpy()
    )


def _seis_stats(
    dist_err: np.ndarray, baz_err: np.ndarray, loc_err: np.ndarray, per_km: np.ndarray
) -> dict[str, float]:
    """Median and mean of the error kinds (NaN when empty); ``per_km``: location error / true distance."""
    out: dict[str, float] = {"n": float(dist_err.size)}
    kinds = (
        ("distance_error_km", dist_err),
        ("baz_error_deg", baz_err),
        ("location_error_km", loc_err),
        ("location_error_per_km", per_km),
    )
    for key, arr in kinds:
        out[f"{key}_median"] = float(np.median(arr)) if arr.size else math.nan
        out[f"{key}_mean"] = float(np.mean(arr)) if arr.size else math.nan
    return out


def _bin_label(lo: float, hi: float) -> str:
    """``"0-40"`` style label for a distance bin ``[lo, hi)``."""

    def fmt(v: float) -> str:
        return "inf" if math.isinf(v) else f"{v:g}"

    return f"{fmt(lo)}-{fmt(hi)}"


def seismic_metrics(
    *,
    pred_dist_km: ArrayLike,
    pred_baz_deg: ArrayLike,
    true_dist_km: ArrayLike,
    true_baz_deg: ArrayLike,
    station_lat: ArrayLike,
    station_lon: ArrayLike,
    event_lat: ArrayLike,
    event_lon: ArrayLike,
    sensor_type: Sequence[Any] | np.ndarray | Tensor | None = None,
    distance_bins_km: Sequence[float] = DEFAULT_DISTANCE_BINS_KM,
    event_ids: ArrayLike | None = None,
    radius_km: float = REPORT_EARTH_RADIUS_KM,
) -> dict[str, Any]:
    """Single-station location metrics (report section 4.4–4.6), all per trace ``[B]``.

    The predicted location is :func:`models.geo.destination` from the
    station with the predicted BAZ and distance; its error is the
    great-circle distance to the catalogue event. Returns::

        {"overall": stats,
         "by_sensor": {sensor_type: stats, ...},          # if sensor_type given
         "by_distance_bin": {"0-40": stats, ...},          # bins on the TRUE distance, [lo, hi)
         "event_level": stats_loc}                         # if event_ids given

    with ``stats`` = ``n`` and the median/mean of ``distance_error_km``,
    ``baz_error_deg`` (circular, [0, 180]), ``location_error_km`` and
    ``location_error_per_km`` (location error divided by the true distance, report Fig. 15a;
    traces closer than 1 km divide by 1 km).
    ``event_level`` locates each event by the component-wise median of its
    traces' predicted locations (as the seismic EMIN centre) and reports
    ``n`` (events) and ``location_error_km_median``/``_mean``.
    """
    p_dist = _t(pred_dist_km).double()
    dev = p_dist.device

    def T(x: ArrayLike) -> Tensor:
        return _t(x).double().to(dev)

    t_dist, p_baz, t_baz = T(true_dist_km), T(pred_baz_deg), T(true_baz_deg)
    s_lat, s_lon, e_lat, e_lon = T(station_lat), T(station_lon), T(event_lat), T(event_lon)
    lat_hat, lon_hat = destination(s_lat, s_lon, p_baz, p_dist, radius_km)
    dist_err = (p_dist - t_dist).abs().cpu().numpy()
    baz_err = baz_error_deg(p_baz, t_baz)
    loc_err = haversine_km(lat_hat, lon_hat, e_lat, e_lon, radius_km).cpu().numpy()
    per_km = loc_err / np.maximum(t_dist.cpu().numpy(), 1.0)

    def stats(sel: np.ndarray | slice) -> dict[str, float]:
        return _seis_stats(dist_err[sel], baz_err[sel], loc_err[sel], per_km[sel])

    result: dict[str, Any] = {"overall": stats(slice(None))}
    if sensor_type is not None:
        st = np.asarray(sensor_type.cpu() if isinstance(sensor_type, Tensor) else sensor_type)
        if st.shape != dist_err.shape:
            raise ValueError("sensor_type must have one entry per trace")
        result["by_sensor"] = {str(k): stats(st == k) for k in np.unique(st)}
    edges = [float(e) for e in distance_bins_km]
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError("distance_bins_km must be strictly increasing")
    td = t_dist.cpu().numpy()
    result["by_distance_bin"] = {
        _bin_label(lo, hi): stats(sel)
        for lo, hi in itertools.pairwise(edges)
        for sel in [(td >= lo) & (td < hi)]
    }
    if event_ids is not None:
        ev = _t(event_ids).to(dev)
        pred_c = event_centres(lat_hat, lon_hat, ev, centre="median")
        true_c = event_centres(e_lat, e_lon, ev, centre="median")
        ev_err = haversine_km(pred_c.lat, pred_c.lon, true_c.lat, true_c.lon, radius_km).cpu().numpy()
        result["event_level"] = {
            "n": float(ev_err.size),
            "location_error_km_median": float(np.median(ev_err)) if ev_err.size else math.nan,
            "location_error_km_mean": float(np.mean(ev_err)) if ev_err.size else math.nan,
        }
    return result


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation and its p-value (:func:`scipy.stats.spearmanr`); NaN if < 3 points."""
    if x.size < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan, math.nan
    from scipy.stats import spearmanr

    res = spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def event_spread_error(
    pred_lat: ArrayLike,
    pred_lon: ArrayLike,
    error_km: ArrayLike,
    event_ids: ArrayLike,
    *,
    radius_km: float = REPORT_EARTH_RADIUS_KM,
) -> dict[str, np.ndarray]:
    """Predictive spread and error per trace and per event (report 4.5).

    Per trace, ``trace_spread_km2`` is the squared great-circle distance (km²) of its predicted
    location from the median predicted location of its event (the EMIN centre), and
    ``trace_kept`` says its event has at least two traces. Per such event (ascending event id):
    ``event_variance_km2``, the mean of its traces' spreads, and ``event_error_km``, the median
    of their errors. Events with one trace carry no spread and are left out.
    """
    lat, lon = _t(pred_lat).double(), _t(pred_lon).double()
    ev = _t(event_ids).to(lat.device)
    c = event_centres(lat, lon, ev, centre="median")
    dev = haversine_km(lat, lon, c.lat[c.inverse], c.lon[c.inverse], radius_km).cpu().numpy() ** 2
    err = np.asarray(_t(error_km).double().cpu().numpy())
    inv = c.inverse.cpu().numpy()
    multi = np.flatnonzero((c.n_members >= 2).cpu().numpy())
    return {
        "trace_spread_km2": dev,
        "trace_kept": np.isin(inv, multi),
        "event_variance_km2": np.array([dev[inv == e].mean() for e in multi]),
        "event_error_km": np.array([np.median(err[inv == e]) for e in multi]),
    }


def variance_error_relation(
    pred_lat: ArrayLike,
    pred_lon: ArrayLike,
    error_km: ArrayLike,
    event_ids: ArrayLike,
    *,
    radius_km: float = REPORT_EARTH_RADIUS_KM,
) -> dict[str, float]:
    """Is predictive variance informative (report 4.5)? Spearman ρ of spread vs error.

    The spreads and errors are :func:`event_spread_error`'s, per trace (of events with two or
    more traces) and per event. Returns ``n_traces``, ``trace_spearman``, ``trace_p``,
    ``n_events``, ``event_spearman``, ``event_p`` (ρ > 0: larger spread goes with larger error).
    """
    s = event_spread_error(pred_lat, pred_lon, error_km, event_ids, radius_km=radius_km)
    keep = s["trace_kept"]
    err = np.asarray(_t(error_km).double().cpu().numpy())
    rho_t, p_t = _spearman(s["trace_spread_km2"][keep], err[keep])
    rho_e, p_e = _spearman(s["event_variance_km2"], s["event_error_km"])
    return {
        "n_traces": float(keep.sum()),
        "trace_spearman": rho_t,
        "trace_p": p_t,
        "n_events": float(s["event_variance_km2"].size),
        "event_spearman": rho_e,
        "event_p": p_e,
    }


def variance_distribution(var: np.ndarray, *, bins: int = 20) -> dict[str, Any]:
    """Quantiles and a log-spaced histogram of per-sample predictive variances (report Fig. 11).

    NaN entries (samples seen by < 2 modalities) are left out. Histogram edges are
    log-spaced between the smallest positive and the largest value.
    """
    v = np.asarray(var, dtype=float)
    v = v[np.isfinite(v)]
    qs = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    out: dict[str, Any] = {"n": int(v.size), "mean": float(v.mean()) if v.size else math.nan}
    out["quantiles"] = {
        f"q{round(q * 100):02d}": float(np.quantile(v, q)) if v.size else math.nan for q in qs
    }
    pos = v[v > 0]
    if pos.size:
        lo, hi = float(pos.min()), float(max(pos.max(), pos.min() * 1.0001))
        edges = np.geomspace(lo, hi, bins + 1)
        counts, _ = np.histogram(np.clip(v, lo, hi), bins=edges)
        out["histogram"] = {"edges": edges.tolist(), "counts": counts.tolist()}
    return out
