"""Spectral preprocessing (report section 3.2.3): bad-band masks and reflectance clipping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import InputError, MissingInputError, SchemaError
from schemas.hsi import HSICurationParams


@dataclass(frozen=True)
class Transmission:
    """An atmospheric transmission profile, linearly interpolated between samples."""

    wavelength_nm: np.ndarray
    transmission: np.ndarray

    def at(self, wavelengths_nm: np.ndarray) -> np.ndarray:
        """Transmission at the given wavelengths (NaN outside the profile's range)."""
        return np.interp(wavelengths_nm, self.wavelength_nm, self.transmission, left=np.nan, right=np.nan)


def read_transmission(path: str | Path) -> Transmission:
    """Read a CSV with columns ``wavelength_nm`` and ``transmission`` (0–1)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(
            "transmission profile not found", path=path, fix="check the `transmission` path"
        )
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SchemaError(
            f"transmission profile is not a readable CSV ({type(exc).__name__}: {str(exc)[:120]})",
            path=path,
            fix="give a text CSV with a header line `wavelength_nm,transmission` and numeric rows",
        ) from exc
    missing = {"wavelength_nm", "transmission"} - set(table.columns)
    if missing:
        raise SchemaError(
            f"transmission CSV lacks columns {sorted(missing)} (has {list(table.columns)})",
            path=path,
            fix="name the columns wavelength_nm,transmission",
        )
    wl = pd.to_numeric(table["wavelength_nm"], errors="coerce").to_numpy(np.float64)
    tr = pd.to_numeric(table["transmission"], errors="coerce").to_numpy(np.float64)
    if len(table) == 0:
        raise SchemaError(
            "transmission profile has no rows", path=path, fix="add rows wavelength_nm,transmission"
        )
    bad = np.flatnonzero(~(np.isfinite(wl) & np.isfinite(tr)))
    if bad.size:
        row = int(bad[0])
        raise SchemaError(
            f"transmission profile row {row + 2} (line {row + 2}) is not numeric: "
            f"{table.iloc[row].tolist()!r} ({bad.size} such rows)",
            path=path,
            fix="every row must hold two numbers: wavelength_nm,transmission",
        )
    if not (np.all(np.isfinite(wl)) and np.all(np.isfinite(tr))) or np.any(np.diff(wl) <= 0):
        raise InputError(
            "transmission profile must be finite with strictly increasing wavelength_nm",
            path=path,
            fix="sort the rows and remove empty values",
        )
    return Transmission(wavelength_nm=wl, transmission=tr)


def band_mask(
    wavelengths_nm: np.ndarray, sensor: str, params: HSICurationParams, transmission: Transmission | None
) -> np.ndarray:
    """Bands to keep: VNIR within its range; SWIR within its range, transmissive, outside drop windows."""
    wl = np.asarray(wavelengths_nm, dtype=np.float64)
    if sensor == "VNIR":
        lo, hi = params.vnir_range_nm
        return (wl >= lo) & (wl <= hi)
    lo, hi = params.swir_range_nm
    keep = (wl >= lo) & (wl <= hi)
    for w_lo, w_hi in params.drop_windows_nm:
        keep &= ~((wl >= w_lo) & (wl <= w_hi))
    if params.min_transmission > 0:
        if transmission is None:
            raise InputError(
                "SWIR band masking needs an atmospheric transmission profile",
                fix="give `transmission:` in the catalog / --transmission, or set min_transmission: 0",
            )
        tr = transmission.at(wl)
        keep &= np.nan_to_num(tr, nan=0.0) >= params.min_transmission
    return keep


def clip_reflectance(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip to [lo, hi] in place, leaving NaN (absent) untouched."""
    return np.clip(values, lo, hi, out=values)
