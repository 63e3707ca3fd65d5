"""Input file checksums for provenance and cache keys."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

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


def input_checksums(paths: dict[str, Path]) -> dict[str, str]:
    """``{name: "sha256:<hex>"}`` for every named input file (and its sidecars for ENVI)."""
    out: dict[str, str] = {}
    for name, path in sorted(paths.items()):
        out[name] = "sha256:" + cached_file_sha256(path)
        header = Path(path).with_suffix(".hdr")
        if header.exists() and header != Path(path):
            out[f"{name}.hdr"] = "sha256:" + cached_file_sha256(header)
    return out
