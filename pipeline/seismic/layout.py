"""The seismic store's on-disk layout: its empty skeleton, the encodings of its arrays, and the
writes of its per-trace coordinates and rejects table (docs/format.md is the written spec).

:mod:`pipeline.seismic.store` places and writes the traces into this layout; kept apart so the
layout can be read in one place.
"""

from __future__ import annotations

import asyncio
import shutil
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
import zarr.api.asynchronous
import zarr.core.sync
from numpy.dtypes import StringDType

from pipeline.errors import ContractViolation
from pipeline.io.waveforms import EVENT_COLUMNS, Reject
from pipeline.publishing.codes import category_attrs
from pipeline.publishing.contract import SEISMIC_CHANNELS, SEISMIC_CODED, SEISMIC_REJECT_REASON
from pipeline.publishing.zarr_io import ZARR_FORMAT, compressor, write_files
from pipeline.seismic.batch import segment_table
from pipeline.seismic.signal import CHANNELS, CROSS_PAIRS, CROSS_SPECTRUM_DEFINITION
from pipeline.seismic.windows import SeismicMetadata
from schemas.seismic import SeismicCurationParams

REJECT_COLUMNS = ("trace_id", "reason", "detail", "source_file")
#: Every coded column of the store (the rejects' reason as ``rejects/reason``): (categories, dtype) it starts with.
CODED_COLUMNS = {**SEISMIC_CODED, "rejects/reason": SEISMIC_REJECT_REASON}


def text_array(values: Iterable[Any]) -> np.ndarray:
    """Variable-length strings (numpy StringDType → zarr v3 string), so appends may be longer."""
    return np.array([str(v) for v in values], dtype=StringDType())


#: Chunk length (traces) of the per-trace coordinates of a new store (1-D, written once at commit).
COORD_CHUNK = 4096
#: How datetime coordinates are encoded in a new store (fixed, so appends keep it exact).
TIME_ENCODING = {
    "units": "microseconds since 1970-01-01",
    "calendar": "proleptic_gregorian",
    "dtype": "int64",
}


def skeleton(params: SeismicCurationParams) -> xr.Dataset:
    """The store with zero traces: every variable, coordinate and dim coordinate, nothing per trace."""
    p = params
    n_freq = p.nperseg // 2 + 1
    table = segment_table([], _EMPTY_META, p).assign(split=np.zeros(0, str))
    coords: dict[str, Any] = {
        "channel": ("channel", np.arange(len(CHANNELS), dtype=SEISMIC_CHANNELS[1]), category_attrs(CHANNELS)),
        "freq": (
            "freq",
            np.fft.rfftfreq(p.nperseg, 1 / p.sampling_rate_hz).astype(np.float32),
            {"units": "Hz"},
        ),
        "time": (
            "time",
            ((np.arange(p.n_frames) * p.nperseg + p.nperseg / 2) / p.sampling_rate_hz - p.pre_p_s).astype(
                np.float32
            ),
            {"units": "s", "long_name": "frame centre relative to P"},
        ),
    }
    for col in table.columns:
        v = np.zeros(0, CODED_COLUMNS[col][1]) if col in SEISMIC_CODED else table[col].to_numpy()
        coords[col] = ("trace", text_array(v) if v.dtype.kind in "OUT" else v)
    data: dict[str, Any] = {
        "spectrogram": (
            ("trace", "channel", "freq", "time"),
            np.zeros((0, 3, n_freq, p.n_frames), np.float32),
        )
    }
    if p.keep_waveforms:
        data["waveform"] = (
            ("trace", "channel", "sample"),
            np.zeros((0, 3, p.n_frames * p.nperseg), np.float32),
            {"description": "preprocessed ZNE window from P-pre_p_s (zeros for N/E of 1C sensors)"},
        )
    if p.cross_spectra:
        coords["pair"] = (
            "pair",
            np.arange(len(CROSS_PAIRS), dtype=SEISMIC_CHANNELS[1]),
            category_attrs(CROSS_PAIRS),
        )
        data["cross_spectrum"] = (
            ("trace", "pair", "freq", "time"),
            np.zeros((0, len(CROSS_PAIRS), n_freq, p.n_frames), np.float32),
            {"description": CROSS_SPECTRUM_DEFINITION},
        )
    return xr.Dataset(data, coords=coords)


def write_skeleton(path: Path, params: SeismicCurationParams) -> None:
    """Write the store with zero traces (:func:`skeleton`, as xarray encodes it) into the new folder ``path``."""
    ds = skeleton(params)
    path.mkdir(parents=True, exist_ok=True)
    write_through_memory(ds, path, encoding=encoding(ds, params.traces_per_chunk))


def write_through_memory(
    ds: xr.Dataset, path: Path, *, group: str | None = None, encoding: dict[str, dict[str, Any]] | None = None
) -> None:
    """Write ``ds`` as the Zarr group ``group`` (the root without) of the store at ``path``, replacing
    that group's folder, through memory (:func:`~pipeline.publishing.zarr_io.write_files`): the
    same bytes as ``ds.to_zarr(path, group=group, mode="w", consolidated=False)``. Only the
    group's own files are written (xarray also creates the root group in memory)."""
    files: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        ds.to_zarr(zarr.storage.MemoryStore(files), group=group, mode="w", zarr_format=ZARR_FORMAT,
                   consolidated=False, encoding=encoding or {})  # fmt: skip
    if group is not None:
        shutil.rmtree(path / group, ignore_errors=True)  # mode="w": the group's old arrays go
    write_files(files, path, prefix="" if group is None else f"{group}/")


def write_coords(tmp: Path, table: pd.DataFrame, start: int, attrs: dict[str, dict[str, Any]]) -> None:
    """The new traces' per-trace coordinates (coded columns already codes) at traces ``start``
    onwards, every array grown and written at once on zarr's event loop (one small write
    after another costs ~5 ms each, xarray's region write twice that), encoded as the store
    declares: times as int64 microseconds since the epoch (:data:`TIME_ENCODING`), text as
    strings. ``attrs``: attributes to update as well, by column (the coded columns' categories;
    written even where ``table`` has no rows).
    """
    stop = start + len(table)
    values, times = {}, set()
    for col in map(str, table.columns):
        v = table[col].to_numpy()
        if v.dtype.kind == "M":
            if np.isnat(v).any():
                raise ContractViolation(tmp, [f"{col}: a trace has no time"])
            v = v.astype("datetime64[us]").astype(np.int64)  # TIME_ENCODING
            times.add(col)
        values[col] = text_array(v) if v.dtype.kind in "OUT" else v

    async def write(col: str) -> None:
        arr = await zarr.api.asynchronous.open_array(
            store=str(tmp), path=col, mode="r+", zarr_format=ZARR_FORMAT
        )
        if col in times and arr.attrs.get("units") != TIME_ENCODING["units"]:
            stored = arr.attrs.get("units")
            raise ContractViolation(
                tmp, [f"{col}: times stored as {stored!r}, not {TIME_ENCODING['units']!r}"]
            )
        if col in values:
            await arr.resize((stop,))
            await arr.setitem(slice(start, stop), values[col])
        if col in attrs:
            await arr.update_attributes(attrs[col])

    async def write_all() -> None:
        await asyncio.gather(*(write(col) for col in {**values, **attrs}))

    zarr.core.sync.sync(write_all())


def rejects_dataset(rejects: Sequence[Reject], reason: tuple[np.ndarray, dict[str, Any]]) -> xr.Dataset:
    """The rejects table: ``reason`` coded (codes and attributes), the other columns text."""
    text = {
        c: ("reject", text_array(getattr(r, c) for r in rejects)) for c in REJECT_COLUMNS if c != "reason"
    }
    return xr.Dataset({**text, "reason": ("reject", *reason)})


def encoding(ds: xr.Dataset, traces_per_chunk: int) -> dict[str, dict[str, Any]]:
    """Compressors; data variables in ``traces_per_chunk`` traces, coordinates in :data:`COORD_CHUNK`."""
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        e: dict[str, Any] = {}
        if var.dtype.kind not in "OUT":
            e["compressors"] = compressor()
        if var.dtype.kind == "M":
            e.update(TIME_ENCODING)
        if "trace" in var.dims:
            lead = traces_per_chunk if name in ds.data_vars else COORD_CHUNK
            e["chunks"] = tuple(lead if d == "trace" else var.sizes[d] for d in var.dims)
        enc[str(name)] = e
    return enc


_EMPTY_META = SeismicMetadata(
    channels={},
    events=pd.DataFrame({c: [] for c in EVENT_COLUMNS}),
    picks={},
    tt=None,  # type: ignore[arg-type]
)
