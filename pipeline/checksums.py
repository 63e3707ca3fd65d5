"""Checksums: input files (with their sidecars) for provenance and cache keys, and array content."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 8 * 1024 * 1024


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 8 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=256)
def _sha256_memo(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def cached_file_sha256(path: str | Path) -> str:
    """:func:`file_sha256`, memoised per (path, size, mtime) in this process.

    Cache keys and provenance both need the checksum of every raster; a large raster
    is read once per process, not once per use. Any rewrite of the file changes its
    size or mtime, so a stale checksum is never returned.
    """
    p = Path(path).resolve()
    st = p.stat()
    return _sha256_memo(str(p), st.st_size, st.st_mtime_ns)


def sidecars(path: str | Path) -> list[Path]:
    """The files that belong to ``path`` and change its meaning: an ENVI raster's ``.hdr``."""
    header = Path(path).with_suffix(".hdr")
    return [header] if header != Path(path) and header.exists() else []


def input_checksums(paths: dict[str, Path]) -> dict[str, str]:
    """``{name: "sha256:<hex>"}`` for every named input file and its :func:`sidecars`."""
    out: dict[str, str] = {}
    for name, path in sorted(paths.items()):
        out[name] = "sha256:" + cached_file_sha256(path)
        for extra in sidecars(path):
            out[f"{name}{extra.suffix}"] = "sha256:" + cached_file_sha256(extra)
    return out


def file_fingerprint(path: str | Path | None) -> str | None:
    """SHA-256 of a file and of its :func:`sidecars`, memoised per (path, size, mtime)."""
    if path is None:
        return None
    return ":".join(cached_file_sha256(f) for f in (Path(path), *sidecars(path)))


def array_digest(*arrays: np.ndarray) -> str:
    """A stable content hash of arrays (dtype, shape and values; strings by their text).

    One array hashes as published manifests record it (``docs/publishing.md``); several
    arrays hash as one stream, for cache keys over a few columns.
    """
    h = hashlib.sha256()
    for values in arrays:
        arr = np.ascontiguousarray(values)
        update_digest(h, arr.dtype, arr.shape, [arr])
    return h.hexdigest()


def update_digest(h: Any, dtype: np.dtype[Any], shape: tuple[int, ...], blocks: Iterable[np.ndarray]) -> None:
    """Feed one array to the hash ``h`` as :func:`array_digest` does, from its blocks along the first dim.

    The blocks, concatenated, are the array (C order): the hash equals the whole array's, so
    an array larger than memory is digested one block at a time.
    """
    h.update(str(dtype).encode())
    h.update(str(shape).encode())
    first = True
    for block in blocks:
        arr = np.ascontiguousarray(block)
        if dtype.kind not in "OUT":
            h.update(arr.tobytes())
        elif arr.size:  # strings: "\x00"-joined text over the whole array
            h.update(
                ("" if first else "\x00").encode() + "\x00".join(map(str, arr.ravel().tolist())).encode()
            )
            first = False
