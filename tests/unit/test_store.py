"""Deferred Zarr writes: arrays filled later, from other processes, give the same files as one write."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from pipeline.errors import PublishError
from pipeline.publishing.zarr_io import fill_array, write_zarr


def _dataset() -> xr.Dataset:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(1000, 7)).astype(np.float32)
    a[:300] = np.nan  # whole chunks equal to the fill value: skipped alike by both routes
    b = rng.normal(size=(1000, 3)).astype(np.float32)
    return xr.Dataset(
        {"a": (("s", "band_a"), a, {"units": "r"}), "b": (("s", "band_b"), b)},
        coords={"s": np.arange(1000), "name": ("s", np.array([f"p{i}" for i in range(1000)]))},
        attrs={"kind": "test"},
    )


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deferred_arrays_filled_in_other_processes_equal_one_write(tmp_path: Path) -> None:
    ds = _dataset()
    write_zarr(ds, tmp_path / "once.zarr", chunks={"s": 256})
    write_zarr(ds, tmp_path / "later.zarr", chunks={"s": 256}, deferred=["a", "b"])
    assert not any((tmp_path / "later.zarr" / "a").glob("c/*"))  # metadata only so far
    with ProcessPoolExecutor(2) as pool:
        jobs = [pool.submit(fill_array, tmp_path / "later.zarr", n, ds[n].values) for n in ("a", "b")]
        for job in jobs:
            job.result()
    assert _files(tmp_path / "later.zarr") == _files(tmp_path / "once.zarr")
    assert xr.open_zarr(tmp_path / "later.zarr").load().identical(xr.open_zarr(tmp_path / "once.zarr").load())


def test_fill_with_the_wrong_shape_names_the_array(tmp_path: Path) -> None:
    ds = _dataset()
    write_zarr(ds, tmp_path / "s.zarr", chunks={"s": 256}, deferred=["a"])
    with pytest.raises(PublishError, match=r"s\.zarr/a is float32\(1000, 7\).*\(999, 7\)"):
        fill_array(tmp_path / "s.zarr", "a", ds["a"].values[:999])
