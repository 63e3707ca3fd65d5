"""Load published stores into device-resident tensors for training (no DataLoader on the hot path).

HSI (``docs/format.md``): modalities are packed to ``x [M, N, D_max]`` float32 with NaN → 0
and zero padding, ``mask [M, N]`` bool (the store's ``present``), ``labels [N]``,
``folds [N]``. Seismic (``docs/seismic.md``): ``x [N, 3, freq, time]`` float32 (5 channels
with the ``cross_spectrum`` polarity pair appended, ``polarity=True``) plus per-trace
targets, station/event coordinates, an integer event index, the sensor type and the split.
Both demo datasets fit in memory many times over; training indexes these tensors directly.
Synthetic datasets (and their store layout) for tests and benchmarks: :mod:`models.synthetic`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from pipeline.errors import DataSelectionError, TrainingConfigError
from pipeline.publishing.codes import strings

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "SPLIT_CODES",
    "HSIData",
    "SeismicData",
    "hsi_from_dataset",
    "load_hsi",
    "load_seismic",
    "seismic_from_dataset",
    "stratified_label_split",
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
    all_mods = [str(m) for m in ds.attrs.get("modalities", strings(ds, "modality").tolist())]
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


def stratified_label_split(
    labels: np.ndarray, fraction: float = 1.0, seed: int = 0, *, per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``labels``) kept labelled and left unlabelled, stratified by class, seeded.

    Per class ``round(fraction · n_c)`` samples stay labelled (at least one when the class has
    any samples and ``fraction > 0``), or ``min(per_class, n_c)`` with a budget by count; the
    rest are the unlabelled pool. Each class's samples are ranked by one seeded permutation
    (``SeedSequence([seed, 1])``) and the first ``k`` kept, so the subset depends only on
    (seed, budget) and smaller budgets are nested in larger ones. Both index arrays are
    sorted; together they are exactly ``0 … len(labels) − 1``. The one labelled-subset draw of
    the product: the trainers (HSI per class, seismic per training event with one "class")
    and :class:`pipeline.publishing.torch_data.HSISampleDataset` all use it (numpy only).
    """
    if not 0.0 < fraction <= 1.0:
        raise DataSelectionError(
            f"label_fraction must lie in (0, 1], got {fraction}", fix="give a label fraction in (0, 1]"
        )
    if per_class is not None and per_class < 1:
        raise DataSelectionError(f"label budget must be >= 1, got {per_class}", fix="give a count >= 1")
    labels = np.asarray(labels)
    if fraction == 1.0 and per_class is None:
        return np.arange(labels.size), np.zeros(0, np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    keep: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(per_class, idx.size) if per_class is not None else max(1, round(fraction * idx.size))
        keep.append(rng.permutation(idx)[:k])
    kept = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(labels.size), kept)
    return kept.astype(np.int64), rest.astype(np.int64)


@dataclass(frozen=True)
class SeismicData:
    """A seismic spectrogram store as tensors (see module docstring)."""

    x: Tensor  # [N, 3 or 5, F, T] float32 (standardised by :meth:`standardise`)
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


def seismic_from_dataset(
    ds: xr.Dataset, max_traces: int | None = None, *, polarity: bool = False
) -> SeismicData:
    """Convert an (open) seismic store dataset into :class:`SeismicData` on the CPU.

    ``polarity``: append the store's ``cross_spectrum`` (ZN, ZE) to the 3 log-power channels.
    """
    if max_traces is not None:
        ds = ds.isel(trace=slice(0, max_traces))
    x = np.asarray(ds["spectrogram"].values, dtype=np.float32)
    if polarity:
        if "cross_spectrum" not in ds:
            raise TrainingConfigError(
                "the store has no `cross_spectrum` (polarity channels)",
                field="inputs",
                fix="re-curate with `emin curate seismic --cross-spectra` (cross_spectra: true), "
                "or train with inputs=power",
            )
        x = np.concatenate([x, np.asarray(ds["cross_spectrum"].values, dtype=np.float32)], axis=1)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    uniq, inv = np.unique(strings(ds, "event_id"), return_inverse=True)
    sensors = strings(ds, "sensor_type").tolist()
    split = np.array([SPLIT_CODES.get(s, 0) for s in strings(ds, "split").tolist()], np.int64)

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
    path: str | Path,
    device: torch.device | str = "cpu",
    max_traces: int | None = None,
    *,
    polarity: bool = False,
) -> SeismicData:
    """Read a published seismic store straight into tensors on ``device`` (see :func:`seismic_from_dataset`)."""
    import xarray as xr

    with xr.open_zarr(str(path)) as ds:
        data = seismic_from_dataset(ds, max_traces, polarity=polarity)
    return data.to(device)
