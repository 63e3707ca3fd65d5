"""Work units of a seismic curation: waveform files grouped by size, in file order.

A unit is the fine grain of the fan-out (a Dask future in the flow): consecutive files (sorted
by path) whose sizes add up to about ``unit_mb`` MB. miniSEED bytes are close to proportional
to samples for one encoding, so units carry similar work whatever the files' station counts;
a file larger than ``unit_mb`` is a unit alone. The plan depends only on the file list and
the sizes, so the same inputs give the same units (and the same store) on any cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError

#: Default unit size (MB of waveform files): ~150-250 traces, ~10-20 MB of spectrograms.
DEFAULT_UNIT_MB = 8.0


@dataclass(frozen=True)
class WorkUnit:
    """Consecutive waveform files processed (and written) as one piece of work."""

    index: int
    files: tuple[Path, ...]
    n_bytes: int


def plan_units(files: Sequence[str | Path], unit_mb: float = DEFAULT_UNIT_MB) -> list[WorkUnit]:
    """The sorted ``files`` cut into consecutive units of about ``unit_mb`` MB each.

    A missing file counts 0 bytes (its read becomes an ``unreadable_file`` reject).
    """
    if not unit_mb > 0:
        raise InputError(f"unit size {unit_mb} MB must be > 0", fix="pass --unit-mb with a positive size")
    limit = unit_mb * 1e6
    units: list[WorkUnit] = []
    current: list[Path] = []
    size = 0
    for path in sorted(Path(f) for f in files):
        n = path.stat().st_size if path.exists() else 0
        if current and size + n > limit:
            units.append(WorkUnit(len(units), tuple(current), size))
            current, size = [], 0
        current.append(path)
        size += n
    if current:
        units.append(WorkUnit(len(units), tuple(current), size))
    return units
