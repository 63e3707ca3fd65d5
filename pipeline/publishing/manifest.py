"""Content identity of a dataset: per-array entries (dtype, shape, digest), the content hash that
names a version, and JSON-ready attributes (docs/publishing.md)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pydantic_core
import xarray as xr

from pipeline.checksums import update_digest
from pipeline.publishing.codes import categories_of
from pipeline.publishing.zarr_io import BLOCK_BYTES, leading_blocks

#: Attributes that describe how a dataset was made, not what it holds (left out of the content id).
VOLATILE_ATTRS = ("code_version",)


DEFAULT_CHUNK_BYTES = 8 * 2**20


def jsonable(value: Any) -> Any:
    """Attributes as plain JSON types (numpy scalars/arrays, tuples, paths converted).

    pydantic's serialiser does the walk; numpy values fall back to ``.tolist()`` and anything
    else unknown to its text.
    """
    return pydantic_core.to_jsonable_python(value, fallback=_plain)


def _plain(value: Any) -> Any:
    """numpy (and torch) values as Python lists/scalars; anything else as its text."""
    tolist = getattr(value, "tolist", None)
    return jsonable(tolist()) if callable(tolist) else str(value)


def normalised_values(var: xr.Variable | xr.DataArray) -> np.ndarray:
    """Values as digested: strings of any numpy flavour (U, StringDType, object) as object."""
    values = np.asarray(var.values)
    if values.dtype.kind in "OUT":
        values = values.astype(object)
    return values


def variable_digest(var: xr.Variable | xr.DataArray) -> str:
    """The manifest digest of a variable: its values, and for a coded column its categories too
    (what a code means is content: relabelling a code changes the digest).

    A lazy (store-backed) variable is read block by block along its first dim; the digest is
    the same as of the loaded values (:func:`pipeline.checksums.update_digest`).
    """
    h = hashlib.sha256()
    if var.ndim == 0 or var.size * var.dtype.itemsize <= BLOCK_BYTES:
        arr = np.ascontiguousarray(normalised_values(var))
        update_digest(h, arr.dtype, arr.shape, [arr])
    else:
        dtype = np.dtype(object) if var.dtype.kind in "OUT" else var.dtype
        update_digest(h, dtype, tuple(var.shape), (block for _, block in leading_blocks(var)))
    cats = categories_of(var.attrs)
    if cats is not None:
        names = np.asarray(cats, dtype=object)
        update_digest(h, names.dtype, names.shape, [names])
    return "sha256:" + h.hexdigest()


def dtype_name(dtype: np.dtype[Any]) -> str:
    """A dtype name stable across a Zarr round trip (every string flavour is ``"string"``)."""
    return "string" if dtype.kind in "OUT" else str(dtype)


def array_entries(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Per variable (coords included): shape, dims, dtype and content digest."""
    return {
        str(name): {
            "dims": [str(d) for d in var.dims],
            "shape": [int(s) for s in var.shape],
            "dtype": dtype_name(var.dtype),
            "digest": variable_digest(var),
        }
        for name, var in sorted(ds.variables.items(), key=lambda kv: str(kv[0]))
    }


def content_hash(arrays: Mapping[str, Mapping[str, dict[str, Any]]], attrs: Mapping[str, Any]) -> str:
    """sha256 of every group's array digests and attributes (volatile attributes left out)."""
    payload = {
        "arrays": {g: {k: v["digest"] for k, v in a.items()} for g, a in arrays.items()},
        "attrs": {
            g: {k: v for k, v in jsonable(at).items() if k not in VOLATILE_ATTRS} for g, at in attrs.items()
        },
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def prepared_for_publish(ds: xr.Dataset) -> xr.Dataset:
    """A copy with every string array as object (Zarr v3 variable-length UTF-8), ready to digest
    and write: variables up to :data:`~pipeline.publishing.zarr_io.BLOCK_BYTES` loaded, larger
    ones left lazy (a store's dask arrays), so they are digested and written block by block."""
    ready = {}
    for name, var in ds.variables.items():
        if var.size * var.dtype.itemsize <= BLOCK_BYTES or var.dtype.kind in "OUT":
            var = var.compute()
        ready[name] = var.astype(object) if var.dtype.kind in "T" else var
    coords = {n: v for n, v in ready.items() if n in ds.coords}
    return (
        ds.copy(deep=False).assign_coords(coords).assign({n: v for n, v in ready.items() if n not in coords})
    )


def default_chunks(ds: xr.Dataset, *, target_bytes: int = DEFAULT_CHUNK_BYTES) -> dict[str, int]:
    """Chunk the leading dim of every data variable so a chunk holds about ``target_bytes``."""
    chunks: dict[str, int] = {}
    for var in ds.data_vars.values():
        if not var.dims:
            continue
        lead = str(var.dims[0])
        row_bytes = max(1, var.dtype.itemsize * int(np.prod(var.shape[1:], dtype=np.int64)))
        rows = max(1, target_bytes // row_bytes)
        chunks[lead] = int(min(chunks.get(lead, rows), rows))
    return chunks
