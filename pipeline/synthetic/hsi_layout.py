"""Tables of the synthetic HSI demo scene: classes, flights, raster specs, site constants.

The scene itself (what is simulated and why) is described in :mod:`pipeline.synthetic.hsi_scene`
and docs/synthetic.md.
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
