"""Deterministic synthetic UNESE-like hyperspectral scene for the demo and the tests.

No real UNESE data can be shipped, so :func:`generate_hsi_scene` writes a scene that
looks to curation exactly like real inputs: labelled polygons (GeoPackage, EPSG:4326),
six airborne flights (3 VNIR, 3 SWIR) as GeoTIFF and ENVI files, each in its own
projected CRS / resolution / footprint, and an atmospheric transmission profile (CSV).

Site
    A 600 m × 450 m box (times ``scale``) centred on 37.20 N, 116.20 W (Nevada test
    site), built in UTM 11N (EPSG:32611, :data:`SITE_CRS`). ``n_polygons`` labelled,
    non-overlapping polygons (≥ 3 m apart, 7–60 m across: rectangles for roads, pads and
    metal, star-shaped blobs for tailings, muck and stemming piles), a few MultiPolygons
    and one (``n_polygons < 100``) or two self-intersecting "bow-tie" polygons, which stay
    invalid in the file. Class frequencies differ on purpose (see ``CLASSES``).

Spectra: real measured spectra from ``earthlib`` (``earthlib.full_library``, 7,261
spectra, 400–2450 nm at 10 nm with the 1360–1450 and 1800–1950 nm water bands removed).
Spectra with a value ≤ 0.002 or ≥ 1.2 are discarded. Each class draws from a pool
(``LEVEL_2``/``LEVEL_3`` are earthlib's metadata columns; "soils" are the
``LEVEL_3 == "soil"`` ICRAF-ISRIC spectra ranked by mean reflectance, "evenly N" means N
spectra at evenly spaced ranks inside the quantile range):

==================  ===========================================================
class               earthlib spectra
==================  ===========================================================
asphalt road        ``asphalt`` + ``road`` with R(1650 nm) < 0.16
concrete            ``sidewalk`` + ``bridge``
graded dirt road    ``dirt`` + soils, brightness quantile 70–85 %, evenly 24
pad muck            ``built``/``gravel`` + ``mixed``
rusted metal        ``metal`` with R(650)/R(450) ≥ 1.35 + ``manhole`` with ratio ≥ 1.2
sheet metal         ``metal`` with R(650)/R(450) < 1.35
tailings            soils, brightness quantile 95–100 %, evenly 24
stemming gravel     ``bare``/``gravel`` with mean reflectance ≥ 0.05
stemming sand       ``sand``
background          three soils per scene from soils 35–65 % (evenly 48), mixed with
                    NPV (``LEVEL_2 == "npv"``) and PROSAIL canopy (``vegetation``,
                    evenly 48)
==================  ===========================================================

Library spectra are interpolated linearly to 1 nm (across the water-band gaps),
held constant below 400 nm and, above 2450 nm, at the mean of 2430–2450 nm; then
convolved with Gaussian band responses (FWHM = 1.2 × band spacing).

Per pixel: every polygon has a base spectrum (a random convex mix of two pool spectra,
brightness × U(0.9, 1.1)); each of 2×2 sub-pixels mixes it with a random pool member
(weight U(0, 0.3)) and a ±3 % brightness jitter; background mixes the scene's three
soils in spatially smooth proportions, a random soil (weight U(0, 0.3)), NPV (0–30 %) and
vegetation (0–20 %) from smooth fields. Sub-pixels are averaged, so pixels on polygon
edges are mixed. Then, per flight: an illumination factor from an analytic terrain (hills
and a steep scarp) and the flight's sun position (diffuse floor 0.15 in shadows), a gain
(U(0.85, 1.15) with a small spectral ripple) and offset, a residual atmospheric error
``T**delta`` (|delta| ≤ 0.12, T the band's transmission) and Gaussian noise whose sigma
grows as ``1/sqrt(T)`` and at the detector edges, so absorption bands are noisy.

Rasters (``RASTERS``): VNIR1 GeoTIFF 32611 1.0 m; VNIR2 ENVI (BIL) 32611 1.25 m;
VNIR3 GeoTIFF EPSG:26911 1.0 m; SWIR1 GeoTIFF int16 reflectance × 10000 with scale
1e-4, 2.0 m; SWIR2 ENVI (BSQ) EPSG:3310 2.0 m with wavelengths in micrometres;
SWIR3 GeoTIFF 32611 1.5 m with a few all-NaN pixels. Nodata is -9999 everywhere.
Each flight is a rotated strip; the raster is the strip's bounding box plus a 3-pixel
border, nodata outside the (ragged-edged) strip. The three flights are laid out so that
flights 1 and 3 never overlap: no site point is seen by more than 4 rasters. Every
raster's geotransform is shifted by 1–4 m from the truth (misregistration).

Determinism: one ``numpy.random.default_rng(seed)`` spawns every stream; same seed and
arguments give byte-identical files (all rasters, ENVI headers and ``.aux.xml``,
the CSV, the README and the GeoPackage, whose timestamps are pinned through GDAL's
``OGR_CURRENT_DATE``), whatever the output directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

CLASS_NAMES: tuple[str, ...] = (
    "asphalt road",
    "concrete",
    "graded dirt road",
    "pad muck",
    "rusted metal",
    "sheet metal",
    "tailings",
    "stemming gravel",
    "stemming sand",
)
BACKGROUND_NAME = "background"
SITE_CRS = "EPSG:32611"
SITE_LAT, SITE_LON = 37.20, -116.20
SITE_SIZE_M = (600.0, 450.0)
NODATA = -9999.0
GPKG_TIMESTAMP = "2018-06-01T00:00:00.000Z"

GAP_M = 3.0  # minimum distance between two polygons
MIN_DIM_M = 7.0  # no polygon dimension below this (1.5 m interior buffer must leave something)
SUB = 2  # sub-pixels per pixel side
HR_GRID_NM = np.arange(350.0, 2501.0, 1.0)  # 1 nm working spectral grid


@dataclass(frozen=True)
class SyntheticRaster:
    """One generated flight."""

    name: str
    path: Path
    sensor: str


@dataclass(frozen=True)
class HSIScene:
    """Paths of a generated scene."""

    root: Path
    polygons: Path
    class_column: str
    transmission: Path
    rasters: tuple[SyntheticRaster, ...]


# --------------------------------------------------------------------------- classes


@dataclass(frozen=True)
class ClassSpec:
    name: str
    weight: float  # share of the polygons
    shape: Literal["rect", "blob"]
    dims: tuple[tuple[float, float], tuple[float, float]]  # rect: (width, length); blob: (radius, unused)
    multi: bool  # may be a MultiPolygon


CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("asphalt road", 0.18, "rect", ((8.0, 12.0), (30.0, 60.0)), False),
    ClassSpec("concrete", 0.13, "rect", ((8.0, 20.0), (10.0, 30.0)), False),
    ClassSpec("graded dirt road", 0.15, "rect", ((8.0, 14.0), (25.0, 60.0)), False),
    ClassSpec("pad muck", 0.12, "blob", ((10.0, 22.0), (0.0, 0.0)), True),
    ClassSpec("rusted metal", 0.10, "rect", ((8.0, 12.0), (8.0, 18.0)), True),
    ClassSpec("sheet metal", 0.11, "rect", ((8.0, 15.0), (10.0, 25.0)), True),
    ClassSpec("tailings", 0.09, "blob", ((10.0, 28.0), (0.0, 0.0)), True),
    ClassSpec("stemming gravel", 0.07, "blob", ((5.0, 8.0), (0.0, 0.0)), True),
    ClassSpec("stemming sand", 0.05, "blob", ((5.0, 8.0), (0.0, 0.0)), True),
)
assert tuple(c.name for c in CLASSES) == CLASS_NAMES


# --------------------------------------------------------------------------- flights and rasters


@dataclass(frozen=True)
class Flight:
    centre: tuple[float, float]  # metres from the site centre at scale 1
    heading_deg: float  # along-track direction, clockwise from north
    length: float
    width: float


FLIGHTS: tuple[Flight, ...] = (
    Flight((-165.0, 75.0), 5.0, 440.0, 250.0),
    Flight((0.0, 5.0), 95.0, 720.0, 290.0),
    Flight((170.0, -80.0), 172.0, 440.0, 250.0),
)


@dataclass(frozen=True)
class SceneRasterSpec:
    name: str
    sensor: Literal["VNIR", "SWIR"]
    filename: str
    driver: Literal["GTiff", "ENVI"]
    crs: str
    res: float
    flight: int
    band_range: tuple[float, float, int]  # first, last centre (nm), count
    dtype: Literal["float32", "int16"]
    units: Literal["Nanometers", "Micrometers"]
    nan_pixels: bool = False
    interleave: str = "bsq"


RASTERS: tuple[SceneRasterSpec, ...] = (
    SceneRasterSpec(
        "VNIR1",
        "VNIR",
        "vnir1.tif",
        "GTiff",
        "EPSG:32611",
        1.0,
        0,
        (400.0, 1000.0, 80),
        "float32",
        "Nanometers",
    ),
    SceneRasterSpec(
        "VNIR2",
        "VNIR",
        "vnir2.img",
        "ENVI",
        "EPSG:32611",
        1.25,
        1,
        (397.5, 1002.5, 76),
        "float32",
        "Nanometers",
        interleave="bil",
    ),
    SceneRasterSpec(
        "VNIR3",
        "VNIR",
        "vnir3.tif",
        "GTiff",
        "EPSG:26911",
        1.0,
        2,
        (402.0, 998.0, 84),
        "float32",
        "Nanometers",
    ),
    SceneRasterSpec(
        "SWIR1",
        "SWIR",
        "swir1.tif",
        "GTiff",
        "EPSG:32611",
        2.0,
        0,
        (900.0, 2500.0, 128),
        "int16",
        "Nanometers",
    ),
    SceneRasterSpec(
        "SWIR2",
        "SWIR",
        "swir2.img",
        "ENVI",
        "EPSG:3310",
        2.0,
        1,
        (903.0, 2497.0, 120),
        "float32",
        "Micrometers",
    ),
    SceneRasterSpec(
        "SWIR3",
        "SWIR",
        "swir3.tif",
        "GTiff",
        "EPSG:32611",
        1.5,
        2,
        (906.0, 2494.0, 136),
        "float32",
        "Nanometers",
        nan_pixels=True,
    ),
)
