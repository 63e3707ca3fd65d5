"""Checksums: input files (with their sidecars) for provenance and cache keys, and array content."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

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
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        if arr.dtype.kind in "OUT":
            h.update("\x00".join(map(str, arr.ravel().tolist())).encode())
        else:
            h.update(arr.tobytes())
    return h.hexdigest()
