"""Torch datasets over published stores: HSI samples and seismic spectrograms.

Both are safe with ``DataLoader(num_workers>0)``: only the store location and index arrays
are pickled; each worker process opens the Zarr store itself on first use and, when the
selected rows fit in ``max_memory_bytes``, loads them into memory once (else reads lazily).
Both implement ``__getitems__`` so a DataLoader fetches a whole batch with one indexing op.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from models.data import stratified_label_split
from pipeline.errors import DataSelectionError
from pipeline.publishing.codes import strings

#: Label of a sample whose label is hidden by ``label_fraction`` (torch's CrossEntropy ignore_index).
IGNORE_LABEL = -100
DEFAULT_MAX_MEMORY = 2 * 2**30

Sample = dict[str, Any]


def _open(store: str | Path) -> xr.Dataset:
    """Open without dask: worker processes forked from a parent that used dask's thread pool
    would wait forever on it; xarray's lazy backend arrays need no pool."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        return xr.open_dataset(str(store), engine="zarr", chunks=None, consolidated=True)


def _store_of(source: str | Path | xr.Dataset) -> str:
    """Zarr path of a store path or of a dataset opened by :func:`pipeline.publishing.registry.open_dataset`."""
    if isinstance(source, xr.Dataset):
        info = source.attrs.get("emin_dataset")
        if not info:
            raise DataSelectionError(
                "this xarray.Dataset was not opened from a published store; pass the store path, "
                "or open it with pipeline.publishing.registry.open_dataset"
            )
        return f"{info['path']}/data.zarr"
    return str(source)


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the labelled samples: :func:`models.data.stratified_label_split` (the trainers' draw)."""
    keep = np.zeros(labels.size, dtype=bool)
    keep[stratified_label_split(labels, fraction, seed)[0]] = True
    return keep


class _LazyStore(Dataset[Sample]):
    """Opens the store (and loads arrays) once per process; never pickles open handles."""

    def __init__(self, store: str, *, max_memory_bytes: int) -> None:
        self.store = store
        self.max_memory_bytes = max_memory_bytes
        self._cache: dict[str, Any] | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"], state["_pid"] = None, None
        return state

    def _arrays(self) -> dict[str, Any]:
        if self._cache is None or self._pid != os.getpid():
            self._cache = self._load(_open(self.store))
            self._pid = os.getpid()
        return self._cache

    def _load(self, ds: xr.Dataset) -> dict[str, Any]:
        raise NotImplementedError

    def _take(self, arrays: dict[str, Any], key: str, rows: np.ndarray) -> np.ndarray:
        """Rows (positions in the store) of one array: from memory, else read lazily, in order."""
        arr = arrays[key]
        if isinstance(arr, np.ndarray):
            return arr[rows]
        order = np.argsort(rows, kind="stable")
        got = np.asarray(arr.isel({arr.dims[0]: rows[order]}).values)
        out = np.empty_like(got)
        out[order] = got
        return out

    def _fits(self, ds: xr.Dataset, names: Sequence[str]) -> bool:
        return sum(int(ds[n].nbytes) for n in names) <= self.max_memory_bytes


class HSISampleDataset(_LazyStore):
    """Samples of an HSI store: per-modality spectra, presence mask, label.

    Each item is ``{"x": {modality: float32[bands]}, "present": bool[M], "label": int64,
    "labelled": bool, "index": int64}``; an absent modality's spectrum is zeros (never NaN).
    ``folds`` selects folds (e.g. ``[1, 2, 3, 4]`` to train, ``[5]`` to test).
    ``label_fraction`` < 1 keeps that fraction of labels per class (seeded, stratified);
    the others get ``label = IGNORE_LABEL`` and ``labelled = False`` (``unlabelled="keep"``,
    for semi-supervised EMIN) or are left out (``unlabelled="drop"``).
    """

    def __init__(
        self,
        source: str | Path | xr.Dataset,
        *,
        folds: Sequence[int] | None = None,
        modalities: Sequence[str] | None = None,
        label_fraction: float = 1.0,
        unlabelled: str = "keep",
        seed: int = 0,
        max_memory_bytes: int = DEFAULT_MAX_MEMORY,
    ) -> None:
        super().__init__(_store_of(source), max_memory_bytes=max_memory_bytes)
        ds = _open(self.store)
        if ds.attrs.get("emin_kind") != "hsi_samples":
            raise DataSelectionError(
                f"{self.store} is not an HSI sample store (emin_kind={ds.attrs.get('emin_kind')!r})"
            )
        all_mods = strings(ds, "modality").tolist()
        self.modalities = list(modalities) if modalities is not None else all_mods
        unknown = sorted(set(self.modalities) - set(all_mods))
        if unknown:
            raise DataSelectionError(f"{self.store} has no modality {unknown}; modalities: {all_mods}")
        self._mod_index = np.array([all_mods.index(m) for m in self.modalities])
        self.class_names = [str(c) for c in ds.attrs["class_names"]]
        self.band_sizes = {m: int(ds.sizes[f"band_{m}"]) for m in self.modalities}
        fold = ds["fold"].values
        labels = ds["label"].values.astype(np.int64)
        chosen = np.ones(fold.size, bool) if folds is None else np.isin(fold, np.asarray(folds))
        if folds is not None and not chosen.any():
            raise DataSelectionError(
                f"{self.store} has no sample in folds {list(folds)}; folds: {sorted(set(fold.tolist()))}"
            )
        rows = np.flatnonzero(chosen)
        labelled = (
            stratified_subset(labels[rows], label_fraction, seed)
            if label_fraction < 1
            else np.ones(rows.size, bool)
        )
        if unlabelled == "drop":
            rows, labelled = rows[labelled], labelled[labelled]
        elif unlabelled != "keep":
            raise DataSelectionError(f"unlabelled must be 'keep' or 'drop', got {unlabelled!r}")
        self.rows = rows
        self.labelled = labelled
        self.labels = np.where(labelled, labels[rows], IGNORE_LABEL)

    def __len__(self) -> int:
        return int(self.rows.size)

    def _load(self, ds: xr.Dataset) -> dict[str, Any]:
        names = [*self.modalities, "present"]
        if self._fits(ds, names):
            return {n: np.asarray(ds[n].values) for n in names}
        return {n: ds[n] for n in names}

    def batch(self, idx: np.ndarray) -> dict[str, Any]:
        """A collated batch for positions ``idx`` (vectorised; what ``__getitems__`` builds on)."""
        arrays = self._arrays()
        rows = self.rows[idx]
        present = self._take(arrays, "present", rows)[:, self._mod_index].astype(bool)
        x: dict[str, torch.Tensor] = {}
        for j, m in enumerate(self.modalities):
            v = np.nan_to_num(self._take(arrays, m, rows).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            v[~present[:, j]] = 0.0
            x[m] = torch.from_numpy(v)
        return {
            "x": x,
            "present": torch.from_numpy(present),
            "label": torch.from_numpy(self.labels[idx]),
            "labelled": torch.from_numpy(self.labelled[idx]),
            "index": torch.from_numpy(rows.astype(np.int64)),
        }

    def __getitem__(self, i: int) -> Sample:
        b = self.batch(np.array([i]))
        return {
            "x": {m: t[0] for m, t in b["x"].items()},
            "present": b["present"][0],
            "label": b["label"][0],
            "labelled": b["labelled"][0],
            "index": b["index"][0],
        }

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        b = self.batch(np.asarray(indices, dtype=np.int64))
        return [{"_batch": b}]


def collate_hsi(samples: Sequence[Sample], band_sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """Batch HSI samples: a modality absent from a sample (None, missing key or mask False) is zeros
    with ``present`` False, and no NaN ever reaches the batch. Pass ``band_sizes`` when a modality
    may be absent from every sample of a batch."""
    if len(samples) == 1 and "_batch" in samples[0]:
        return dict(samples[0]["_batch"])
    mods = list(band_sizes or {})
    for s in samples:
        mods += [m for m in s["x"] if m not in mods]
    sizes = dict(band_sizes or {})
    for s in samples:
        for m, t in s["x"].items():
            if t is not None:
                sizes.setdefault(m, int(t.shape[-1]))
    n = len(samples)
    present = torch.zeros((n, len(mods)), dtype=torch.bool)
    x = {m: torch.zeros((n, sizes[m]), dtype=torch.float32) for m in mods}
    for i, s in enumerate(samples):
        mask = s.get("present")
        order = list(s["x"])
        for j, m in enumerate(mods):
            t = s["x"].get(m)
            ok = t is not None and (mask is None or bool(mask[order.index(m)]))
            if ok and t is not None:
                row = torch.nan_to_num(t.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
                x[m][i] = row
                present[i, j] = True
    return {
        "x": x,
        "present": present,
        "label": torch.as_tensor([int(s["label"]) for s in samples], dtype=torch.int64),
        "labelled": torch.as_tensor([bool(s.get("labelled", True)) for s in samples], dtype=torch.bool),
        "index": torch.as_tensor([int(s.get("index", -1)) for s in samples], dtype=torch.int64),
    }


TARGETS = ("distance_km", "sin_baz", "cos_baz")


class SpectrogramDataset(_LazyStore):
    """Traces of a seismic spectrogram store: ``x`` float32 (3, freq, time), ``y`` float32
    (distance_km, sin_baz, cos_baz), ``index``; ``splits`` selects e.g. ``["train"]``."""

    def __init__(
        self,
        source: str | Path | xr.Dataset,
        *,
        splits: Sequence[str] | None = None,
        max_memory_bytes: int = DEFAULT_MAX_MEMORY,
    ) -> None:
        super().__init__(_store_of(source), max_memory_bytes=max_memory_bytes)
        ds = _open(self.store)
        if ds.attrs.get("emin_kind") != "seismic_spectrograms":
            raise DataSelectionError(
                f"{self.store} is not a spectrogram store (emin_kind={ds.attrs.get('emin_kind')!r})"
            )
        split = strings(ds, "split")
        chosen = np.ones(split.size, bool) if splits is None else np.isin(split, np.asarray(list(splits)))
        if splits is not None and not chosen.any():
            raise DataSelectionError(
                f"{self.store} has no trace in splits {list(splits)}; splits: {sorted(set(split))}"
            )
        self.rows = np.flatnonzero(chosen)
        self.targets = np.stack([ds[t].values[self.rows] for t in TARGETS], axis=1).astype(np.float32)

    def __len__(self) -> int:
        return int(self.rows.size)

    def _load(self, ds: xr.Dataset) -> dict[str, Any]:
        if self._fits(ds, ["spectrogram"]):
            return {"spectrogram": np.asarray(ds["spectrogram"].values)}
        return {"spectrogram": ds["spectrogram"]}

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """A collated batch for positions ``idx``."""
        rows = self.rows[idx]
        x = self._take(self._arrays(), "spectrogram", rows).astype(np.float32, copy=False)
        return {
            "x": torch.from_numpy(np.ascontiguousarray(x)),
            "y": torch.from_numpy(self.targets[idx]),
            "index": torch.from_numpy(rows.astype(np.int64)),
        }

    def __getitem__(self, i: int) -> Sample:
        b = self.batch(np.array([i]))
        return {k: v[0] for k, v in b.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        return [{"_batch": self.batch(np.asarray(indices, dtype=np.int64))}]


def collate_spectrograms(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """Batch spectrogram samples (stacks ``x``, ``y``, ``index``)."""
    if len(samples) == 1 and "_batch" in samples[0]:
        return dict(samples[0]["_batch"])
    return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in ("x", "y", "index")}
