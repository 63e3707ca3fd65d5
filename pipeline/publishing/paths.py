"""Where published datasets and the registry of temporaries live (no imports of the writers)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def registry_locked() -> Iterator[Path]:
    """The registry, held under an exclusive ``flock`` of its sibling ``.lock`` file.

    Every append and ``gc``'s read-and-rewrite take it, so a line a run appends while ``gc``
    rewrites the registry is never lost (the lock file is never replaced, unlike the registry).
    """
    reg = temporaries_registry()
    reg.parent.mkdir(parents=True, exist_ok=True)
    with open(reg.with_name(f".{reg.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield reg
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
