"""Synthetic HSI and seismic datasets for tests and benchmarks (torch + numpy only).

:func:`synthetic_hsi` / :func:`synthetic_seismic` build learnable :class:`models.data.HSIData` /
:class:`models.data.SeismicData`; :func:`hsi_to_dataset` / :func:`seismic_to_dataset` write
them in the published store layouts (``docs/format.md``, ``docs/seismic.md``), xarray imported
only there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.data import SPLIT_CODES, HSIData, SeismicData
from models.geo import bearing_deg, haversine_km
from pipeline.publishing.codes import FORMAT_VERSIONS, category_attrs, coded

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["hsi_to_dataset", "seismic_to_dataset", "synthetic_hsi", "synthetic_seismic"]


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
    """Variable-length strings (numpy StringDType), as the published stores hold ids."""
    from numpy.dtypes import StringDType

    return np.array(list(values), dtype=StringDType())


def _coded(
    dim: str, values: Sequence[str], categories: Sequence[str] = ()
) -> tuple[str, np.ndarray, dict[str, Any]]:
    """A categorical column as the published stores hold it: integer codes with their names in attrs."""
    codes, attrs = coded(values, categories)
    return dim, codes, attrs


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
        "label": ("sample", labels.astype(np.int16), category_attrs(data.class_names)),
        "fold": ("sample", data.folds.cpu().numpy().astype(np.int8)),
        "modality": _coded("modality", data.modalities, data.modalities),
    }
    attrs = {
        "emin_kind": "hsi_samples",
        "schema_version": FORMAT_VERSIONS[-1],
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
    polarity: bool = False,
) -> SeismicData:
    """A learnable seismic-like set: the S-onset time encodes distance, 3C N/E amplitudes encode BAZ.

    Stations and events lie around (40 N, 112 W); each event is seen by ``stations_per_event``
    random stations. 1C traces have N/E exactly 0. Splits by event: 70/15/15 % train/val/test.
    ``polarity``: two more channels like the store's ``cross_spectrum`` (ZN, ZE along the
    event→station direction at the onset; zero for 1C), so ``x`` has 5 channels.
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
    if polarity:
        pair = -0.3 * np.stack([np.cos(rad), np.sin(rad)], axis=1)[:, :, None, None] * bump[:, None, None, :]
        x = np.concatenate(
            [x, np.broadcast_to(pair * fshape, (n, 2, n_freq, n_time)).astype(np.float32)], axis=1
        )
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
        "channel": _coded("channel", ["Z", "N", "E"], ["Z", "N", "E"]),
        "freq": ("freq", np.arange(nf, dtype=np.float32)),
        "time": ("time", np.arange(nt, dtype=np.float32)),
        "trace_id": ("trace", _str_array([f"t{i}" for i in range(n)])),
        "event_id": ("trace", _str_array([data.event_ids[i] for i in data.event_index.tolist()])),
        "sensor_type": _coded("trace", data.sensor_type, ["3C", "1C"]),
        "split": _coded("trace", [names[int(s)] for s in data.split.tolist()], list(SPLIT_CODES)),
        "distance_km": ("trace", data.distance_km.cpu().numpy().astype(np.float64)),
        "back_azimuth_deg": ("trace", data.baz_deg.cpu().numpy().astype(np.float64)),
        "sin_baz": ("trace", data.sin_baz.cpu().numpy().astype(np.float64)),
        "cos_baz": ("trace", data.cos_baz.cpu().numpy().astype(np.float64)),
        "station_latitude": ("trace", data.station_lat.cpu().numpy()),
        "station_longitude": ("trace", data.station_lon.cpu().numpy()),
        "event_latitude": ("trace", data.event_lat.cpu().numpy()),
        "event_longitude": ("trace", data.event_lon.cpu().numpy()),
    }
    x = data.x.cpu().numpy()
    variables: dict[str, Any] = {"spectrogram": (("trace", "channel", "freq", "time"), x[:, :3])}
    if x.shape[1] == 5:  # the polarity pair of ``synthetic_seismic(polarity=True)``
        coords["pair"] = ("pair", np.arange(2, dtype=np.int8), category_attrs(["ZN", "ZE"]))
        variables["cross_spectrum"] = (("trace", "pair", "freq", "time"), x[:, 3:])
    attrs = {"emin_kind": "seismic_spectrograms", "schema_version": FORMAT_VERSIONS[-1]}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
