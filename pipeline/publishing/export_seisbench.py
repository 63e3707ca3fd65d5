"""Export a seismic dataset's windowed waveforms in SeisBench's format (metadata.csv + waveforms.hdf5).

The result loads with ``seisbench.data.WaveformDataset(out)``: traces ``data/<trace_name>``
(channels Z, N, E × samples, float32, ``dimension_order = "CW"``), a ``data_format`` group, and
SeisBench's metadata columns with units (``source_latitude_deg``, ``path_back_azimuth_deg``,
``trace_sampling_rate_hz``…). Splits map to SeisBench's names: train, val → dev, test.
Needs a store with a ``waveform`` (trace, channel, sample) variable.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.errors import ExportError
from pipeline.publishing.codes import is_text, strings

SPLIT_NAMES = {"train": "train", "val": "dev", "dev": "dev", "test": "test"}
#: store coordinate -> SeisBench metadata column
COLUMNS = {
    "event_id": "source_id",
    "event_latitude": "source_latitude_deg",
    "event_longitude": "source_longitude_deg",
    "event_depth_km": "source_depth_km",
    "event_magnitude": "source_magnitude",
    "event_horizontal_error_km": "source_horizontal_uncertainty_km",
    "network": "station_network_code",
    "station": "station_code",
    "location": "station_location_code",
    "station_latitude": "station_latitude_deg",
    "station_longitude": "station_longitude_deg",
    "sensor_type": "station_sensor_type",
    "channel_codes": "trace_channel",
    "distance_km": "path_ep_distance_km",
    "back_azimuth_deg": "path_back_azimuth_deg",
    "trace_id": "trace_emin_id",
}


@dataclass(frozen=True)
class SeisBenchExport:
    """Where the export went and how many traces it holds."""

    metadata: Path
    waveforms: Path
    n_traces: int


def _iso(values: np.ndarray) -> list[str]:
    return [f"{v}Z" for v in np.asarray(values).astype("datetime64[ms]").astype(str)]


def export_seisbench(ds: xr.Dataset, *, out: str | Path) -> SeisBenchExport:
    """Write ``metadata.csv`` and ``waveforms.hdf5`` for every trace of ``ds`` into ``out``."""
    if ds.attrs.get("emin_kind") != "seismic_spectrograms":
        raise ExportError(
            f"SeisBench export needs a seismic dataset, got emin_kind={ds.attrs.get('emin_kind')!r}"
        )
    if "waveform" not in ds.data_vars:
        raise ExportError(
            "this seismic store holds spectrograms only, no windowed waveforms (data variable 'waveform' "
            "with dims (trace, channel, sample)); fix: re-curate "
            "with `keep_waveforms: true` (CLI: emin curate seismic --keep-waveforms)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = ds.attrs.get("parameters", {})
    fs = float(ds["waveform"].attrs.get("sampling_rate_hz", params.get("sampling_rate_hz")))
    names = np.char.replace(strings(ds, "trace_id"), "/", "_")
    if len(set(names.tolist())) != names.size:
        raise ExportError("trace ids are not unique; SeisBench trace names must be")
    split = strings(ds, "split")
    unknown = sorted(set(split.tolist()) - set(SPLIT_NAMES))
    if unknown:
        raise ExportError(f"split values {unknown} have no SeisBench name; expected {sorted(SPLIT_NAMES)}")
    meta = pd.DataFrame({"trace_name": names, "split": [SPLIT_NAMES[s] for s in split]})
    for coord, col in COLUMNS.items():
        if coord in ds.variables:
            meta[col] = strings(ds, coord) if is_text(ds[coord]) else np.asarray(ds[coord].values)
    if "event_time" in ds.variables:
        meta["source_origin_time"] = _iso(ds["event_time"].values)
    start = ds["window_start_time"].values if "window_start_time" in ds.variables else None
    if start is not None:
        meta["trace_start_time"] = _iso(start)
        if "p_arrival_time" in ds.variables:
            dt_s = (ds["p_arrival_time"].values - start) / np.timedelta64(1, "s")
            meta["trace_P_arrival_sample"] = np.rint(dt_s * fs).astype(np.int64)
    meta["trace_sampling_rate_hz"] = fs
    meta["trace_component_order"] = "".join(strings(ds, "channel"))
    meta["trace_npts"] = int(ds.sizes[ds["waveform"].dims[-1]])
    wave = np.asarray(ds["waveform"].transpose("trace", "channel", ...).values, dtype=np.float32)
    tmp_h5 = out / f".waveforms.hdf5.tmp-{uuid.uuid4().hex[:8]}"
    tmp_csv = out / f".metadata.csv.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with h5py.File(tmp_h5, "w") as f:
            fmt = f.create_group("data_format")
            fmt.create_dataset("component_order", data="".join(strings(ds, "channel")))
            fmt.create_dataset("dimension_order", data="CW")
            fmt.create_dataset("sampling_rate", data=fs)
            fmt.create_dataset("measurement", data="velocity")
            fmt.create_dataset("unit", data="counts (detrended, tapered, band-passed; no response removal)")
            fmt.create_dataset("instrument_response", data="not restituted")
            data = f.create_group("data")
            for i, name in enumerate(names):
                data.create_dataset(str(name), data=wave[i])
        meta.to_csv(tmp_csv, index=False)
        os.replace(tmp_h5, out / "waveforms.hdf5")
        os.replace(tmp_csv, out / "metadata.csv")
    finally:
        for p in (tmp_h5, tmp_csv):
            p.unlink(missing_ok=True)
    return SeisBenchExport(out / "metadata.csv", out / "waveforms.hdf5", int(names.size))
