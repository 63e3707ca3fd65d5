"""Seismic spectrogram store: batch processing of segments and safe, idempotent appends.

Append protocol (a rejected or crashed append must never damage the published store):
1. the new version is built in a hidden temporary sibling: every file of the current store
   is hard-linked there (zarr 3's LocalStore writes each key to a temporary file and
   ``os.replace``s it, so a write in the sibling makes a new inode and never changes a linked
   file — checked by :func:`_zarr_writes_replace_files`; otherwise the store is copied);
2. new traces are appended in the sibling, the rejects table and provenance are rewritten,
   metadata consolidated and the sibling validated against the contract;
3. the sibling is swapped in with ``os.rename`` (old → ``.old-*``, sibling → target). A run
   that finds the target missing but an ``.old-*`` sibling (crash between the renames) puts
   the old version back first. Re-ingesting files whose traces are all present writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from numpy.dtypes import StringDType

from pipeline.checksums import file_sha256
from pipeline.errors import ContractViolation, InputError, PublishError
from pipeline.io.waveforms import (
    EVENT_COLUMNS,
    Reject,
    Segment,
    SeismicMetadata,
    extract_segments,
    load_metadata,
)
from pipeline.publishing.zarr_io import ZARR_FORMAT, compressor, open_store, swap_into_place
from pipeline.seismic.signal import (
    CHANNELS,
    batched_log_spectrogram,
    event_split,
    preprocess_batch,
    resample_batch,
    rotate_to_zne,
    station_event_labels,
    travel_time_table,
)
from pipeline.version import code_version
from schemas.seismic import (
    DATA_SHAPING_PARAMS,
    EMIN_KIND,
    SCHEMA_VERSION,
    SeismicCurationParams,
    SeismicInputs,
    as_str,
)

REJECT_COLUMNS = ("trace_id", "reason", "detail", "source_file")


@dataclass
class TraceBatch:
    """Spectrograms [n, 3, freq, time] of processed traces, their per-trace table and rejects."""

    spectrogram: np.ndarray
    table: pd.DataFrame
    rejects: list[Reject]
    freq_hz: np.ndarray
    time_s: np.ndarray
    timings_s: dict[str, float] = field(default_factory=dict)
    n_skipped: int = 0
    waveform: np.ndarray | None = None  # [n, 3, samples] float32 when params.keep_waveforms

    @classmethod
    def empty(cls, rejects: Sequence[Reject] = ()) -> TraceBatch:
        """A batch with no traces (used to hand metadata-level rejects to a writer)."""
        return cls(
            np.zeros((0, 3, 1, 1), np.float32), pd.DataFrame(), list(rejects), np.zeros(0), np.zeros(0)
        )

    @property
    def n(self) -> int:
        """Number of traces."""
        return int(self.spectrogram.shape[0])


def metadata_for(inputs: SeismicInputs, params: SeismicCurationParams) -> SeismicMetadata:
    """Read the run's inventory, catalog and picks and get the travel-time table."""
    max_deg = max(5.0, params.max_distance_km / 111.195 + 0.2)
    tt = travel_time_table(params.taup_model, round(max_deg, 1))
    return load_metadata(inputs.inventory, inputs.events, inputs.picks, tt)


def windowed_samples(
    segments: Sequence[Segment], params: SeismicCurationParams
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed ZNE windows [n, 3, n_frames*nperseg] float64 and the valid-channel mask [n, 3].

    Batched: resample per input rate (polyphase), rotate 3C data to ZNE with the inventory
    orientations, linear detrend + taper + zero-phase band-pass over the window padded by
    ``margin_s``, then cut the window. N/E of 1C sensors stay exactly zero (mask False).
    """
    fs = params.sampling_rate_hz
    n_total = round((params.window_s + 2 * params.margin_s) * fs)
    i_win = round(params.margin_s * fs)
    n_win = params.n_frames * params.nperseg
    data = np.zeros((len(segments), 3, n_total), dtype=np.float64)
    by_rate: dict[float, list[int]] = {}
    for i, s in enumerate(segments):
        by_rate.setdefault(s.rate, []).append(i)
    for rate, idx in by_rate.items():
        stack = np.stack([segments[i].data for i in idx])
        res = resample_batch(stack, rate, fs)
        m = min(res.shape[-1], n_total)
        data[idx, :, :m] = res[..., :m]
    three = np.array([s.sensor_type == "3C" for s in segments], dtype=bool)
    if three.any():
        az = np.stack([segments[int(i)].azimuth for i in np.flatnonzero(three)])
        dip = np.stack([segments[int(i)].dip for i in np.flatnonzero(three)])
        data[three] = rotate_to_zne(data[three], az, dip)
    valid = np.ones((len(segments), 3), dtype=bool)
    valid[~three, 1:] = False
    out = np.zeros((len(segments), 3, n_win), dtype=np.float64)
    if valid.any():
        proc = preprocess_batch(
            data[valid],
            fs,
            freqmin_hz=params.freqmin_hz,
            freqmax_hz=params.freqmax_hz,
            corners=params.filter_corners,
            taper_fraction=params.taper_fraction,
        )
        out[valid] = proc[:, i_win : i_win + n_win]
    return out, valid


def process_segments(
    segments: Sequence[Segment], meta: SeismicMetadata, params: SeismicCurationParams, *, chunk: int = 256
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray, dict[str, float], np.ndarray | None]:
    """Windowed samples → log spectrograms for many segments, ``chunk`` traces at a time.

    Also returns the windows themselves (float32) when ``params.keep_waveforms``.
    """
    import time

    fs = params.sampling_rate_hz
    n_freq = params.nperseg // 2 + 1
    out = np.zeros((len(segments), 3, n_freq, params.n_frames), dtype=np.float32)
    n_samples = params.n_frames * params.nperseg
    waves = np.zeros((len(segments), 3, n_samples), np.float32) if params.keep_waveforms else None
    timings = {"preprocess": 0.0, "spectrogram": 0.0}
    freq = np.fft.rfftfreq(params.nperseg, 1 / fs)
    time_s = (np.arange(params.n_frames) * params.nperseg + params.nperseg / 2) / fs - params.pre_p_s
    for start in range(0, len(segments), chunk):
        part = segments[start : start + chunk]
        t = time.perf_counter()
        window, valid = windowed_samples(part, params)
        if waves is not None:
            waves[start : start + len(part)] = window[..., :n_samples]
        timings["preprocess"] += time.perf_counter() - t
        t = time.perf_counter()
        _, _, spec = batched_log_spectrogram(window[valid], fs, nperseg=params.nperseg, eps=params.log_eps)
        block = np.zeros((len(part), 3, n_freq, params.n_frames), dtype=np.float32)
        block[valid] = spec
        out[start : start + len(part)] = block
        timings["spectrogram"] += time.perf_counter() - t
    table = segment_table(segments, meta, params)
    return out, table, freq, time_s, timings, waves


def segment_table(
    segments: Sequence[Segment], meta: SeismicMetadata, params: SeismicCurationParams
) -> pd.DataFrame:
    """Per-trace coordinates (labels from gps2dist_azimuth, station → event)."""
    ev = meta.events
    rows = np.array([s.event_row for s in segments], dtype=int)
    sta_lat = np.array([s.station_latitude for s in segments], dtype=float)
    sta_lon = np.array([s.station_longitude for s in segments], dtype=float)
    ev_lat = ev["latitude"].to_numpy()[rows] if len(rows) else np.zeros(0)
    ev_lon = ev["longitude"].to_numpy()[rows] if len(rows) else np.zeros(0)
    labels = station_event_labels(sta_lat, sta_lon, ev_lat, ev_lon)

    def ts(values: Iterable[float]) -> np.ndarray:
        arr = np.array(list(values), dtype=np.float64)
        return (np.round(arr * 1e6).astype("int64") * 1000).astype("datetime64[ns]")

    return pd.DataFrame(
        {
            "trace_id": [s.trace_id for s in segments],
            "event_id": ev["event_id"].to_numpy()[rows].astype(str) if len(rows) else np.zeros(0, str),
            "network": [s.network for s in segments],
            "station": [s.station for s in segments],
            "location": [s.location for s in segments],
            "channel_codes": [s.channel_codes for s in segments],
            "sensor_type": [s.sensor_type for s in segments],
            "source_file": [s.source_file for s in segments],
            "p_source": [s.p_source for s in segments],
            "station_latitude": sta_lat,
            "station_longitude": sta_lon,
            "event_latitude": ev_lat,
            "event_longitude": ev_lon,
            "event_depth_km": ev["depth_km"].to_numpy()[rows] if len(rows) else np.zeros(0),
            "event_magnitude": ev["magnitude"].to_numpy()[rows] if len(rows) else np.zeros(0),
            "event_horizontal_error_km": ev["horizontal_error_km"].to_numpy()[rows]
            if len(rows)
            else np.zeros(0),
            **labels,
            "p_arrival_time": ts(s.p_time_s for s in segments),
            "event_time": ts(ev["time_s"].to_numpy()[rows] if len(rows) else []),
            "window_start_time": ts(s.window_start_s for s in segments),
            "n_gap_samples": np.array([s.n_gap_samples for s in segments], dtype=np.int64),
        }
    )


def process_files(
    paths: Sequence[str | Path],
    meta: SeismicMetadata,
    params: SeismicCurationParams,
    *,
    skip_ids: set[str] | frozenset[str] = frozenset(),
) -> TraceBatch:
    """Read a batch of waveform files and turn every usable station-event window into a spectrogram.

    Windows whose trace id is in ``skip_ids`` (already in the store) are not processed again.
    """
    import time

    t = time.perf_counter()
    segments: list[Segment] = []
    rejects: list[Reject] = []
    skipped = 0
    for p in paths:
        segs, rej = extract_segments(p, meta, params)
        segments += [sg for sg in segs if sg.trace_id not in skip_ids]
        skipped += len(segs) - sum(sg.trace_id not in skip_ids for sg in segs)
        rejects += rej
    t_read = time.perf_counter() - t
    spec, table, freq, time_s, timings, waves = process_segments(segments, meta, params)
    timings["read"] = t_read
    return TraceBatch(spec, table, rejects, freq, time_s, timings, n_skipped=skipped, waveform=waves)


# --------------------------------------------------------------------------------------------
# Store writing
# --------------------------------------------------------------------------------------------


def _zarr_writes_replace_files() -> bool:
    """True when zarr's LocalStore writes by temp-file + os.replace (hard links then stay intact)."""
    try:
        from zarr.storage import _local

        return hasattr(_local, "_atomic_write")
    except ImportError:  # pragma: no cover
        return False


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into a new tree ``dst`` (copy when links are unsafe)."""
    if not _zarr_writes_replace_files():
        shutil.copytree(src, dst)
        return
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            os.link(Path(root) / f, dst / rel / f)


def _recover(target: Path) -> None:
    """Undo a swap interrupted between its two renames; drop stale temporary siblings."""
    olds = sorted(target.parent.glob(f".{target.name}.old-*"))
    if not target.exists() and olds:
        os.rename(olds[-1], target)
        olds = olds[:-1]
    for p in [*olds, *target.parent.glob(f".{target.name}.tmp-*")]:
        shutil.rmtree(p, ignore_errors=True)


def _strings(values: Iterable[Any]) -> np.ndarray:
    """Variable-length strings (numpy StringDType → zarr v3 string), so appends may be longer."""
    return np.array([str(v) for v in values], dtype=StringDType())


def _batch_dataset(
    spec: np.ndarray,
    table: pd.DataFrame,
    freq: np.ndarray,
    time_s: np.ndarray,
    waveform: np.ndarray | None = None,
) -> xr.Dataset:
    coords: dict[str, Any] = {
        "channel": ("channel", _strings(CHANNELS)),
        "freq": ("freq", freq.astype(np.float32), {"units": "Hz"}),
        "time": (
            "time",
            time_s.astype(np.float32),
            {"units": "s", "long_name": "frame centre relative to P"},
        ),
    }
    for col in table.columns:
        v = table[col].to_numpy()
        if v.dtype.kind in "OUT":
            v = _strings(v)
        coords[col] = ("trace", v)
    data: dict[str, Any] = {
        "spectrogram": (("trace", "channel", "freq", "time"), spec.astype(np.float32, copy=False))
    }
    if waveform is not None:
        data["waveform"] = (
            ("trace", "channel", "sample"),
            waveform.astype(np.float32, copy=False),
            {"description": "preprocessed ZNE window from P-pre_p_s (zeros for N/E of 1C sensors)"},
        )
    return xr.Dataset(data, coords=coords)


def _rejects_dataset(rejects: Sequence[Reject]) -> xr.Dataset:
    return xr.Dataset(
        {c: ("reject", _strings(getattr(r, c) for r in rejects)) for c in REJECT_COLUMNS},
    )


def _encoding(ds: xr.Dataset, traces_per_chunk: int) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        e: dict[str, Any] = {}
        if var.dtype.kind not in "OUT":
            e["compressors"] = compressor()
        if "trace" in var.dims:
            e["chunks"] = tuple(traces_per_chunk if d == "trace" else var.sizes[d] for d in var.dims)
        enc[str(name)] = e
    return enc


WriteHook = Callable[[str, int], None]


class SeismicStoreWriter:
    """One ingest into a store: new traces only, built aside and swapped in on commit.

    ``hook(stage, n_written)`` is called after every write into the temporary version (tests
    use it to simulate a crash mid-append).
    """

    def __init__(
        self, target: str | Path, params: SeismicCurationParams, *, hook: WriteHook | None = None
    ) -> None:
        self.target = Path(target).absolute()
        self.params = params
        self.hook = hook
        self.tmp: Path | None = None
        _recover(self.target)
        self.existing_ids: set[str] = set()
        self.event_split: dict[str, str] = {}
        self.old_rejects: list[Reject] = []
        self.old_attrs: dict[str, Any] = {}
        if self.target.exists():
            ds = open_store(self.target)
            self.old_attrs = dict(ds.attrs)
            self._check_params(self.old_attrs.get("parameters", {}))
            self.existing_ids = set(as_str(ds["trace_id"].values).tolist())
            ev = as_str(ds["event_id"].values)
            sp = as_str(ds["split"].values)
            self.event_split = dict(zip(ev.tolist(), sp.tolist(), strict=True))
            rej = open_store(self.target, group="rejects")
            cols = {c: as_str(rej[c].values).tolist() for c in REJECT_COLUMNS}
            self.old_rejects = [
                Reject(*vals) for vals in zip(*(cols[c] for c in REJECT_COLUMNS), strict=True)
            ]
        self.new_ids: set[str] = set()
        self.new_rejects: list[Reject] = []
        self.n_written = 0
        self.n_already_present = 0
        self.freq: np.ndarray | None = None
        self.time_s: np.ndarray | None = None

    def _check_params(self, stored: dict[str, Any]) -> None:
        mine = json.loads(self.params.model_dump_json())
        for key in DATA_SHAPING_PARAMS:
            a, b = stored.get(key), mine.get(key)
            if isinstance(a, list | tuple):
                a, b = list(a), list(b) if b is not None else b
            if a != b:
                raise InputError(
                    f"parameter {key}={b!r} differs from the store's {key}={a!r}; "
                    "an append must produce arrays of the same shape and meaning",
                    path=self.target,
                    fix=f"rerun with {key}={a!r}, or write a new store with another --out",
                )

    def _ensure_tmp(self) -> Path:
        if self.tmp is None:
            from pipeline.publishing.zarr_io import temporary_sibling

            self.tmp = temporary_sibling(self.target)
            self.target.parent.mkdir(parents=True, exist_ok=True)
            if self.target.exists():
                _link_tree(self.target, self.tmp)
        return self.tmp

    def add(self, batch: TraceBatch) -> int:
        """Append the batch's traces that are not in the store yet; returns how many were added."""
        known_rejects = {(r.trace_id, r.reason) for r in self.old_rejects + self.new_rejects}
        for r in batch.rejects:
            if (r.trace_id, r.reason) not in known_rejects:
                self.new_rejects.append(r)
                known_rejects.add((r.trace_id, r.reason))
        self.n_already_present += batch.n_skipped
        if batch.n == 0:
            return 0
        table = batch.table.reset_index(drop=True)
        ids = table["trace_id"].to_numpy().astype(str)
        keep = np.zeros(len(ids), dtype=bool)
        seen_now: dict[str, int] = {}
        for i, tid in enumerate(ids.tolist()):
            if tid in self.existing_ids:
                self.n_already_present += 1
            elif tid in self.new_ids or tid in seen_now:
                key = (tid, "duplicate_trace_id")
                if key not in known_rejects:
                    self.new_rejects.append(
                        Reject(
                            tid,
                            "duplicate_trace_id",
                            "trace id already taken in this ingest",
                            str(table.at[i, "source_file"]),
                        )
                    )
                    known_rejects.add(key)
            else:
                keep[i] = True
                seen_now[tid] = i
        if not keep.any():
            return 0
        table = table[keep].reset_index(drop=True)
        spec = batch.spectrogram[keep]
        wave = None if batch.waveform is None else batch.waveform[keep]
        events = table["event_id"].astype(str).tolist()
        fresh = sorted({e for e in events if e not in self.event_split})
        for e, s in zip(
            fresh,
            event_split(fresh, self.params.split_seed, self.params.split_fractions).tolist(),
            strict=True,
        ):
            self.event_split[e] = s
        table["split"] = [self.event_split[e] for e in events]
        ds = _batch_dataset(spec, table, batch.freq_hz, batch.time_s, wave)
        self.freq, self.time_s = batch.freq_hz, batch.time_s
        tmp = self._ensure_tmp()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            if (tmp / "zarr.json").exists():
                ds = ds.drop_vars(["channel", "freq", "time"])
                ds.to_zarr(tmp, mode="a", append_dim="trace", zarr_format=ZARR_FORMAT, consolidated=False)
            else:
                ds.to_zarr(
                    tmp,
                    mode="w",
                    zarr_format=ZARR_FORMAT,
                    consolidated=False,
                    encoding=_encoding(ds, self.params.traces_per_chunk),
                )
        self.new_ids.update(table["trace_id"].astype(str).tolist())
        self.n_written += len(table)
        if self.hook is not None:
            self.hook("append", self.n_written)
        return len(table)

    @property
    def changed(self) -> bool:
        """Whether this ingest has anything to publish."""
        return bool(self.new_ids or self.new_rejects)

    def abort(self) -> None:
        """Drop the temporary version; the published store is untouched."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def commit(self, input_checksums: dict[str, str]) -> bool:
        """Write rejects and provenance into the temporary version, validate it and swap it in.

        Returns False (and writes nothing) when the ingest added no trace and no reject.
        """
        from schemas.seismic import validate_seismic_store

        if not self.changed:
            self.abort()
            return False
        tmp = self._ensure_tmp()
        try:
            if not (tmp / "zarr.json").exists():
                # nothing accepted yet: an empty store still records the rejects
                p = self.params
                n_freq = p.nperseg // 2 + 1
                empty = TraceBatch(
                    np.zeros((0, 3, n_freq, p.n_frames), np.float32),
                    segment_table([], _EMPTY_META, p),
                    [],
                    np.fft.rfftfreq(p.nperseg, 1 / p.sampling_rate_hz),
                    (np.arange(p.n_frames) * p.nperseg + p.nperseg / 2) / p.sampling_rate_hz - p.pre_p_s,
                )
                n_samples = p.n_frames * p.nperseg
                ds = _batch_dataset(
                    empty.spectrogram,
                    empty.table.assign(split=np.zeros(0, str)),
                    empty.freq_hz,
                    empty.time_s,
                    np.zeros((0, 3, n_samples), np.float32) if p.keep_waveforms else None,
                )
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                    ds.to_zarr(tmp, mode="w", zarr_format=ZARR_FORMAT, consolidated=False,
                               encoding=_encoding(ds, self.params.traces_per_chunk))  # fmt: skip
            rejects = self.old_rejects + self.new_rejects
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                _rejects_dataset(rejects).to_zarr(
                    tmp, group="rejects", mode="w", zarr_format=ZARR_FORMAT, consolidated=False
                )
            if self.hook is not None:
                self.hook("rejects", self.n_written)
            self._write_attrs(tmp, rejects, input_checksums)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                zarr.consolidate_metadata(str(tmp))
            problems = _validate_counts(tmp, len(self.existing_ids) + len(self.new_ids))
            problems += validate_seismic_store(tmp)
            if problems:
                raise ContractViolation(tmp, problems)
            if self.hook is not None:
                self.hook("swap", self.n_written)
            swap_into_place(tmp, self.target)
            self.tmp = None
        except BaseException:
            self.abort()
            raise
        return True

    def _write_attrs(self, tmp: Path, rejects: Sequence[Reject], input_checksums: dict[str, str]) -> None:
        ds = open_store(tmp, consolidated=False)
        st = as_str(ds["sensor_type"].values).tolist()
        sp = as_str(ds["split"].values).tolist()
        dist = ds["distance_km"].values
        edges = [0, 25, 50, 75, 100, 150, 200, 300, 450, 10_000]
        hist, _ = np.histogram(dist, bins=edges)
        checks = dict(self.old_attrs.get("input_checksums", {}))
        checks.update(input_checksums)
        ev = as_str(ds["event_id"].values)
        counts = {
            "traces": len(st),
            "events": len(set(ev.tolist())),
            "per_sensor_type": dict(sorted(Counter(st).items())),
            "per_split": dict(sorted(Counter(sp).items())),
            "per_sensor_type_split": {
                f"{a}/{b}": n for (a, b), n in sorted(Counter(zip(st, sp, strict=True)).items())
            },
            "rejects": len(rejects),
            "rejects_per_reason": dict(sorted(Counter(r.reason for r in rejects).items())),
            "distance_histogram_km": {"edges": edges, "counts": hist.tolist()},
        }
        attrs = {
            "emin_kind": EMIN_KIND,
            "schema_version": SCHEMA_VERSION,
            "title": "Seismic single-station spectrograms (Z, N, E; log10 PSD)",
            "spectrogram_definition": spectrogram_definition(self.params),
            "back_azimuth_definition": "gps2dist_azimuth(station_lat, station_lon, event_lat, event_lon)[1]: "
            "azimuth at the station toward the event, degrees clockwise from north, WGS84",
            "parameters": json.loads(self.params.model_dump_json()),
            "input_checksums": dict(sorted(checks.items())),
            "code_version": code_version(),
            "counts": counts,
        }
        group = zarr.open_group(str(tmp), mode="r+", zarr_format=3)
        group.attrs.update(attrs)


def _validate_counts(tmp: Path, expected: int) -> list[str]:
    ds = open_store(tmp, consolidated=False)
    problems = []
    if ds.sizes.get("trace", 0) != expected:
        problems.append(f"trace count {ds.sizes.get('trace', 0)} != expected {expected}")
    return problems


_EMPTY_META = SeismicMetadata(
    channels={},
    events=pd.DataFrame({c: [] for c in EVENT_COLUMNS}),
    picks={},
    tt=None,  # type: ignore[arg-type]
)


def spectrogram_definition(params: SeismicCurationParams) -> str:
    """The stored spectrogram as an exact scipy expression (for provenance and docs)."""
    return (
        f"log10(scipy.signal.spectrogram(x, fs={params.sampling_rate_hz}, window='hann', "
        f"nperseg={params.nperseg}, noverlap=0, detrend='constant', scaling='density', mode='psd')[2] "
        f"+ {params.log_eps}) on x = the ZNE trace from P-{params.pre_p_s} s for {params.window_s} s after "
        f"resampling to {params.sampling_rate_hz} Hz, linear detrend, {params.taper_fraction} Hann taper and "
        f"zero-phase Butterworth band-pass {params.freqmin_hz}-{params.freqmax_hz} Hz "
        f"({params.filter_corners} corners, sosfiltfilt) over the window padded by {params.margin_s} s; "
        "N and E are exactly 0.0 (not log10(eps)) for 1C sensors"
    )


@dataclass
class CurationSummary:
    """What one curation run did."""

    store: Path
    published: bool
    n_files: int
    n_added: int
    n_already_present: int
    n_new_rejects: int
    counts: dict[str, Any]
    timings_s: dict[str, float]
    version_store: str | None = None  # set when the store was also published as a version

    @classmethod
    def of(
        cls,
        writer: SeismicStoreWriter,
        *,
        out: str | Path,
        published: bool,
        n_files: int,
        timings_s: dict[str, float] | None = None,
    ) -> CurationSummary:
        """Summarise a committed writer, with the store's counts as published."""
        counts = dict(open_store(out).attrs.get("counts", {})) if Path(out).exists() else {}
        return cls(
            store=Path(out),
            published=published,
            n_files=n_files,
            n_added=len(writer.new_ids),
            n_already_present=writer.n_already_present,
            n_new_rejects=len(writer.new_rejects),
            counts=counts,
            timings_s=timings_s or {},
        )


def input_checksums_for(inputs: SeismicInputs) -> dict[str, str]:
    """``{"waveforms/<name>": "sha256:..."}`` plus inventory, events and picks."""
    out: dict[str, str] = {}
    for p in inputs.waveforms:
        if Path(p).exists():
            out[f"waveforms/{Path(p).name}"] = "sha256:" + file_sha256(p)
    out[f"inventory/{inputs.inventory.name}"] = "sha256:" + file_sha256(inputs.inventory)
    out[f"events/{inputs.events.name}"] = "sha256:" + file_sha256(inputs.events)
    if inputs.picks is not None:
        out[f"picks/{inputs.picks.name}"] = "sha256:" + file_sha256(inputs.picks)
    return out


def curate_seismic(
    inputs: SeismicInputs,
    out: str | Path,
    params: SeismicCurationParams | None = None,
    *,
    batch_files: int = 32,
    hook: WriteHook | None = None,
) -> CurationSummary:
    """Curate waveforms + inventory + events into (or append to) the spectrogram store at ``out``."""
    import time

    params = params or SeismicCurationParams()
    if not inputs.waveforms:
        raise InputError("no waveform files given", fix="check the --waveforms glob matches files")
    t = time.perf_counter()
    meta = metadata_for(inputs, params)
    timings = {
        "metadata": time.perf_counter() - t,
        "read": 0.0,
        "preprocess": 0.0,
        "spectrogram": 0.0,
        "write": 0.0,
    }
    writer = SeismicStoreWriter(out, params, hook=hook)
    writer.add(TraceBatch.empty(meta.rejects))
    files = sorted(Path(p) for p in inputs.waveforms)
    try:
        for i in range(0, len(files), batch_files):
            batch = process_files(files[i : i + batch_files], meta, params, skip_ids=writer.existing_ids)
            for k, v in batch.timings_s.items():
                timings[k] = timings.get(k, 0.0) + v
            t = time.perf_counter()
            writer.add(batch)
            timings["write"] += time.perf_counter() - t
        t = time.perf_counter()
        published = writer.commit(input_checksums_for(inputs))
        timings["write"] += time.perf_counter() - t
    except BaseException:
        writer.abort()
        raise
    return CurationSummary.of(writer, out=out, published=published, n_files=len(files), timings_s=timings)


def store_digest(path: str | Path) -> dict[str, str]:
    """sha256 of every file in a store (relative path → digest): proves a no-op re-ingest."""
    root = Path(path)
    return {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def ensure_published(path: str | Path) -> None:
    """Raise PublishError when ``path`` holds no store."""
    if not (Path(path) / "zarr.json").exists():
        raise PublishError(f"{path} holds no seismic store")
