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

Categorical columns are integer codes (:mod:`pipeline.publishing.codes`): an append encodes new
traces against the store's categories, appends names it has not seen, and rewrites the columns'
``categories`` attributes at commit, so an old code never changes meaning.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from numpy.dtypes import StringDType

from pipeline import interrupt
from pipeline.errors import ContractViolation, InputError
from pipeline.io.waveforms import EVENT_COLUMNS, Reject
from pipeline.publishing.codes import (
    FORMAT_VERSIONS,
    categories_of,
    category_attrs,
    coded,
    coded_format,
    strings,
)
from pipeline.publishing.contract import (
    SEISMIC_CHANNELS,
    SEISMIC_CODED,
    SEISMIC_REJECT_REASON,
    validate_seismic_store,
)
from pipeline.publishing.zarr_io import (
    ZARR_FORMAT,
    check_target,
    compressor,
    mark_temporary,
    open_store,
    register_temporary,
    swap_into_place,
    temporary_sibling,
)
from pipeline.seismic.batch import TraceBatch, segment_table, spectrogram_definition
from pipeline.seismic.labels import event_split
from pipeline.seismic.signal import CHANNELS, CROSS_PAIRS, CROSS_SPECTRUM_DEFINITION
from pipeline.seismic.windows import SeismicMetadata
from pipeline.version import code_version
from schemas.seismic import DATA_SHAPING_PARAMS, EMIN_KIND, SeismicCurationParams

SCHEMA_VERSION = FORMAT_VERSIONS[-1]
REJECT_COLUMNS = ("trace_id", "reason", "detail", "source_file")
#: Every coded column of the store (the rejects' reason as ``rejects/reason``): (categories, dtype) it starts with.
CODED_COLUMNS = {**SEISMIC_CODED, "rejects/reason": SEISMIC_REJECT_REASON}


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
    codes: dict[str, np.ndarray],
    waveform: np.ndarray | None = None,
    cross_spectrum: np.ndarray | None = None,
) -> xr.Dataset:
    """The batch as store variables; ``codes``: its coded columns (their attributes come at commit)."""
    coords: dict[str, Any] = {
        "channel": ("channel", np.arange(len(CHANNELS), dtype=SEISMIC_CHANNELS[1]), category_attrs(CHANNELS)),
        "freq": ("freq", freq.astype(np.float32), {"units": "Hz"}),
        "time": (
            "time",
            time_s.astype(np.float32),
            {"units": "s", "long_name": "frame centre relative to P"},
        ),
    }
    for col in table.columns:
        v = codes[col] if col in codes else table[col].to_numpy()
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
    if cross_spectrum is not None:
        coords["pair"] = (
            "pair",
            np.arange(len(CROSS_PAIRS), dtype=SEISMIC_CHANNELS[1]),
            category_attrs(CROSS_PAIRS),
        )
        data["cross_spectrum"] = (
            ("trace", "pair", "freq", "time"),
            cross_spectrum.astype(np.float32, copy=False),
            {"description": CROSS_SPECTRUM_DEFINITION},
        )
    return xr.Dataset(data, coords=coords)


def _rejects_dataset(rejects: Sequence[Reject], reason: tuple[np.ndarray, dict[str, Any]]) -> xr.Dataset:
    """The rejects table: ``reason`` coded (codes and attributes), the other columns text."""
    text = {c: ("reject", _strings(getattr(r, c) for r in rejects)) for c in REJECT_COLUMNS if c != "reason"}
    return xr.Dataset({**text, "reason": ("reject", *reason)})


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
        self,
        target: str | Path,
        params: SeismicCurationParams,
        *,
        hook: WriteHook | None = None,
        root: str | Path | None = None,
    ) -> None:
        self.target = Path(target).absolute()
        self.params = params
        self.hook = hook
        self.tmp: Path | None = None
        # an existing seismic store is appended to; anything else of the user's is refused
        check_target(self.target, kind=EMIN_KIND, append=True, root=root)
        _recover(self.target)
        check_target(self.target, kind=EMIN_KIND, append=True, root=root)  # what _recover put back
        self.existing_ids: set[str] = set()
        self.event_split: dict[str, str] = {}
        self.old_rejects: list[Reject] = []
        self.old_attrs: dict[str, Any] = {}
        self.categories: dict[str, list[str]] = {k: list(cats) for k, (cats, _dtype) in CODED_COLUMNS.items()}
        if self.target.exists():
            ds = open_store(self.target)
            self.old_attrs = dict(ds.attrs)
            self._check_format(self.old_attrs.get("schema_version"))
            self._check_params(self.old_attrs.get("parameters", {}))
            self.existing_ids = set(strings(ds, "trace_id").tolist())
            ev = strings(ds, "event_id")
            sp = strings(ds, "split")
            self.event_split = dict(zip(ev.tolist(), sp.tolist(), strict=True))
            rej = open_store(self.target, group="rejects")
            cols = {c: strings(rej, c).tolist() for c in REJECT_COLUMNS}
            self.old_rejects = [
                Reject(*vals) for vals in zip(*(cols[c] for c in REJECT_COLUMNS), strict=True)
            ]
            for key in CODED_COLUMNS:
                group, name = (rej, key.split("/")[1]) if key.startswith("rejects/") else (ds, key)
                self.categories[key] = categories_of(group[name].attrs) or []
        self.new_ids: set[str] = set()
        self.new_rejects: list[Reject] = []
        self.n_written = 0
        self.n_already_present = 0
        self.freq: np.ndarray | None = None
        self.time_s: np.ndarray | None = None

    def _check_format(self, version: object) -> None:
        """Appends write format :data:`SCHEMA_VERSION`; a store of an older format is refused."""
        if not coded_format(version):
            raise InputError(
                f"is a seismic store of format {version!r} (categorical columns as strings); this version "
                f"appends only to format {SCHEMA_VERSION} stores (categorical columns as integer codes)",
                path=self.target,
                fix="curate the files into a new --out (the old store stays readable, and published "
                "versions of it are never changed)",
            )

    def _encode(self, key: str, values: Iterable[Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """Codes of ``values`` in coded column ``key``; its new names are appended to its categories."""
        try:
            codes, attrs = coded(values, self.categories[key], CODED_COLUMNS[key][1])
        except ValueError as exc:
            raise InputError(
                f"column {key!r} would need more categories than its codes hold ({exc})",
                path=self.target,
                fix="split the data into several stores (each with its own --out)",
            ) from exc
        self.categories[key] = list(attrs["categories"])
        return codes, attrs

    def _check_params(self, stored: dict[str, Any]) -> None:
        mine = json.loads(self.params.model_dump_json())
        for key in DATA_SHAPING_PARAMS:
            # a parameter newer than the store: the store was written with its default
            a, b = stored.get(key, SeismicCurationParams.model_fields[key].default), mine.get(key)
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
            self.tmp = temporary_sibling(self.target)
            self.target.parent.mkdir(parents=True, exist_ok=True)
            register_temporary(self.tmp)  # before it exists: a kill at any point leaves it registered
            if self.target.exists():
                _link_tree(self.target, self.tmp)
            mark_temporary(self.tmp)
        return self.tmp

    def add(self, batch: TraceBatch) -> int:
        """Append the batch's traces that are not in the store yet; returns how many were added."""
        interrupt.check()
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
        cross = None if batch.cross_spectrum is None else batch.cross_spectrum[keep]
        events = table["event_id"].astype(str).tolist()
        fresh = sorted({e for e in events if e not in self.event_split})
        for e, s in zip(
            fresh,
            event_split(fresh, self.params.split_seed, self.params.split_fractions).tolist(),
            strict=True,
        ):
            self.event_split[e] = s
        table["split"] = [self.event_split[e] for e in events]
        codes = {c: self._encode(c, table[c])[0] for c in SEISMIC_CODED}
        ds = _batch_dataset(spec, table, batch.freq_hz, batch.time_s, codes, wave, cross)
        self.freq, self.time_s = batch.freq_hz, batch.time_s
        tmp = self._ensure_tmp()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            if (tmp / "zarr.json").exists():
                ds = ds.drop_vars(["channel", "freq", "time", *(["pair"] if cross is not None else [])])
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
                    {c: self._encode(c, [])[0] for c in SEISMIC_CODED},
                    np.zeros((0, 3, n_samples), np.float32) if p.keep_waveforms else None,
                    np.zeros((0, len(CROSS_PAIRS), n_freq, p.n_frames), np.float32)
                    if p.cross_spectra
                    else None,
                )
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                    ds.to_zarr(tmp, mode="w", zarr_format=ZARR_FORMAT, consolidated=False,
                               encoding=_encoding(ds, self.params.traces_per_chunk))  # fmt: skip
            rejects = self.old_rejects + self.new_rejects
            reason = self._encode("rejects/reason", [r.reason for r in rejects])
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                _rejects_dataset(rejects, reason).to_zarr(
                    tmp, group="rejects", mode="w", zarr_format=ZARR_FORMAT, consolidated=False
                )
            for col in SEISMIC_CODED:  # the categories of every coded column, new names included
                zarr.open_array(str(tmp), path=col, mode="r+").attrs.update(
                    category_attrs(self.categories[col])
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
            interrupt.check()
            swap_into_place(tmp, self.target)
            self.tmp = None
        except BaseException:
            self.abort()
            raise
        return True

    def _write_attrs(self, tmp: Path, rejects: Sequence[Reject], input_checksums: dict[str, str]) -> None:
        ds = open_store(tmp, consolidated=False)
        st = strings(ds, "sensor_type").tolist()
        sp = strings(ds, "split").tolist()
        dist = ds["distance_km"].values
        edges = [0, 25, 50, 75, 100, 150, 200, 300, 450, 10_000]
        hist, _ = np.histogram(dist, bins=edges)
        checks = dict(self.old_attrs.get("input_checksums", {}))
        checks.update(input_checksums)
        ev = strings(ds, "event_id")
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
