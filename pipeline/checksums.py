"""Input file checksums for provenance and cache keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 8 * 1024 * 1024


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 8 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def input_checksums(paths: dict[str, Path]) -> dict[str, str]:
    """``{name: "sha256:<hex>"}`` for every named input file (and its sidecars for ENVI)."""
    out: dict[str, str] = {}
    for name, path in sorted(paths.items()):
        out[name] = "sha256:" + file_sha256(path)
        header = Path(path).with_suffix(".hdr")
        if header.exists() and header != Path(path):
            out[f"{name}.hdr"] = "sha256:" + file_sha256(header)
    return out
