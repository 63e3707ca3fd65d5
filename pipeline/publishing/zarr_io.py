"""Zarr I/O shared by every curated store: encodings and atomic writes of a working copy.

A written path either holds a complete store or nothing new: stores are written under a
hidden temporary sibling and moved into place with a rename. *Publishing* (immutable,
versioned copies under a dataset root) is :mod:`pipeline.publishing.versions`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import warnings
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from zarr.codecs import BloscCodec

from pipeline.errors import PublishError

ZARR_FORMAT = 3


def compressor() -> tuple[BloscCodec, ...]:
    """The codec chain every array is written with (zstd, bit-shuffled)."""
    return (BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),)


def encoding_for(ds: xr.Dataset, chunks: dict[str, int]) -> dict[str, dict[str, object]]:
    """Zarr encoding for every variable and coordinate, chunked along the given dims."""
    encoding: dict[str, dict[str, object]] = {}
    for name, var in ds.variables.items():
        enc: dict[str, object] = {"compressors": compressor()}
        if var.dims:
            enc["chunks"] = tuple(
                min(chunks.get(str(d), var.sizes[d]), max(var.sizes[d], 1)) for d in var.dims
            )
        encoding[str(name)] = enc
    return encoding


def write_zarr(
    ds: xr.Dataset,
    path: str | Path,
    *,
    chunks: dict[str, int],
    group: str | None = None,
    deferred: Collection[str] = (),
) -> None:
    """Write ``ds`` as a Zarr v3 group (consolidated) at ``path``; no atomicity here.

    The ``deferred`` data variables get their metadata only (shape, chunks, codecs,
    attributes); their chunks are written later, possibly by other processes, with
    :func:`fill_array`. The finished store is byte-identical to one written in one go.
    """
    clean = ds.copy()
    for name, var in clean.variables.items():
        var.encoding = {}
        if var.dtype.kind == "U":  # fixed-width UTF-32 has no Zarr v3 spec; store variable-length UTF-8
            clean[name] = var.astype(object)
    encoding = encoding_for(clean, chunks)
    if deferred:
        import dask.array

        for name in deferred:
            var = clean[name].variable
            placeholder = dask.array.empty(var.shape, dtype=var.dtype, chunks=encoding[name]["chunks"])
            clean[name] = var.copy(data=placeholder)
    mode: Literal["w", "a"] = "w" if group is None else "a"
    # deferred arrays: metadata now, chunks by fill_array (compute=False leaves them unwritten)
    options: dict[str, Any] = {"compute": not deferred}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        clean.to_zarr(
            path,
            mode=mode,
            group=group,
            zarr_format=ZARR_FORMAT,
            consolidated=True,
            encoding=encoding,
            **options,
        )


def fill_array(path: str | Path, name: str, values: np.ndarray) -> None:
    """Write every chunk of the deferred array ``name`` of the store at ``path`` (see :func:`write_zarr`).

    Different arrays of one store can be filled concurrently from different processes:
    each touches only its own chunk files, and the (consolidated) metadata is final already.
    """
    import zarr

    array = zarr.open_array(store=str(path), path=name, mode="r+")
    if array.shape != values.shape or array.dtype != values.dtype:
        raise PublishError(
            f"{path}/{name} is {array.dtype}{array.shape} but the values to fill it are "
            f"{values.dtype}{values.shape}; fill it with the array it was declared from"
        )
    array[...] = values


def open_store(path: str | Path, *, group: str | None = None, consolidated: bool = True) -> xr.Dataset:
    """Open a store (working copy or published) lazily, quiet about consolidated-metadata warnings.

    ``consolidated=False`` reads every array's own metadata (slower), which is what a
    validator wants: consolidated metadata can describe arrays that are gone.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        return xr.open_zarr(path, group=group, consolidated=consolidated)


def temporary_sibling(target: Path) -> Path:
    """A hidden, unique path next to ``target`` (same filesystem, so rename is atomic)."""
    return target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"


def swap_into_place(tmp: Path, target: Path) -> None:
    """Move a complete store at ``tmp`` to ``target``, replacing any previous one.

    The old store is renamed aside first and deleted only after the new one is in
    place; a crash between the two renames leaves ``.<name>.old-*`` to restore.
    """
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


@contextlib.contextmanager
def write_atomically(target: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write a store into; move it to ``target`` on success.

    On any exception the temporary store is deleted and ``target`` is untouched. This is a
    working-copy write; *publishing* (an immutable, versioned copy) is
    :func:`pipeline.publishing.versions.publish_dataset`.
    An existing store at ``target`` is replaced only after the new one is complete.
    """
    target = Path(target).absolute()
    if target.exists() and not overwrite:
        raise PublishError(
            f"{target} already exists; pass overwrite=True (CLI: --overwrite) or choose another --out"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target)
    try:
        yield tmp
        if not tmp.exists():
            raise PublishError(f"nothing was written to {tmp}; refusing to write an empty {target}")
        swap_into_place(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def as_str(values: object) -> np.ndarray:
    """Any string array (numpy U, StringDType as zarr v3 returns, object) as a numpy U array."""
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype="<U1")
    return np.array([str(v) for v in arr.ravel().tolist()], dtype=str).reshape(arr.shape)
