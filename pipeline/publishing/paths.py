"""Where published datasets and the registry of temporaries live (no imports of the writers)."""

from __future__ import annotations

import os
from pathlib import Path

#: File (in the user's state folder) listing every temporary folder a run made, one JSON line each.
TEMPORARIES = "temporaries"


def default_root() -> str:
    """The dataset root: ``$EMIN_DATA_ROOT``, else ``data/published``."""
    return os.environ.get("EMIN_DATA_ROOT", "data/published")


def state_dir() -> Path:
    """The user's emin state folder: ``$EMIN_STATE_DIR``, else ``$XDG_STATE_HOME/emin``, else ``~/.local/state/emin``.

    Kept out of the dataset root so that a failed run leaves the root byte-identical.
    """
    if os.environ.get("EMIN_STATE_DIR"):
        return Path(os.environ["EMIN_STATE_DIR"]).absolute()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "emin"


def temporaries_registry() -> Path:
    """The registry of the temporaries this user's runs made (read by ``emin publish gc``)."""
    return state_dir() / TEMPORARIES
