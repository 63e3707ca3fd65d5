"""Stores in the format 1.0 layout (categorical columns as zarr v3 ``string``), for the readers' tests.

Format 1.0 is what every store was before 1.1 (docs/format.md, "Format 1.0"). A 1.0 store is made
here from a 1.1 store by undoing the codes with plain xarray and numpy (no product code), so the
two hold the same data: HSI ``label_name`` (string, = ``class_names[label]``) beside ``label``,
the ``modality`` coord as strings, rejects ``reason`` as strings and ``detail``
(``VNIR1=outside_footprint;SWIR1=nodata``) instead of ``status``; seismic categorical columns,
``channel`` and rejects ``reason`` as strings. Compared with the demo stores of release 1.0 by
``test_store_codes.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from numpy.dtypes import StringDType

CODE_ATTRS = ("flag_values", "flag_meanings", "categories")


def _names(var: xr.Variable) -> np.ndarray:
    return np.asarray(var.attrs["categories"], dtype=StringDType())[np.asarray(var.values)]


def as_format_1_0(ds: xr.Dataset) -> xr.Dataset:
    """The 1.0 layout of a (loaded) 1.1 dataset or rejects group."""
    out = ds.copy()
    for name, var in ds.variables.items():
        if "categories" not in var.attrs:
            continue
        attrs = {k: v for k, v in var.attrs.items() if k not in CODE_ATTRS}
        if name == "label":  # 1.0: int label plus its names in a string column
            out[name].attrs = attrs
            text = xr.Variable(var.dims, _names(var))
            out = out.assign_coords(label_name=text) if name in ds.coords else out.assign(label_name=text)
        elif name == "status":  # 1.0: one text per reject, MODALITY=status;...
            mods = _names(ds.variables["modality"])
            rows = [";".join(f"{m}={s}" for m, s in zip(mods, row, strict=True)) for row in _names(var)]
            out = out.drop_vars("status").assign(detail=("reject", np.array(rows, dtype=StringDType())))
        else:
            out[name] = xr.Variable(var.dims, _names(var), attrs)
    if "reject" in out.dims and "modality" in out.coords:  # 1.0 rejects have no modality dim
        out = out.drop_vars("modality")
    if "schema_version" in out.attrs:
        out.attrs["schema_version"] = "1.0"
    return out


def write_format_1_0(src: str | Path, dst: str | Path) -> Path:
    """Copy the 1.1 store at ``src`` to ``dst`` in the 1.0 layout (main group and ``rejects``)."""
    dst = Path(dst)
    with xr.open_zarr(src) as ds:
        as_format_1_0(ds.load()).to_zarr(dst, mode="w", zarr_format=3, consolidated=True)
    with xr.open_zarr(src, group="rejects") as rej:
        as_format_1_0(rej.load()).to_zarr(dst, group="rejects", mode="a", zarr_format=3, consolidated=True)
    return dst
