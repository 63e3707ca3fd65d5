"""Spectral libraries for the physics expert: read a CSV, resample to a modality's bands.

CSV layout (``docs/vae.md``): a ``wavelength_nm`` column (strictly increasing, nm) and one
numeric column per endmember, e.g. the earthlib spectra the demo scene is built from
(``bench/vae_library.py`` writes such a file).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import InputError, MissingInputError, SchemaError

__all__ = ["SpectralLibrary", "read_library_csv", "resample_library", "write_library_csv"]


@dataclass(frozen=True)
class SpectralLibrary:
    """Endmember spectra ``spectra [K, W]`` on ``wavelength_nm [W]`` with ``names [K]``."""

    wavelength_nm: np.ndarray
    spectra: np.ndarray
    names: list[str]

    def resample(self, wavelength_nm: np.ndarray) -> np.ndarray:
        """The library on other band centres, ``[K, D]`` (see :func:`resample_library`)."""
        return resample_library(self.wavelength_nm, self.spectra, wavelength_nm)


def resample_library(lib_wl: np.ndarray, spectra: np.ndarray, target_wl: np.ndarray) -> np.ndarray:
    """Linear interpolation (``np.interp``) of each endmember onto ``target_wl``, ``[K, D]`` float64.

    Outside the library's range the end values are held (``np.interp``'s convention).
    """
    lw = np.asarray(lib_wl, dtype=np.float64)
    tw = np.asarray(target_wl, dtype=np.float64)
    s = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    return np.stack([np.interp(tw, lw, row) for row in s])


def read_library_csv(path: str | Path) -> SpectralLibrary:
    """Read a library CSV (``wavelength_nm`` + one column per endmember)."""
    p = Path(path)
    fix = "give a CSV with a 'wavelength_nm' column and one numeric column per endmember"
    if not p.is_file():
        raise MissingInputError("spectral library CSV not found", path=p, fix=fix)
    with p.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or "wavelength_nm" not in rows[0]:
        raise SchemaError("no 'wavelength_nm' column in the header", path=p, fix=fix)
    header = [h.strip() for h in rows[0]]
    wi = header.index("wavelength_nm")
    names = [h for i, h in enumerate(header) if i != wi]
    if not names:
        raise SchemaError("no endmember columns besides 'wavelength_nm'", path=p, fix=fix)
    try:
        table = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as exc:
        raise SchemaError(f"non-numeric value ({exc})", path=p, fix=fix) from exc
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] != len(header):
        raise SchemaError("need at least two rows, each with one value per column", path=p, fix=fix)
    wl = table[:, wi]
    spectra = np.delete(table, wi, axis=1).T
    if not np.all(np.diff(wl) > 0):
        raise InputError("'wavelength_nm' must be strictly increasing", path=p, fix="sort the rows")
    if not np.isfinite(spectra).all():
        raise InputError("the library has NaN or inf values", path=p, fix="fill or drop those rows")
    return SpectralLibrary(wavelength_nm=wl, spectra=spectra, names=names)


def write_library_csv(path: str | Path, library: SpectralLibrary) -> Path:
    """Write ``library`` in the CSV layout :func:`read_library_csv` reads."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["wavelength_nm", *library.names])
        for j, wl in enumerate(library.wavelength_nm):
            w.writerow([f"{wl:.6g}", *(f"{v:.8g}" for v in library.spectra[:, j])])
    return p
