"""Content ids of published versions: what changes them and what does not."""

from __future__ import annotations

import numpy as np
import xarray as xr
from numpy.dtypes import StringDType

from pipeline.publishing.manifest import array_entries, content_hash, default_chunks, jsonable


def _ds(values: np.ndarray, **attrs: object) -> xr.Dataset:
    return xr.Dataset({"a": ("s", values)}, coords={"name": ("s", np.array(["x", "yy", "zzz"]))}, attrs=attrs)


def _hash(ds: xr.Dataset) -> str:
    return content_hash({"": array_entries(ds)}, {"": ds.attrs})


def test_hash_follows_content_parameters_and_inputs_not_code_version() -> None:
    base = _ds(np.arange(3.0), parameters={"seed": 0}, input_checksums={"p": "sha256:1"}, code_version="1")
    assert _hash(base) == _hash(base.assign_attrs(code_version="2"))
    assert _hash(base) != _hash(base.assign_attrs(parameters={"seed": 1}))
    assert _hash(base) != _hash(base.assign_attrs(input_checksums={"p": "sha256:2"}))
    changed = base.copy(deep=True)
    changed["a"].values[1] = 9.0
    assert _hash(base) != _hash(changed)
    assert _hash(base) != _hash(base.assign(a=base["a"].astype(np.float32)))  # dtype is content


def test_string_flavours_digest_alike() -> None:
    u = _ds(np.arange(3.0))
    t = u.assign_coords(name=("s", np.array(["x", "yy", "zzz"], dtype=StringDType())))
    o = u.assign_coords(name=("s", np.array(["x", "yy", "zzz"], dtype=object)))
    assert array_entries(u)["name"] == array_entries(t)["name"] == array_entries(o)["name"]
    assert array_entries(u)["name"]["dtype"] == "string"


def test_jsonable_and_default_chunks() -> None:
    assert jsonable({"a": np.int64(3), "b": (1, np.float32(0.5)), "c": np.arange(2)}) == {
        "a": 3,
        "b": [1, 0.5],
        "c": [0, 1],
    }
    ds = xr.Dataset({"v": (("s", "b"), np.zeros((10_000, 100), np.float32))})
    assert default_chunks(ds, target_bytes=400 * 100) == {"s": 100}
