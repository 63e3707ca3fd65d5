"""Where published datasets and the registry of temporaries live (no imports of the writers)."""

from __future__ import annotations

import os
from pathlib import Path

#: File under a local dataset root listing every temporary folder a run made (one path a line).
TEMPORARIES = ".emin-temporaries"


def default_root() -> str:
    """The dataset root: ``$EMIN_DATA_ROOT``, else ``data/published``."""
    return os.environ.get("EMIN_DATA_ROOT", "data/published")


def temporaries_registry(root: str | Path | None = None) -> Path | None:
    """The registry file of temporaries under a local dataset root (None for a remote root)."""
    base = str(root or default_root())
    if "://" in base and not base.startswith("file://"):
        return None
    return Path(base.removeprefix("file://")).absolute() / TEMPORARIES
