"""Benchmark: torch datasets reading a published store vs the same arrays from in-memory numpy.

One run: publishes an HSI sample store (contract layout, 6 modalities) and a spectrogram store
(3 × 51 × 120 per trace) into a temporary dataset root, then times one shuffled epoch of
``HSISampleDataset`` / ``SpectrogramDataset`` through a ``DataLoader`` with 0 and 2 workers, and
the same batches cut from numpy arrays already in memory (``torch.from_numpy(arr[idx])``).
Worker start-up and the per-worker load of the store are included in the timed epoch.

Usage: ``python bench/loader.py [--samples 40000] [--traces 4000] [--batch 256]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.publishing.registry import open_dataset
from pipeline.publishing.torch_data import (
    HSISampleDataset,
    SpectrogramDataset,
    collate_hsi,
    collate_spectrograms,
)
from pipeline.publishing.versions import publish_dataset

MODALITIES = {"VNIR1": 60, "VNIR2": 60, "VNIR3": 60, "SWIR1": 150, "SWIR2": 150, "SWIR3": 150}


def hsi_dataset(n: int, rng: np.random.Generator) -> xr.Dataset:
    """An HSI store's layout (docs/format.md) with random spectra and ~30 % absent modalities."""
    present = rng.random((n, len(MODALITIES))) > 0.3
    data: dict[str, object] = {"present": (("sample", "modality"), present)}
    coords: dict[str, object] = {"modality": ("modality", np.array(list(MODALITIES)))}
    for j, (m, b) in enumerate(MODALITIES.items()):
        v = rng.random((n, b), dtype=np.float32)
        v[~present[:, j]] = np.nan
        data[m] = (("sample", f"band_{m}"), v)
        coords[f"wavelength_{m}"] = (f"band_{m}", np.linspace(400, 2500, b))
    label = rng.integers(0, 10, n).astype(np.int16)
    coords |= {"label": ("sample", label), "fold": ("sample", (np.arange(n) % 5 + 1).astype(np.int8)),
               "sample_id": ("sample", np.arange(n))}  # fmt: skip
    attrs = {"emin_kind": "hsi_samples", "schema_version": "1.0", "class_names": [f"c{i}" for i in range(10)],
             "modalities": list(MODALITIES)}  # fmt: skip
    return xr.Dataset(data, coords=coords, attrs=attrs)  # type: ignore[arg-type]


def spectrogram_dataset(n: int, rng: np.random.Generator) -> xr.Dataset:
    """A spectrogram store's layout (trace, channel, freq, time) with random values."""
    baz = rng.uniform(0, 360, n)
    return xr.Dataset(
        {
            "spectrogram": (
                ("trace", "channel", "freq", "time"),
                rng.standard_normal((n, 3, 51, 120), dtype=np.float32),
            )
        },
        coords={
            "channel": ("channel", np.array(["Z", "N", "E"])),
            "distance_km": ("trace", rng.uniform(1, 300, n)),
            "sin_baz": ("trace", np.sin(np.radians(baz))),
            "cos_baz": ("trace", np.cos(np.radians(baz))),
            "split": ("trace", np.where(np.arange(n) % 10 < 8, "train", "test")),
        },
        attrs={"emin_kind": "seismic_spectrograms", "schema_version": "1.0"},
    )


def timed(batches: Iterable[object]) -> tuple[float, int]:
    """Seconds for one pass and the number of samples seen."""
    t = time.perf_counter()
    n = 0
    for b in batches:
        idx = b["index"] if isinstance(b, dict) else b
        n += len(idx)
    return time.perf_counter() - t, n


def numpy_batches(
    arrays: dict[str, np.ndarray], n: int, batch: int, seed: int
) -> Iterable[dict[str, object]]:
    """The in-memory baseline: shuffled index batches sliced from numpy arrays."""
    order = np.random.default_rng(seed).permutation(n)
    for i in range(0, n, batch):
        idx = order[i : i + batch]
        out: dict[str, object] = {k: torch.from_numpy(np.nan_to_num(v[idx])) for k, v in arrays.items()}
        out["index"] = torch.from_numpy(idx)
        yield out


def run(label: str, make: Callable[[], torch.utils.data.Dataset], collate: Callable, memory: dict[str, np.ndarray],
        n: int, batch: int) -> None:  # fmt: skip
    sec, seen = timed(numpy_batches(memory, n, batch, 0))
    print(f"{label:12s} in-memory numpy      {seen / sec:12,.0f} samples/s  ({seen} samples, {sec:.2f} s)")
    for workers in (0, 2):
        ds = make()
        loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate,
                            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))  # fmt: skip
        first, seen = timed(loader)
        second, _ = timed(loader)
        print(f"{label:12s} store, {workers} workers    {seen / first:12,.0f} samples/s first epoch (opens + loads "
              f"the store), {seen / second:12,.0f} samples/s second epoch")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=40_000)
    ap.add_argument("--traces", type=int, default=4_000)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hsi = hsi_dataset(args.samples, rng)
        seis = spectrogram_dataset(args.traces, rng)
        t = time.perf_counter()
        publish_dataset(hsi, name="bench_hsi", root=root)
        publish_dataset(seis, name="bench_spec", root=root)
        print(f"published both stores in {time.perf_counter() - t:.1f} s "
              f"({hsi.nbytes / 2**20:.0f} MB HSI, {seis.nbytes / 2**20:.0f} MB spectrograms in memory)")  # fmt: skip
        hsi_mem = {m: hsi[m].values for m in MODALITIES} | {"present": hsi["present"].values}
        run("HSI", lambda: HSISampleDataset(open_dataset("bench_hsi", root=root)), collate_hsi, hsi_mem,
            args.samples, args.batch)  # fmt: skip
        train = np.flatnonzero(seis["split"].values.astype(str) == "train")
        spec_mem = {"x": seis["spectrogram"].values[train]}
        run("spectrogram", lambda: SpectrogramDataset(open_dataset("bench_spec", root=root), splits=["train"]),
            collate_spectrograms, spec_mem, train.size, args.batch)  # fmt: skip


if __name__ == "__main__":
    main()
