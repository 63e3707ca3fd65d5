"""Digest of every file of a store, for tests proving an ingest wrote (or left) exactly these bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.checksums import array_digest


def store_digest(path: str | Path) -> dict[str, str]:
    """``array_digest`` of every file's bytes in a store (relative path → digest)."""
    root = Path(path)
    return {
        str(p.relative_to(root)): array_digest(np.frombuffer(p.read_bytes(), dtype=np.uint8))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
