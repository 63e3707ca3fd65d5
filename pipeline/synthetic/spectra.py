"""Measured spectra (earthlib) of the synthetic HSI scene, the transmission profile and band models."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.synthetic.hsi_layout import CLASS_NAMES, HR_GRID_NM, SceneRasterSpec

FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# --------------------------------------------------------------------------- spectra


@dataclass(frozen=True)
class Library:
    spectra: FloatArray  # (n, len(HR_GRID_NM)) reflectance on the 1 nm grid
    starts: IntArray  # pool start per class (CLASS_NAMES order), then soil, npv, veg
    counts: IntArray
    names: tuple[tuple[str, ...], ...]  # earthlib NAMEs per pool


POOL_NAMES = (*CLASS_NAMES, "background soil", "background npv", "background vegetation")
SOIL, NPV, VEG = len(CLASS_NAMES), len(CLASS_NAMES) + 1, len(CLASS_NAMES) + 2


def _evenly(idx: IntArray, n: int) -> IntArray:
    """``n`` members of ``idx`` at evenly spaced positions (all when fewer)."""
    if len(idx) <= n:
        return idx
    return idx[np.round(np.linspace(0, len(idx) - 1, n)).astype(np.int64)]


@lru_cache(maxsize=1)
def library() -> Library:
    """The class pools of earthlib spectra, on the 1 nm grid (seed independent)."""
    import earthlib

    lib = earthlib.full_library
    data = np.asarray(lib.data, dtype=np.float64)
    wl = np.asarray(lib.sensor.band_centers, dtype=np.float64)
    if str(lib.sensor.wavelength_unit).lower().startswith("micro"):
        wl = wl * 1000.0
    md = lib.metadata.reset_index(drop=True)
    level2 = md["LEVEL_2"].astype(str).to_numpy()
    level3 = md["LEVEL_3"].astype(str).to_numpy()
    names = md["NAME"].astype(str).to_numpy()
    ok = np.isfinite(data).all(axis=1) & (data.min(axis=1) > 0.002) & (data.max(axis=1) < 1.2)

    def band(w: float) -> FloatArray:
        return data[:, int(np.argmin(np.abs(wl - w)))]

    mean = data.mean(axis=1)
    redblue = band(650.0) / np.maximum(band(450.0), 1e-6)

    def where(mask: npt.NDArray[np.bool_]) -> IntArray:
        return np.flatnonzero(mask & ok)

    soils = where(level3 == "soil")
    soils = soils[np.argsort(mean[soils], kind="stable")]

    def soil_q(lo: float, hi: float, n: int) -> IntArray:
        sel = soils[int(lo * len(soils)) : int(hi * len(soils))]
        return _evenly(sel, n)

    pools: list[IntArray] = [
        np.union1d(where(level3 == "asphalt"), where((level3 == "road") & (band(1650.0) < 0.16))),
        where(np.isin(level3, ["sidewalk", "bridge"])),
        np.concatenate([where(level3 == "dirt"), soil_q(0.70, 0.85, 24)]),
        where(((level2 == "built") & (level3 == "gravel")) | (level3 == "mixed")),
        np.union1d(
            where((level3 == "metal") & (redblue >= 1.35)), where((level3 == "manhole") & (redblue >= 1.2))
        ),
        where((level3 == "metal") & (redblue < 1.35)),
        soil_q(0.95, 1.0, 24),
        where((level2 == "bare") & (level3 == "gravel") & (mean >= 0.05)),
        where(level3 == "sand"),
        soil_q(0.35, 0.65, 48),
        where(level2 == "npv"),
        _evenly(where(level2 == "vegetation"), 48),
    ]
    for name, p in zip(POOL_NAMES, pools, strict=True):
        if len(p) == 0:
            raise RuntimeError(
                f"earthlib has no spectra for the {name!r} pool; is earthlib >= 1.1 installed?"
            )
    idx = np.concatenate(pools)
    counts = np.array([len(p) for p in pools], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    # 1 nm grid: linear across the gaps, constant below 400 nm and above 2450 nm (mean 2430-2450)
    spec = data[idx]
    tail = spec[:, wl >= 2430.0].mean(axis=1)
    hr = np.empty((len(idx), len(HR_GRID_NM)))
    for j in range(len(idx)):  # a few hundred library spectra, not pixels
        hr[j] = np.interp(HR_GRID_NM, wl, spec[j])
    hr[:, wl.max() < HR_GRID_NM] = tail[:, None]
    return Library(
        spectra=hr,
        starts=starts,
        counts=counts,
        names=tuple(tuple(names[p].tolist()) for p in pools),
    )


def transmission_profile(wavelength_nm: FloatArray) -> FloatArray:
    """Analytic one-way atmospheric transmission (Rayleigh, aerosol, H2O, O2, CO2, CH4)."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    um = lam / 1000.0
    tau = 0.008569 * um**-4 * (1 + 0.0113 * um**-2 + 0.00013 * um**-4)  # Rayleigh
    tau = tau + 0.08 * (um / 0.55) ** -1.3  # aerosol
    bands = (  # centre nm, sigma nm, peak optical depth
        (687.0, 3.0, 0.3),
        (720.0, 10.0, 0.15),
        (762.0, 4.0, 1.2),
        (820.0, 12.0, 0.2),
        (940.0, 25.0, 0.9),
        (1130.0, 30.0, 1.0),
        (1268.0, 5.0, 0.1),
        (1380.0, 45.0, 6.0),
        (1460.0, 40.0, 3.0),
        (1870.0, 50.0, 7.0),
        (1940.0, 45.0, 4.0),
        (2010.0, 10.0, 0.6),
        (2060.0, 12.0, 0.7),
        (2350.0, 20.0, 0.15),
    )
    for c, s, d in bands:
        tau = tau + d * np.exp(-0.5 * ((lam - c) / s) ** 2)
    tau = tau + 0.6 * np.exp((lam - 2500.0) / 80.0)  # water continuum at the long end
    return np.exp(-tau)


def write_transmission(path: Path) -> None:
    """``wavelength_nm,transmission`` at 1 nm, 350–2500 nm."""
    t = transmission_profile(HR_GRID_NM)
    lines = ["wavelength_nm,transmission", *(f"{w:.0f},{v:.5f}" for w, v in zip(HR_GRID_NM, t, strict=True))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def band_model(spec: SceneRasterSpec) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Band centres (nm), FWHM (nm) and the (bands × 1 nm grid) response matrix."""
    first, last, n = spec.band_range
    centres = np.round(np.linspace(first, last, n), 2)
    fwhm = np.full(n, round(1.2 * (last - first) / (n - 1), 2))
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    srf = np.exp(-0.5 * ((HR_GRID_NM[None, :] - centres[:, None]) / sigma[:, None]) ** 2)
    srf /= srf.sum(axis=1, keepdims=True)
    return centres, fwhm, srf


@dataclass(frozen=True)
class Recipe:
    i1: IntArray  # library rows (absolute) of the two mixed spectra
    i2: IntArray
    w: FloatArray
    gain: FloatArray


def polygon_recipes(rng: np.random.Generator, classes: IntArray, lib: Library) -> Recipe:
    """Per polygon: a convex mix of two pool spectra and a brightness factor."""
    n = len(classes)
    start, count = lib.starts[classes], lib.counts[classes]
    i1 = start + (rng.random(n) * count).astype(np.int64)
    i2 = start + (rng.random(n) * count).astype(np.int64)
    return Recipe(i1=i1, i2=i2, w=rng.uniform(0.0, 1.0, n), gain=rng.uniform(0.9, 1.1, n))
