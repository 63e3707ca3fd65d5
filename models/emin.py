"""Entropy-minimisation (EMIN) losses (report section 2, 4.5).

Under the report's Gaussian assumption, the entropy of the cross-modality
prediction distribution is monotonic in the maximum-likelihood variance
``(1/n) Σ (α_i − ᾱ)²``, so every loss here is a (population) variance or a
mean squared deviation from a centre.

Conventions shared by all losses:

* ``preds`` is ``[M, B, D]`` (modality, sample, output dimension); a
  ``[M, B]`` tensor is read as ``D = 1``.
* ``mask`` is ``[M, B]`` bool, True where modality ``m`` observed sample
  ``b``. Masked slots are **never read**: they are replaced with
  :func:`torch.where` before any arithmetic, so NaN/inf in them reach
  neither the value nor the gradient (a multiplication by the mask would
  give ``0 · NaN = NaN``).
* ``reduction="mean"`` averages over the samples (or events) where the loss
  is defined and returns an exact 0 that is still attached to the graph
  when there are none; ``reduction="none"`` returns one value per sample
  (or event), 0 where undefined.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from models.geo import REPORT_EARTH_RADIUS_KM, location_from_prediction

Reduction = Literal["mean", "none"]

__all__ = [
    "EventCentres",
    "emin_hsi",
    "event_centres",
    "gaussian_emin",
    "gaussian_entropy",
    "masked_ce",
    "seismic_emin",
    "seismic_emin_loss",
    "student_teacher_emin",
]


def _as_mbd(preds: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``preds`` as ``[M, B, D]`` and ``mask`` as bool ``[M, B]`` after a shape check."""
    if preds.dim() == 2:
        preds = preds.unsqueeze(-1)
    if preds.dim() != 3:
        raise ValueError(f"preds must be [M, B, D] or [M, B], got shape {tuple(preds.shape)}")
    mask = mask.to(device=preds.device, dtype=torch.bool)
    if mask.shape != preds.shape[:2]:
        shape = (tuple(mask.shape), tuple(preds.shape[:2]))
        raise ValueError(f"mask shape {shape[0]} does not match preds [M, B] {shape[1]}")
    return preds, mask


def _reduce(per_item: Tensor, valid: Tensor, reduction: Reduction) -> Tensor:
    """Zero the undefined items and average the defined ones (0, graph intact, if none)."""
    per_item = torch.where(valid, per_item, torch.zeros_like(per_item))
    if reduction == "none":
        return per_item
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    n_valid = valid.sum().clamp(min=1).to(per_item.dtype)
    return per_item.sum() / n_valid


def gaussian_emin(preds: Tensor, mask: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Gaussian EMIN: population variance over the present modalities (report section 2.1–2.2).

    Per sample and output dimension the variance ``(1/n) Σ_m (x_m − x̄)²`` is
    taken over the ``n`` present modalities (divide by ``n``, the MLE), then
    averaged over ``D``. Samples with fewer than two present modalities
    carry no disagreement information and are excluded (value 0).

    Returns a scalar (``"mean"``) or the per-sample values ``[B]`` (``"none"``).
    """
    preds, mask = _as_mbd(preds, mask)
    m3 = mask.unsqueeze(-1)
    zero = torch.zeros((), dtype=preds.dtype, device=preds.device)
    x = torch.where(m3, preds, zero)
    n = mask.sum(dim=0)  # [B]
    n_f = n.clamp(min=1).to(preds.dtype).unsqueeze(-1)  # [B, 1]
    mean = x.sum(dim=0) / n_f  # [B, D]
    dev = torch.where(m3, x - mean, zero)
    var = (dev * dev).sum(dim=0) / n_f  # [B, D]
    return _reduce(var.mean(dim=-1), n >= 2, reduction)


def gaussian_entropy(var: Tensor, eps: float = 1e-12) -> Tensor:
    """Differential entropy ``½·log(2πe·σ²)`` of a Gaussian with variance ``var`` (public API, for reporting).

    Not used by the trainers (EMIN minimises the variance, which is monotonic in this entropy);
    kept for analyses that report entropies rather than variances.

    ``var`` is clamped at ``eps`` so a zero variance gives a finite (very
    negative) entropy instead of ``-inf``.
    """
    return 0.5 * torch.log((2.0 * math.pi * math.e) * var.clamp(min=eps))


def student_teacher_emin(
    preds: Tensor, mask: Tensor, teacher: Tensor, *, reduction: Reduction = "mean"
) -> Tensor:
    """Student–teacher EMIN (report section 2.3, 3.7).

    The centre is the mean of the present *teacher* modalities, detached so
    no EMIN gradient reaches the teachers; the value is the mean squared
    deviation of the present *student* modalities from that centre, averaged
    over ``D`` and the present students. Only samples with at least one
    present teacher and one present student count.

    ``teacher`` is a bool ``[M]`` vector (True = teacher modality).
    """
    preds, mask = _as_mbd(preds, mask)
    teacher = teacher.to(device=preds.device, dtype=torch.bool)
    if teacher.shape != preds.shape[:1]:
        raise ValueError(f"teacher must be a bool [M] vector, got shape {tuple(teacher.shape)}")
    t_mask = mask & teacher.unsqueeze(1)
    s_mask = mask & ~teacher.unsqueeze(1)
    zero = torch.zeros((), dtype=preds.dtype, device=preds.device)
    n_t = t_mask.sum(dim=0)
    n_s = s_mask.sum(dim=0)
    x_t = torch.where(t_mask.unsqueeze(-1), preds, zero).detach()
    centre = x_t.sum(dim=0) / n_t.clamp(min=1).to(preds.dtype).unsqueeze(-1)  # [B, D]
    s3 = s_mask.unsqueeze(-1)
    x_s = torch.where(s3, preds, zero)
    dev = torch.where(s3, x_s - centre, zero)
    msd = (dev * dev).sum(dim=0) / n_s.clamp(min=1).to(preds.dtype).unsqueeze(-1)
    return _reduce(msd.mean(dim=-1), (n_t >= 1) & (n_s >= 1), reduction)


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


# --------------------------------------------------------------------------------------------
# Seismic EMIN: per-event centres of predicted locations
# --------------------------------------------------------------------------------------------


def _wrap_pi(x: Tensor) -> Tensor:
    """Wrap angles (radians) into ``[-π, π)``; gradient 1 everywhere."""
    return torch.remainder(x + math.pi, 2.0 * math.pi) - math.pi


class _Groups(NamedTuple):
    inverse: Tensor  # [B] event index of each trace, 0..E-1 in sorted-id order
    position: Tensor  # [B] slot of each trace inside its event's padded row
    first: Tensor  # [E] index of the first trace of each event
    n_events: int
    max_size: int


def _group(event_ids: Tensor) -> _Groups:
    """Sort traces by event and give each its (event, slot) cell in a padded ``[E, S]`` table."""
    if event_ids.dim() != 1:
        raise ValueError(f"event_ids must be 1-D [B], got shape {tuple(event_ids.shape)}")
    _, inverse = torch.unique(event_ids, return_inverse=True)
    n_events = int(inverse.max().item()) + 1 if inverse.numel() else 0
    counts = torch.bincount(inverse, minlength=n_events)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.empty_like(inverse)
    position[order] = torch.arange(inverse.numel(), device=inverse.device) - starts[inverse[order]]
    first = order[starts]
    max_size = int(counts.max().item()) if n_events else 0
    return _Groups(inverse, position, first, n_events, max_size)


def _segment_median(values: Tensor, select: Tensor, g: _Groups) -> Tensor:
    """Median of ``values[select]`` within each event (mean of the two middles for even counts).

    Vectorised: the selected values are scattered into a NaN-padded
    ``[E, S]`` table, sorted along rows (NaN sorts last) and the middle
    entries gathered. Events with no selected trace give NaN.
    """
    nan = torch.full((), float("nan"), dtype=values.dtype, device=values.device)
    table = torch.full((g.n_events, g.max_size), float("nan"), dtype=values.dtype, device=values.device)
    table = table.index_put((g.inverse, g.position), torch.where(select, values, nan))
    ordered, _ = torch.sort(table, dim=1)
    k = torch.zeros(g.n_events, dtype=torch.long, device=values.device)
    k = k.scatter_add(0, g.inverse, select.long())
    lo = torch.div(k - 1, 2, rounding_mode="floor").clamp(min=0)
    hi = torch.div(k, 2, rounding_mode="floor").clamp(max=max(g.max_size - 1, 0))
    lo_v = ordered.gather(1, lo.unsqueeze(1)).squeeze(1)
    hi_v = ordered.gather(1, hi.unsqueeze(1)).squeeze(1)
    return torch.where(k > 0, 0.5 * (lo_v + hi_v), nan)


def _segment_mean(values: Tensor, select: Tensor, g: _Groups) -> Tensor:
    """Mean of ``values[select]`` within each event (NaN where none selected)."""
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    s = torch.zeros(g.n_events, dtype=values.dtype, device=values.device)
    s = s.scatter_add(0, g.inverse, torch.where(select, values, zero))
    k = torch.zeros(g.n_events, dtype=values.dtype, device=values.device)
    k = k.scatter_add(0, g.inverse, select.to(values.dtype))
    return torch.where(k > 0, s / k.clamp(min=1), torch.full_like(s, float("nan")))


class EventCentres(NamedTuple):
    """Per-event centre of per-trace locations (see :func:`event_centres`)."""

    lat: Tensor  # [E] centre latitude (same unit as the input)
    lon: Tensor  # [E] centre longitude, wrapped to [-180, 180) deg or [-π, π) rad
    inverse: Tensor  # [B] event index (0..E-1, sorted by event id) of each trace
    n_members: Tensor  # [E] number of traces that entered each centre
    event_ids: Tensor  # [E] the sorted unique event ids


def event_centres(
    lat: Tensor,
    lon: Tensor,
    event_ids: Tensor,
    *,
    select: Tensor | None = None,
    centre: Literal["median", "mean"] = "median",
    degrees: bool = True,
) -> EventCentres:
    """Component-wise centre (median or mean) of per-trace locations, per event, vectorised.

    Longitudes are unwrapped relative to one reference trace of each event
    (its first trace) before the median/mean, so an event whose stations
    straddle ±180° gets a centre next to them, not on the far side of the
    globe (assumes one event's traces span less than 180° of longitude).
    ``select`` (bool ``[B]``) restricts which traces form the centre (e.g.
    teachers only); events with none selected get NaN centres and count 0.
    Events are indexed in ascending ``event_ids`` order.
    """
    if lat.shape != lon.shape or lat.shape != event_ids.shape or lat.dim() != 1:
        raise ValueError("lat, lon and event_ids must all be 1-D tensors of the same length [B]")
    event_ids = event_ids.to(lat.device)
    sel = (
        torch.ones_like(lat, dtype=torch.bool)
        if select is None
        else select.to(device=lat.device, dtype=torch.bool)
    )
    scale = math.pi / 180.0 if degrees else 1.0
    g = _group(event_ids)
    lat_r = lat * scale
    lon_r = lon * scale
    ref = lon_r.detach()[g.first]  # [E]
    rel = _wrap_pi(lon_r - ref[g.inverse])
    if centre not in ("median", "mean"):
        raise ValueError(f"centre must be 'median' or 'mean', got {centre!r}")
    seg = _segment_median if centre == "median" else _segment_mean
    c_lat = seg(lat_r, sel, g)
    c_lon = _wrap_pi(ref + seg(rel, sel, g))
    n_members = torch.zeros(g.n_events, dtype=torch.long, device=lat.device)
    n_members = n_members.scatter_add(0, g.inverse, sel.long())
    ids = torch.unique(event_ids)
    return EventCentres(c_lat / scale, c_lon / scale, g.inverse, n_members, ids)


def _safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(max(x, 0))`` with a zero (not infinite/NaN) gradient at 0."""
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x))


def seismic_emin(
    lat: Tensor,
    lon: Tensor,
    event_ids: Tensor,
    *,
    is_teacher: Tensor | None = None,
    degrees: bool = True,
    centre: Literal["median", "mean"] = "median",
    deviation: Literal["component", "great_circle"] = "component",
    reduction: Reduction = "mean",
) -> Tensor:
    """Seismic EMIN on per-trace predicted event locations (report section 4.5).

    ``lat``/``lon`` ``[B]`` are each trace's predicted event location (from
    :func:`models.geo.location_from_prediction`, i.e. Equations 2–3),
    ``event_ids`` ``[B]`` integer event keys. Pass ``event_id * M + model``
    as the key to get a separate variance per model *and* event.

    Per event the centre is the component-wise median (default, the report's
    stabilised centre) or mean over the traces, longitude ±180°-safe; the
    loss is the mean over the event's traces of the squared deviation from
    it, always measured in **radians** (inputs in degrees are converted when
    ``degrees=True``) so the scale matches the report's formulation:

    * ``deviation="component"``: ``½·(Δlat² + Δlon²)``, the mean over the
      ``D = 2`` outputs as in :func:`gaussian_emin` (with ``centre="mean"``
      this is exactly the per-event population variance);
    * ``deviation="great_circle"``: the squared central angle to the centre.

    Student–teacher (``is_teacher`` bool ``[B]``, e.g. triaxial traces teach
    vertical ones): the centre comes from the event's teacher traces only
    and is detached; the loss is taken over the student traces only.
    Without teachers the centre keeps its gradient (the variance objective).

    Defined events: ≥ 2 traces, or ≥ 1 teacher and ≥ 1 student. Returns a
    scalar mean over defined events, or ``[E]`` per-event values in
    ascending event-id order (0 where undefined) with ``reduction="none"``.
    """
    if deviation not in ("component", "great_circle"):
        raise ValueError(f"deviation must be 'component' or 'great_circle', got {deviation!r}")
    scale = math.pi / 180.0 if degrees else 1.0
    lat_r = lat * scale
    lon_r = lon * scale
    if is_teacher is None:
        c = event_centres(lat_r, lon_r, event_ids, centre=centre, degrees=False)
        members = torch.ones_like(lat_r, dtype=torch.bool)
        valid_event = c.n_members >= 2
        c_lat, c_lon = c.lat, c.lon
    else:
        teach = is_teacher.to(device=lat.device, dtype=torch.bool)
        c = event_centres(lat_r, lon_r, event_ids, select=teach, centre=centre, degrees=False)
        members = ~teach
        n_student = torch.zeros_like(c.n_members).scatter_add(0, c.inverse, members.long())
        valid_event = (c.n_members >= 1) & (n_student >= 1)
        c_lat, c_lon = c.lat.detach(), c.lon.detach()
    use = members & valid_event[c.inverse]
    zero = torch.zeros((), dtype=lat_r.dtype, device=lat_r.device)
    # Undefined events have NaN centres: select before any arithmetic that feeds the gradient.
    t_lat = torch.where(use, lat_r, zero)
    t_lon = torch.where(use, lon_r, zero)
    e_lat = torch.where(use, c_lat[c.inverse], zero)
    e_lon = torch.where(use, c_lon[c.inverse], zero)
    d_lat = t_lat - e_lat
    d_lon = _wrap_pi(t_lon - e_lon)
    if deviation == "component":
        sq = 0.5 * (d_lat * d_lat + d_lon * d_lon)
    else:
        s_lat = torch.sin(0.5 * d_lat)
        s_lon = torch.sin(0.5 * d_lon)
        h = s_lat * s_lat + torch.cos(t_lat) * torch.cos(e_lat) * s_lon * s_lon
        h = h.clamp(max=1.0 - 1e-12)
        angle = 2.0 * torch.asin(_safe_sqrt(h))
        sq = angle * angle
    sq = torch.where(use, sq, zero)
    total = torch.zeros(c.n_members.shape[0], dtype=lat_r.dtype, device=lat_r.device)
    total = total.scatter_add(0, c.inverse, sq)
    n_use = torch.zeros_like(c.n_members).scatter_add(0, c.inverse, use.long())
    per_event = total / n_use.clamp(min=1).to(lat_r.dtype)
    return _reduce(per_event, valid_event, reduction)


def seismic_emin_loss(
    out: Tensor,
    station_lat: Tensor,
    station_lon: Tensor,
    event_index: Tensor,
    *,
    distance_scale_km: float,
    is_teacher: Tensor | None = None,
    centre: Literal["median", "mean"] = "median",
) -> Tensor:
    """Seismic EMIN on the locations implied by ``out [B, 3]`` (scaled distance, sin, cos).

    :func:`seismic_emin` is in radians²; it is multiplied by ``(R / distance_scale_km)²`` so
    that it is in the same units as the scaled distance target.
    """
    o = out.double()
    lat, lon = location_from_prediction(
        station_lat, station_lon, o[:, 0] * distance_scale_km, o[:, 1], o[:, 2]
    )
    var = seismic_emin(lat, lon, event_index, is_teacher=is_teacher, centre=centre)
    return (var * (REPORT_EARTH_RADIUS_KM / distance_scale_km) ** 2).to(out.dtype)
