"""Builders shared by the publishing/registry/torch/STAC/SeisBench tests (no tests here).

HSI stores come from the real curation code (``curate_hsi`` on the tiny scene). Seismic stores
are small xarray Datasets with the layout of ``pipeline/seismic/store.py`` (dims trace, channel,
freq, time; the same per-trace coords, categorical ones as codes) plus a ``waveform`` (trace,
channel, sample) variable, because generating a seismic network for real curation costs ~20 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from conftest import tiny_inputs
from format_1_0 import as_format_1_0
from scenes import TinyScene, make_tiny_scene

from pipeline.hsi.curate import curate_hsi
from pipeline.publishing.codes import coded
from pipeline.publishing.contract import SEISMIC_CHANNELS, SEISMIC_CODED
from pipeline.publishing.zarr_io import open_store
from schemas.hsi import HSICurationParams

HSI_PARAMS = HSICurationParams(max_points_per_class=900, interior_buffer_m=1.5)
_SCENES: dict[Path, TinyScene] = {}


def curate_tiny(root: Path, **overrides: object) -> tuple[xr.Dataset, xr.Dataset]:
    """Curate the tiny scene (once per folder) and return (dataset, rejects), opened lazily."""
    out = root / ("hsi" + "".join(f"_{k}{v}" for k, v in sorted(overrides.items())) + ".zarr")
    if not out.exists():
        scene = _SCENES.get(root) or _SCENES.setdefault(root, make_tiny_scene(root / "scene"))
        params = HSI_PARAMS.model_copy(update=overrides)
        curate_hsi(tiny_inputs(scene), params, out=out)
    return open_store(out), open_store(out, group="rejects")


def _codes(values: object, spec: tuple[tuple[str, ...], str]) -> tuple[str, np.ndarray, dict[str, object]]:
    return ("trace", *coded(np.asarray(values).tolist(), spec[0], spec[1]))


def seismic_dataset(n_events: int = 6, n_stations: int = 5, *, seed: int = 0, fmt: str = "1.1") -> xr.Dataset:
    """A spectrogram store's layout with waveforms: Z,N,E at 20 Hz, 1C stations have N,E = 0.

    ``fmt="1.0"``: the format 1.0 layout (categorical columns as strings).
    """
    rng = np.random.default_rng(seed)
    n = n_events * n_stations
    ev = np.repeat(np.arange(n_events), n_stations)
    st = np.tile(np.arange(n_stations), n_events)
    sta_lat, sta_lon = 37.0 + 0.3 * rng.random(n_stations), -116.5 + 0.4 * rng.random(n_stations)
    ev_lat, ev_lon = 37.1 + 0.5 * rng.random(n_events), -116.2 + 0.5 * rng.random(n_events)
    baz = rng.uniform(0, 360, n)
    one_c = st % 2 == 1
    fs, n_win = 20.0, 400
    wave = rng.standard_normal((n, 3, n_win)).astype(np.float32)
    wave[one_c, 1:] = 0.0
    split = np.array(["train", "train", "train", "train", "val", "test"])[ev % 6]
    t0 = np.datetime64("2024-03-01T00:00:00", "ns") + ev.astype("timedelta64[h]")
    params = {"sampling_rate_hz": fs, "pre_p_s": 5.0, "window_s": 20.0, "split_fractions": [0.7, 0.15, 0.15]}
    ds = xr.Dataset(
        {
            "spectrogram": (
                ("trace", "channel", "freq", "time"),
                rng.standard_normal((n, 3, 11, 20)).astype(np.float32),
            ),
            "waveform": (("trace", "channel", "sample"), wave),
        },
        coords={
            "channel": ("channel", *coded(["Z", "N", "E"], *SEISMIC_CHANNELS)),
            "freq": ("freq", np.arange(11, dtype=np.float32)),
            "time": ("time", np.arange(20, dtype=np.float32) - 4.5),
            "trace_id": (
                "trace",
                np.array([f"e{e:03d}.SY.S{s:03d}..HH" for e, s in zip(ev, st, strict=True)]),
            ),
            "event_id": ("trace", np.array([f"e{e:03d}" for e in ev])),
            "network": _codes(np.full(n, "SY"), SEISMIC_CODED["network"]),
            "station": _codes([f"S{s:03d}" for s in st], SEISMIC_CODED["station"]),
            "location": _codes(np.full(n, ""), SEISMIC_CODED["location"]),
            "channel_codes": _codes(np.where(one_c, "EHZ", "HHZ,HHN,HHE"), SEISMIC_CODED["channel_codes"]),
            "sensor_type": _codes(np.where(one_c, "1C", "3C"), SEISMIC_CODED["sensor_type"]),
            "station_latitude": ("trace", sta_lat[st]),
            "station_longitude": ("trace", sta_lon[st]),
            "event_latitude": ("trace", ev_lat[ev]),
            "event_longitude": ("trace", ev_lon[ev]),
            "event_depth_km": ("trace", rng.uniform(0, 10, n_events)[ev]),
            "event_magnitude": ("trace", rng.uniform(1, 3, n_events)[ev]),
            "distance_km": ("trace", rng.uniform(5, 80, n)),
            "back_azimuth_deg": ("trace", baz),
            "sin_baz": ("trace", np.sin(np.radians(baz))),
            "cos_baz": ("trace", np.cos(np.radians(baz))),
            "split": _codes(split, SEISMIC_CODED["split"]),
            "event_time": ("trace", t0),
            "p_arrival_time": ("trace", t0 + np.timedelta64(3, "s")),
            "window_start_time": ("trace", t0 - np.timedelta64(2, "s")),
        },
        attrs={
            "emin_kind": "seismic_spectrograms",
            "schema_version": "1.1",
            "parameters": params,
            "input_checksums": {"events/events.xml": "sha256:" + "0" * 64},
            "counts": {"traces": n, "events": n_events},
        },
    )
    return as_format_1_0(ds) if fmt == "1.0" else ds
