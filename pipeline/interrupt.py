"""Ctrl-C that is honoured wherever the run is: a flag set by the signal, checked before every write.

A KeyboardInterrupt raised in the main thread can be swallowed by a library waiting there
(Prefect starting its temporary server, a thread pool); the flag is not. The product checks
it at every point that would write (before a working copy is swapped in, before a version is
installed or ``latest`` moved) and in every long loop (raster windows, waveform batches), so
an interrupted run stops within seconds and writes nothing. A second Ctrl-C exits at once
(temporaries it leaves are removed by ``emin publish gc``).

``emin`` installs the handler before anything else it imports, so a Ctrl-C that lands while
Prefect or torch is still importing (where pydantic-core turns a KeyboardInterrupt into a
serialisation error, or a library swallows it) is honoured as well.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

_INTERRUPTED = threading.Event()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _INTERRUPTED.is_set():
        os._exit(128 + signum)
    _INTERRUPTED.set()
    raise KeyboardInterrupt(f"interrupted by signal {signum}")


def install() -> None:
    """Route SIGINT/SIGTERM through the flag (call from the main thread of a CLI command)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


def interrupted() -> bool:
    """True once SIGINT/SIGTERM arrived in this process (whether or not a library swallowed it)."""
    return _INTERRUPTED.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if the run was interrupted (even if that interrupt was swallowed)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt("interrupted")
