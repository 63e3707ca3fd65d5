"""How many CPUs this process may use (the in-process runners' thread count)."""

from __future__ import annotations

import os


def local_threads() -> int:
    """The CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
