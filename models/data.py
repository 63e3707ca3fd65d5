"""Load published stores into device-resident tensors for training (no DataLoader on the hot path).

HSI (``docs/format.md``): modalities are packed to ``x [M, N, D_max]`` float32 with NaN → 0
and zero padding, ``mask [M, N]`` bool (the store's ``present``), ``labels [N]``,
``folds [N]``. Seismic (``docs/seismic.md``): ``x [N, 3, freq, time]`` float32 plus per-trace
targets, station/event coordinates, an integer event index, the sensor type and the split.
Both demo datasets fit in memory many times over; training indexes these tensors directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from models.geo import bearing_deg, haversine_km
from pipeline.errors import DataSelectionError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "SPLIT_CODES",
    "HSIData",
    "SeismicData",
    "hsi_from_dataset",
    "hsi_to_dataset",
    "load_hsi",
    "load_seismic",
    "seismic_from_dataset",
    "seismic_to_dataset",
    "stratified_label_split",
    "synthetic_hsi",
    "synthetic_seismic",
]

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def _to(obj: Any, device: torch.device | str) -> Any:
    """Copy of a tensor dataclass with every tensor field moved to ``device``."""
    moved = {
        f.name: getattr(obj, f.name).to(device)
        for f in fields(obj)
        if isinstance(getattr(obj, f.name), Tensor)
    }
    return replace(obj, **moved)


@dataclass(frozen=True)
class HSIData:
    """An HSI sample dataset as tensors (see module docstring)."""

    x: Tensor  # [M, N, D_max] float32, 0 where absent or padded
    mask: Tensor  # [M, N] bool
    labels: Tensor  # [N] int64
    folds: Tensor  # [N] int64
    sample_id: Tensor  # [N] int64
    modalities: list[str]
    in_dims: list[int]
    class_names: list[str]
    sensor_types: dict[str, str]

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> HSIData:
        """Same data on ``device``."""
        out: HSIData = _to(self, device)
        return out

    def band_stats(self, select: Tensor) -> tuple[Tensor, Tensor]:
        """Per-modality, per-band mean/std ``[M, D_max]`` over the present selected samples."""
        x = self.x[:, select].double()
        m = self.mask[:, select].unsqueeze(-1)
        n = m.sum(dim=1).clamp(min=1).double()
        mean = torch.where(m, x, 0.0).sum(dim=1) / n
        var = (torch.where(m, x - mean.unsqueeze(1), 0.0) ** 2).sum(dim=1) / n
        return mean.float(), var.sqrt().clamp(min=1e-6).float()

    def standardise(self, mean: Tensor, std: Tensor) -> HSIData:
        """``(x − mean) / std`` per modality and band on present entries; absent/padded stay 0."""
        x = (self.x - mean.to(self.x).unsqueeze(1)) / std.to(self.x).unsqueeze(1)
        return replace(
            self, x=torch.where(self.mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
        )


def hsi_from_dataset(ds: xr.Dataset, modalities: Sequence[str] | None = None) -> HSIData:
    """Pack an (open) HSI store dataset into :class:`HSIData` on the CPU."""
    all_mods = [str(m) for m in ds.attrs.get("modalities", [str(v) for v in ds["modality"].values])]
    mods = list(modalities) if modalities is not None else all_mods
    missing = [m for m in mods if m not in all_mods]
    if missing:
        raise DataSelectionError(
            f"modalities {missing} not in the store ({all_mods})", fix="pick stored modalities"
        )
    present = np.asarray(ds["present"].values, dtype=bool)  # [N, M_all]
    n = present.shape[0]
    dims = [int(ds[m].shape[1]) for m in mods]
    d_max = max(dims)
    x = np.zeros((len(mods), n, d_max), np.float32)
    mask = np.zeros((len(mods), n), bool)
    for i, m in enumerate(mods):
        arr = np.asarray(ds[m].values, dtype=np.float32)
        x[i, :, : dims[i]] = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        mask[i] = present[:, all_mods.index(m)]
    x[~mask] = 0.0
    class_names = [str(c) for c in ds.attrs.get("class_names", [])]
    labels = np.asarray(ds["label"].values).astype(np.int64)
    if not class_names:
        class_names = [str(i) for i in range(int(labels.max()) + 1)]
    sensors = dict(ds.attrs.get("sensor_types", {}))
    return HSIData(
        x=torch.from_numpy(x),
        mask=torch.from_numpy(mask),
        labels=torch.from_numpy(labels),
        folds=torch.from_numpy(np.asarray(ds["fold"].values).astype(np.int64)),
        sample_id=torch.from_numpy(np.asarray(ds["sample_id"].values).astype(np.int64)),
        modalities=mods,
        in_dims=dims,
        class_names=class_names,
        sensor_types={m: str(sensors.get(m, "")) for m in mods},
    )


def load_hsi(
    path: str | Path, device: torch.device | str = "cpu", modalities: Sequence[str] | None = None
) -> HSIData:
    """Read a published HSI store (``xarray.open_zarr``) straight into tensors on ``device``."""
    import xarray as xr

    with xr.open_zarr(str(path)) as ds:
        data = hsi_from_dataset(ds.load(), modalities)
    return data.to(device)


def stratified_label_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``labels``) kept labelled and left unlabelled, stratified by class, seeded.

    Per class ``round(fraction · n_c)`` samples stay labelled (at least one when the class has
    any samples and ``fraction > 0``); the rest are the unlabelled pool. Both index arrays are
    sorted; together they are exactly ``0 … len(labels) − 1``. The one labelled-subset draw of
    the product: the trainers and :class:`pipeline.publishing.torch_data.HSISampleDataset`
    both use it, so the same seed and fraction label the same samples (numpy only).
    """
    if not 0.0 < fraction <= 1.0:
        raise DataSelectionError(
            f"label_fraction must lie in (0, 1], got {fraction}", fix="give a label fraction in (0, 1]"
        )
    labels = np.asarray(labels)
    if fraction == 1.0:
        return np.arange(labels.size), np.zeros(0, np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    keep: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, round(fraction * idx.size))
        keep.append(rng.permutation(idx)[:k])
    kept = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(labels.size), kept)
    return kept.astype(np.int64), rest.astype(np.int64)


@dataclass(frozen=True)
class SeismicData:
    """A seismic spectrogram store as tensors (see module docstring)."""

    x: Tensor  # [N, 3, F, T] float32 (standardised by :meth:`standardise`)
    distance_km: Tensor  # [N] float32
    sin_baz: Tensor  # [N]
    cos_baz: Tensor  # [N]
    baz_deg: Tensor  # [N]
    station_lat: Tensor  # [N] float64
    station_lon: Tensor
    event_lat: Tensor
    event_lon: Tensor
    event_index: Tensor  # [N] int64, index into event_ids
    is_3c: Tensor  # [N] bool
    split: Tensor  # [N] int64, SPLIT_CODES
    event_ids: list[str]
    sensor_type: list[str]

    @property
    def n(self) -> int:
        """Number of traces."""
        return int(self.distance_km.shape[0])

    def to(self, device: torch.device | str) -> SeismicData:
        """Same data on ``device``."""
        out: SeismicData = _to(self, device)
        return out

    def standardise(self, mean: Tensor, std: Tensor) -> SeismicData:
        """Per-channel ``(x − mean) / std`` on non-zero entries (1C N/E stay exactly 0)."""
        m = mean.to(self.x).view(1, -1, 1, 1)
        s = std.to(self.x).view(1, -1, 1, 1)
        x = torch.where(
            self.x != 0, (self.x - m) / s, torch.zeros((), dtype=self.x.dtype, device=self.x.device)
        )
        return replace(self, x=x)

    def channel_stats(self, select: Tensor) -> tuple[Tensor, Tensor]:
        """Per-channel mean/std over the non-zero entries of the selected traces."""
        x = self.x[select]
        nz = x != 0
        cnt = nz.sum(dim=(0, 2, 3)).clamp(min=1).double()
        xs = torch.where(nz, x, torch.zeros((), dtype=x.dtype, device=x.device)).double()
        mean = xs.sum(dim=(0, 2, 3)) / cnt
        var = (torch.where(nz, xs - mean.view(1, -1, 1, 1), torch.zeros_like(xs)) ** 2).sum(
            dim=(0, 2, 3)
        ) / cnt
        return mean.float(), var.sqrt().clamp(min=1e-6).float()


def _strs(values: Any) -> list[str]:
    return [str(v) for v in np.asarray(values).tolist()]


def seismic_from_dataset(ds: xr.Dataset, max_traces: int | None = None) -> SeismicData:
    """Convert an (open) seismic store dataset into :class:`SeismicData` on the CPU."""
    if max_traces is not None:
        ds = ds.isel(trace=slice(0, max_traces))
    x = np.asarray(ds["spectrogram"].values, dtype=np.float32)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    events = _strs(ds["event_id"].values)
    uniq, inv = np.unique(np.asarray(events), return_inverse=True)
    sensors = _strs(ds["sensor_type"].values)
    split = np.array([SPLIT_CODES.get(s, 0) for s in _strs(ds["split"].values)], np.int64)

    def f32(name: str) -> Tensor:
        return torch.from_numpy(np.asarray(ds[name].values, dtype=np.float32))

    def f64(name: str) -> Tensor:
        return torch.from_numpy(np.asarray(ds[name].values, dtype=np.float64))

    return SeismicData(
        x=torch.from_numpy(x),
        distance_km=f32("distance_km"),
        sin_baz=f32("sin_baz"),
        cos_baz=f32("cos_baz"),
        baz_deg=f32("back_azimuth_deg"),
        station_lat=f64("station_latitude"),
        station_lon=f64("station_longitude"),
        event_lat=f64("event_latitude"),
        event_lon=f64("event_longitude"),
        event_index=torch.from_numpy(inv.astype(np.int64)),
        is_3c=torch.tensor([s.upper() == "3C" for s in sensors], dtype=torch.bool),
        split=torch.from_numpy(split),
        event_ids=[str(u) for u in uniq.tolist()],
        sensor_type=sensors,
    )


def load_seismic(
    path: str | Path, device: torch.device | str = "cpu", max_traces: int | None = None
) -> SeismicData:
    """Read a published seismic store straight into tensors on ``device``."""
    import xarray as xr

    with xr.open_zarr(str(path)) as ds:
        data = seismic_from_dataset(ds, max_traces)
    return data.to(device)


# --------------------------------------------------------------------------------------------
# Synthetic datasets (tests, benchmarks): torch + numpy only
# --------------------------------------------------------------------------------------------


def synthetic_hsi(
    n: int = 600,
    in_dims: Sequence[int] = (12, 9, 15),
    n_classes: int = 4,
    *,
    seed: int = 0,
    p_present: float = 0.7,
    separation: float = 1.0,
    n_folds: int = 5,
    modalities: Sequence[str] | None = None,
) -> HSIData:
    """An easy HSI-like problem: class-dependent spectra per modality plus noise, random absences.

    Every sample has at least one present modality; folds are stratified round-robin per class.
    ``separation`` scales the distance between class means (noise has unit scale).
    """
    rng = np.random.default_rng(seed)
    m = len(in_dims)
    d_max = max(in_dims)
    labels = rng.integers(0, n_classes, n)
    mask = rng.random((m, n)) < p_present
    mask[rng.integers(0, m, n), np.arange(n)] = True
    x = np.zeros((m, n, d_max), np.float32)
    for i, d in enumerate(in_dims):
        centres = rng.normal(0.0, separation, (n_classes, d))
        x[i, :, :d] = centres[labels] + rng.normal(0.0, 1.0, (n, d))
    x[~mask] = 0.0
    folds = np.zeros(n, np.int64)
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        folds[idx] = np.arange(idx.size) % n_folds + 1
    names = (
        list(modalities)
        if modalities is not None
        else [f"{'VNIR' if i < m // 2 else 'SWIR'}{i + 1}" for i in range(m)]
    )
    return HSIData(
        x=torch.from_numpy(x),
        mask=torch.from_numpy(mask),
        labels=torch.from_numpy(labels.astype(np.int64)),
        folds=torch.from_numpy(folds),
        sample_id=torch.arange(n),
        modalities=names,
        in_dims=[int(d) for d in in_dims],
        class_names=[f"class{c}" for c in range(n_classes)],
        sensor_types={nm: nm.rstrip("0123456789") for nm in names},
    )


def _str_array(values: Sequence[str]) -> np.ndarray:
    """Variable-length strings (numpy StringDType), as the published stores hold them."""
    from numpy.dtypes import StringDType

    return np.array(list(values), dtype=StringDType())


def hsi_to_dataset(data: HSIData) -> xr.Dataset:
    """An xarray Dataset in the published HSI layout (``docs/format.md``) from :class:`HSIData`."""
    import xarray as xr

    x = data.x.cpu().numpy()
    mask = data.mask.cpu().numpy()
    dvars: dict[str, Any] = {"present": (("sample", "modality"), mask.T.copy())}
    for i, (name, d) in enumerate(zip(data.modalities, data.in_dims, strict=True)):
        arr = x[i, :, :d].copy()
        arr[~mask[i]] = np.nan
        dvars[name] = (("sample", f"band_{name}"), arr)
    labels = data.labels.cpu().numpy()
    coords = {
        "sample_id": ("sample", data.sample_id.cpu().numpy()),
        "label": ("sample", labels.astype(np.int16)),
        "label_name": ("sample", _str_array([data.class_names[k] for k in labels])),
        "fold": ("sample", data.folds.cpu().numpy().astype(np.int8)),
        "modality": ("modality", _str_array(data.modalities)),
    }
    attrs = {
        "emin_kind": "hsi_samples",
        "schema_version": "1.0",
        "class_names": list(data.class_names),
        "modalities": list(data.modalities),
        "sensor_types": dict(data.sensor_types),
    }
    return xr.Dataset(dvars, coords=coords, attrs=attrs)


def synthetic_seismic(
    n_events: int = 40,
    stations_per_event: int = 6,
    *,
    n_stations: int = 30,
    n_freq: int = 8,
    n_time: int = 16,
    seed: int = 0,
    p_3c: float = 0.4,
    noise: float = 0.1,
) -> SeismicData:
    """A learnable seismic-like set: the S-onset time encodes distance, 3C N/E amplitudes encode BAZ.

    Stations and events lie around (40 N, 112 W); each event is seen by ``stations_per_event``
    random stations. 1C traces have N/E exactly 0. Splits by event: 70/15/15 % train/val/test.
    """
    rng = np.random.default_rng(seed)
    st_lat = 40.0 + rng.uniform(-1.0, 1.0, n_stations)
    st_lon = -112.0 + rng.uniform(-1.2, 1.2, n_stations)
    st_3c = rng.random(n_stations) < p_3c
    ev_lat = 40.0 + rng.uniform(-1.0, 1.0, n_events)
    ev_lon = -112.0 + rng.uniform(-1.2, 1.2, n_events)
    k = min(stations_per_event, n_stations)
    ev_idx = np.repeat(np.arange(n_events), k)
    st_idx = np.concatenate([rng.choice(n_stations, k, replace=False) for _ in range(n_events)])
    slat, slon, elat, elon = st_lat[st_idx], st_lon[st_idx], ev_lat[ev_idx], ev_lon[ev_idx]
    pts = [torch.from_numpy(a) for a in (slat, slon, elat, elon)]
    dist = haversine_km(pts[0], pts[1], pts[2], pts[3]).numpy()
    baz = bearing_deg(pts[0], pts[1], pts[2], pts[3]).numpy()
    n = dist.size
    t = np.arange(n_time)[None, :]
    onset = 1.0 + (n_time - 3.0) * np.clip(dist / 300.0, 0, 1)[:, None]
    bump = np.exp(-0.5 * ((t - onset) / 1.0) ** 2)  # [n, T]
    fshape = np.linspace(1.0, 0.3, n_freq)[None, :, None]
    x = np.zeros((n, 3, n_freq, n_time), np.float32)
    x[:, 0] = 1.0 + bump[:, None, :] * fshape
    is3c = st_3c[st_idx]
    rad = np.radians(baz)
    x[:, 1] = 1.0 + (np.cos(rad)[:, None, None] * bump[:, None, :]) * fshape
    x[:, 2] = 1.0 + (np.sin(rad)[:, None, None] * bump[:, None, :]) * fshape
    x += rng.normal(0.0, noise, x.shape).astype(np.float32)
    x[~is3c, 1:] = 0.0
    u = rng.random(n_events)
    ev_split = np.where(u < 0.7, 0, np.where(u < 0.85, 1, 2))
    ev_split[:3] = [0, 1, 2]
    sensor = ["3C" if b else "1C" for b in is3c]
    return SeismicData(
        x=torch.from_numpy(x),
        distance_km=torch.from_numpy(dist.astype(np.float32)),
        sin_baz=torch.from_numpy(np.sin(rad).astype(np.float32)),
        cos_baz=torch.from_numpy(np.cos(rad).astype(np.float32)),
        baz_deg=torch.from_numpy(baz.astype(np.float32)),
        station_lat=torch.from_numpy(slat),
        station_lon=torch.from_numpy(slon),
        event_lat=torch.from_numpy(elat),
        event_lon=torch.from_numpy(elon),
        event_index=torch.from_numpy(ev_idx.astype(np.int64)),
        is_3c=torch.from_numpy(is3c),
        split=torch.from_numpy(ev_split[ev_idx].astype(np.int64)),
        event_ids=[f"ev{i:04d}" for i in range(n_events)],
        sensor_type=sensor,
    )


def seismic_to_dataset(data: SeismicData) -> xr.Dataset:
    """An xarray Dataset in the seismic store layout (``docs/seismic.md``) from :class:`SeismicData`."""
    import xarray as xr

    names = {v: k for k, v in SPLIT_CODES.items()}
    n, _, nf, nt = data.x.shape
    coords: dict[str, Any] = {
        "channel": ("channel", _str_array(["Z", "N", "E"])),
        "freq": ("freq", np.arange(nf, dtype=np.float32)),
        "time": ("time", np.arange(nt, dtype=np.float32)),
        "trace_id": ("trace", _str_array([f"t{i}" for i in range(n)])),
        "event_id": ("trace", _str_array([data.event_ids[i] for i in data.event_index.tolist()])),
        "sensor_type": ("trace", _str_array(data.sensor_type)),
        "split": ("trace", _str_array([names[int(s)] for s in data.split.tolist()])),
        "distance_km": ("trace", data.distance_km.cpu().numpy().astype(np.float64)),
        "back_azimuth_deg": ("trace", data.baz_deg.cpu().numpy().astype(np.float64)),
        "sin_baz": ("trace", data.sin_baz.cpu().numpy().astype(np.float64)),
        "cos_baz": ("trace", data.cos_baz.cpu().numpy().astype(np.float64)),
        "station_latitude": ("trace", data.station_lat.cpu().numpy()),
        "station_longitude": ("trace", data.station_lon.cpu().numpy()),
        "event_latitude": ("trace", data.event_lat.cpu().numpy()),
        "event_longitude": ("trace", data.event_lon.cpu().numpy()),
    }
    spec = ("trace", "channel", "freq", "time")
    attrs = {"emin_kind": "seismic_spectrograms", "schema_version": "1.0"}
    return xr.Dataset({"spectrogram": (spec, data.x.cpu().numpy())}, coords=coords, attrs=attrs)
