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
    invalid in the file. Class frequencies differ on purpose (see ``_CLASSES``).

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

Rasters (``_RASTERS``): VNIR1 GeoTIFF 32611 1.0 m; VNIR2 ENVI (BIL) 32611 1.25 m;
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

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyogrio
import rasterio
import shapely
from pyproj import CRS, Transformer
from rasterio.features import rasterize
from rasterio.transform import Affine
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box

from pipeline.errors import InputError
from pipeline.version import __version__

__all__ = [
    "BACKGROUND_NAME",
    "CLASS_NAMES",
    "NODATA",
    "SITE_CRS",
    "HSIScene",
    "SyntheticRaster",
    "generate_hsi_scene",
    "site_bounds",
    "transmission_profile",
]

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

_GAP_M = 3.0  # minimum distance between two polygons
_MIN_DIM_M = 7.0  # no polygon dimension below this (1.5 m interior buffer must leave something)
_SUB = 2  # sub-pixels per pixel side
_HR = np.arange(350.0, 2501.0, 1.0)  # 1 nm working spectral grid


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
class _ClassSpec:
    name: str
    weight: float  # share of the polygons
    shape: Literal["rect", "blob"]
    dims: tuple[tuple[float, float], tuple[float, float]]  # rect: (width, length); blob: (radius, unused)
    multi: bool  # may be a MultiPolygon


_CLASSES: tuple[_ClassSpec, ...] = (
    _ClassSpec("asphalt road", 0.18, "rect", ((8.0, 12.0), (30.0, 60.0)), False),
    _ClassSpec("concrete", 0.13, "rect", ((8.0, 20.0), (10.0, 30.0)), False),
    _ClassSpec("graded dirt road", 0.15, "rect", ((8.0, 14.0), (25.0, 60.0)), False),
    _ClassSpec("pad muck", 0.12, "blob", ((10.0, 22.0), (0.0, 0.0)), True),
    _ClassSpec("rusted metal", 0.10, "rect", ((8.0, 12.0), (8.0, 18.0)), True),
    _ClassSpec("sheet metal", 0.11, "rect", ((8.0, 15.0), (10.0, 25.0)), True),
    _ClassSpec("tailings", 0.09, "blob", ((10.0, 28.0), (0.0, 0.0)), True),
    _ClassSpec("stemming gravel", 0.07, "blob", ((5.0, 8.0), (0.0, 0.0)), True),
    _ClassSpec("stemming sand", 0.05, "blob", ((5.0, 8.0), (0.0, 0.0)), True),
)
assert tuple(c.name for c in _CLASSES) == CLASS_NAMES


# --------------------------------------------------------------------------- flights and rasters


@dataclass(frozen=True)
class _Flight:
    centre: tuple[float, float]  # metres from the site centre at scale 1
    heading_deg: float  # along-track direction, clockwise from north
    length: float
    width: float


_FLIGHTS: tuple[_Flight, ...] = (
    _Flight((-165.0, 75.0), 5.0, 440.0, 250.0),
    _Flight((0.0, 5.0), 95.0, 720.0, 290.0),
    _Flight((170.0, -80.0), 172.0, 440.0, 250.0),
)


@dataclass(frozen=True)
class _RasterSpec:
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


_RASTERS: tuple[_RasterSpec, ...] = (
    _RasterSpec(
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
    _RasterSpec(
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
    _RasterSpec(
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
    _RasterSpec(
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
    _RasterSpec(
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
    _RasterSpec(
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


# --------------------------------------------------------------------------- public API


def site_bounds(scale: float = 1.0) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of the site in :data:`SITE_CRS` metres."""
    cx, cy = _site_centre()
    hw, hh = SITE_SIZE_M[0] * scale / 2.0, SITE_SIZE_M[1] * scale / 2.0
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def generate_hsi_scene(
    out_dir: str | Path, *, seed: int = 0, n_polygons: int = 200, scale: float = 1.0
) -> HSIScene:
    """Write a synthetic UNESE-like HSI scene into ``out_dir`` and return its paths."""
    if n_polygons < 1:
        raise InputError(f"n_polygons must be at least 1, got {n_polygons}", fix="ask for 1 or more polygons")
    if not scale > 0:
        raise InputError(f"scale must be positive, got {scale}", fix="use e.g. scale=1.0 (600 m x 450 m)")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rngs = np.random.default_rng(seed).spawn(4 + len(_RASTERS))
    polys = _make_polygons(rngs[0], n_polygons, scale)
    lib = _library()
    world = _make_world(rngs[1], scale, lib)
    flights = _make_flight_states(rngs[2])
    recipes = _polygon_recipes(rngs[3], polys.classes, lib)

    polygons_path = root / "polygons.gpkg"
    _write_polygons(polygons_path, polys)
    transmission_path = root / "transmission.csv"
    _write_transmission(transmission_path)

    rasters: list[SyntheticRaster] = []
    details: list[dict[str, Any]] = []
    for spec, rng in zip(_RASTERS, rngs[4:], strict=True):
        path = root / spec.filename
        info = _render_raster(path, spec, rng, polys, recipes, world, flights[spec.flight], lib, scale, seed)
        rasters.append(SyntheticRaster(spec.name, path, spec.sensor))
        details.append(info)
    _write_readme(root / "README.md", seed, n_polygons, scale, polys, details, lib)
    return HSIScene(
        root=root,
        polygons=polygons_path,
        class_column="class_name",
        transmission=transmission_path,
        rasters=tuple(rasters),
    )


# --------------------------------------------------------------------------- geometry


@lru_cache(maxsize=1)
def _site_centre() -> tuple[float, float]:
    tr = Transformer.from_crs("EPSG:4326", SITE_CRS, always_xy=True)
    x, y = tr.transform(SITE_LON, SITE_LAT)
    return (float(round(x)), float(round(y)))


@dataclass(frozen=True)
class _Polygons:
    geoms: list[Polygon | MultiPolygon]  # as written (bow-ties invalid), SITE_CRS
    valid: list[Polygon | MultiPolygon]  # repaired, for rendering
    classes: IntArray  # index into CLASS_NAMES
    ids: IntArray  # polygon_id written to the file


def _class_counts(n: int) -> IntArray:
    """Polygons per class: largest-remainder rounding of the class weights."""
    w = np.array([c.weight for c in _CLASSES])
    raw = w / w.sum() * n
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return counts


def _local_shape(spec: _ClassSpec, rng: np.random.Generator, f: float) -> Polygon:
    """One polygon of a class, centred on the origin, not yet rotated."""
    (a0, a1), (b0, b1) = spec.dims
    if spec.shape == "rect":
        w = max(rng.uniform(a0, a1) * f, _MIN_DIM_M)
        length = max(rng.uniform(b0, b1) * f, w)
        return box(-length / 2, -w / 2, length / 2, w / 2)
    radius = max(rng.uniform(a0, a1) * f, _MIN_DIM_M / 2)
    theta = np.linspace(0.0, 2 * np.pi, 20, endpoint=False)
    k = np.arange(2, 5)[:, None]
    amp = rng.uniform(0.0, 0.12, 3)[:, None]
    phase = rng.uniform(0.0, 2 * np.pi, 3)[:, None]
    r = radius * (1.0 + (amp * np.cos(k * theta + phase)).sum(axis=0))
    return Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))


def _nominal_area(spec: _ClassSpec) -> float:
    (a0, a1), (b0, b1) = spec.dims
    if spec.shape == "rect":
        return (a0 + a1) * (b0 + b1) / 4.0
    return float(np.pi * ((a0 + a1) / 2.0) ** 2)


def _bowtie(rng: np.random.Generator, f: float) -> Polygon:
    """A self-intersecting quadrilateral (two triangles touching at the origin)."""
    a = max(rng.uniform(10.0, 18.0) * f, _MIN_DIM_M)
    b = max(rng.uniform(8.0, 14.0) * f, _MIN_DIM_M)
    return Polygon([(-a, -b), (a, b), (a, -b), (-a, b)])


def _make_polygons(rng: np.random.Generator, n: int, scale: float) -> _Polygons:
    """Place ``n`` labelled polygons in the site, largest first, by rejection sampling."""
    counts = _class_counts(n)
    classes = np.repeat(np.arange(len(_CLASSES)), counts)
    n_invalid = 1 if n < 100 else 2
    n_multi = min(max(2, round(0.06 * n)), max(n - n_invalid, 0))
    blob_like = [i for i, k in enumerate(classes) if _CLASSES[k].name in ("pad muck", "tailings")]
    pool = blob_like if len(blob_like) >= n_invalid else list(range(n))
    bowtie = set(rng.choice(pool, size=min(n_invalid, len(pool)), replace=False).tolist())
    multi_ok = [i for i, k in enumerate(classes) if _CLASSES[k].multi and i not in bowtie]
    multi = set(rng.choice(multi_ok, size=min(n_multi, len(multi_ok)), replace=False).tolist())

    x0, y0, x1, y1 = site_bounds(scale)
    area_per_poly = (x1 - x0) * (y1 - y0) / n
    f0 = float(np.clip((area_per_poly / 1350.0) ** 0.75, 0.3, 1.0))  # 1 at the default density
    nominal = np.array(
        [_nominal_area(_CLASSES[k]) * (1.5 if i in multi else 1.0) for i, k in enumerate(classes)]
    )
    order = np.argsort(-nominal, kind="stable")

    placed: list[Polygon | MultiPolygon | None] = [None] * n
    valid: list[Polygon | MultiPolygon | None] = [None] * n
    hulls = np.empty(n, dtype=object)
    bounds = np.full((n, 4), np.nan)
    for i in order:
        spec = _CLASSES[classes[i]]
        f = f0
        for attempt in range(2000):
            if attempt and attempt % 150 == 0:
                f *= 0.9
            if i in bowtie:
                shape: Polygon | MultiPolygon = _bowtie(rng, f)
            else:
                shape = _local_shape(spec, rng, f)
                if i in multi and attempt < 1000:
                    part = affinity.scale(_local_shape(spec, rng, f), 0.65, 0.65, origin=(0, 0))
                    ra = float(shapely.minimum_bounding_radius(shape))
                    rb = float(shapely.minimum_bounding_radius(part))
                    ang = rng.uniform(0.0, 2 * np.pi)
                    dist = ra + rb + rng.uniform(3.0, 6.0)
                    part = affinity.translate(part, dist * np.cos(ang), dist * np.sin(ang))
                    shape = MultiPolygon([shape, part])
            shape = affinity.rotate(shape, rng.uniform(0.0, 180.0), origin=(0, 0))
            bx0, by0, bx1, by1 = shape.bounds
            lo_x, hi_x = x0 - bx0 + 1.0, x1 - bx1 - 1.0
            lo_y, hi_y = y0 - by0 + 1.0, y1 - by1 - 1.0
            if lo_x >= hi_x or lo_y >= hi_y:
                continue
            shape = affinity.translate(shape, rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y))
            hull = shapely.convex_hull(shape) if i in bowtie else shape
            b = np.asarray(hull.bounds)
            near = (
                (bounds[:, 0] <= b[2] + _GAP_M)
                & (bounds[:, 2] >= b[0] - _GAP_M)
                & (bounds[:, 1] <= b[3] + _GAP_M)
                & (bounds[:, 3] >= b[1] - _GAP_M)
            )
            if near.any() and shapely.dwithin(hulls[near], hull, _GAP_M).any():
                continue
            placed[i] = shape
            valid[i] = shapely.make_valid(shape) if i in bowtie else shape
            hulls[i] = hull
            bounds[i] = b
            break
        else:
            raise InputError(
                f"could not place {n} non-overlapping polygons in a site of scale {scale}",
                fix="use fewer polygons or a larger scale (the default is 200 polygons at scale 1.0; "
                "about 200 polygons need scale >= 0.5)",
            )
    perm = rng.permutation(n)
    return _Polygons(
        geoms=[g for g in (placed[j] for j in perm) if g is not None],
        valid=[g for g in (valid[j] for j in perm) if g is not None],
        classes=classes[perm],
        ids=np.arange(1, n + 1, dtype=np.int64),
    )


def _write_polygons(path: Path, polys: _Polygons) -> None:
    """Write the labels layer in EPSG:4326 with pinned GeoPackage timestamps."""
    import geopandas as gpd

    tr = Transformer.from_crs(SITE_CRS, "EPSG:4326", always_xy=True)
    geoms = shapely.transform(
        np.asarray(polys.geoms, dtype=object), lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
    )
    gdf = gpd.GeoDataFrame(
        {
            "class_name": [CLASS_NAMES[k] for k in polys.classes],
            "polygon_id": polys.ids,
        },
        geometry=list(geoms),
        crs="EPSG:4326",
    )
    path.unlink(missing_ok=True)
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_TIMESTAMP})
    try:
        pyogrio.write_dataframe(gdf, path, layer="labels", driver="GPKG", promote_to_multi=False)
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


# --------------------------------------------------------------------------- spectra


@dataclass(frozen=True)
class _Library:
    spectra: FloatArray  # (n, len(_HR)) reflectance on the 1 nm grid
    starts: IntArray  # pool start per class (CLASS_NAMES order), then soil, npv, veg
    counts: IntArray
    names: tuple[tuple[str, ...], ...]  # earthlib NAMEs per pool


_POOL_NAMES = (*CLASS_NAMES, "background soil", "background npv", "background vegetation")
_SOIL, _NPV, _VEG = len(CLASS_NAMES), len(CLASS_NAMES) + 1, len(CLASS_NAMES) + 2


def _evenly(idx: IntArray, n: int) -> IntArray:
    """``n`` members of ``idx`` at evenly spaced positions (all when fewer)."""
    if len(idx) <= n:
        return idx
    return idx[np.round(np.linspace(0, len(idx) - 1, n)).astype(np.int64)]


@lru_cache(maxsize=1)
def _library() -> _Library:
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
    for name, p in zip(_POOL_NAMES, pools, strict=True):
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
    hr = np.empty((len(idx), len(_HR)))
    for j in range(len(idx)):  # a few hundred library spectra, not pixels
        hr[j] = np.interp(_HR, wl, spec[j])
    hr[:, wl.max() < _HR] = tail[:, None]
    return _Library(
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


def _write_transmission(path: Path) -> None:
    """``wavelength_nm,transmission`` at 1 nm, 350–2500 nm."""
    t = transmission_profile(_HR)
    lines = ["wavelength_nm,transmission", *(f"{w:.0f},{v:.5f}" for w, v in zip(_HR, t, strict=True))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _band_model(spec: _RasterSpec) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Band centres (nm), FWHM (nm) and the (bands × 1 nm grid) response matrix."""
    first, last, n = spec.band_range
    centres = np.round(np.linspace(first, last, n), 2)
    fwhm = np.full(n, round(1.2 * (last - first) / (n - 1), 2))
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    srf = np.exp(-0.5 * ((_HR[None, :] - centres[:, None]) / sigma[:, None]) ** 2)
    srf /= srf.sum(axis=1, keepdims=True)
    return centres, fwhm, srf


@dataclass(frozen=True)
class _Recipe:
    i1: IntArray  # library rows (absolute) of the two mixed spectra
    i2: IntArray
    w: FloatArray
    gain: FloatArray


def _polygon_recipes(rng: np.random.Generator, classes: IntArray, lib: _Library) -> _Recipe:
    """Per polygon: a convex mix of two pool spectra and a brightness factor."""
    n = len(classes)
    start, count = lib.starts[classes], lib.counts[classes]
    i1 = start + (rng.random(n) * count).astype(np.int64)
    i2 = start + (rng.random(n) * count).astype(np.int64)
    return _Recipe(i1=i1, i2=i2, w=rng.uniform(0.0, 1.0, n), gain=rng.uniform(0.9, 1.1, n))


# --------------------------------------------------------------------------- the world (terrain, fields)


@dataclass(frozen=True)
class _World:
    hills: FloatArray  # (k, 4): x, y (relative to the site centre), amplitude, sigma
    scarp: tuple[float, float, float, float]  # angle, offset, height, width
    fields: FloatArray  # (5, m, 4): kx, ky, phase, amplitude of smooth fields (veg, npv, 3 soils)
    soils: IntArray  # library rows of the scene's three background soils


def _make_world(rng: np.random.Generator, scale: float, lib: _Library) -> _World:
    """Terrain and smooth background fields, in metres relative to the site centre."""
    w, h = SITE_SIZE_M[0] * scale, SITE_SIZE_M[1] * scale
    k = 6
    hills = np.column_stack(
        [
            rng.uniform(-0.6, 0.6, k) * w,
            rng.uniform(-0.6, 0.6, k) * h,
            rng.uniform(15.0, 60.0, k),
            rng.uniform(60.0, 160.0, k),
        ]
    )
    scarp = (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(-0.2, 0.2) * w), 40.0, 15.0)
    m = 6
    wavelength = rng.uniform(30.0, 200.0, (5, m))
    angle = rng.uniform(0.0, 2 * np.pi, (5, m))
    fields = np.stack(
        [
            2 * np.pi / wavelength * np.cos(angle),
            2 * np.pi / wavelength * np.sin(angle),
            rng.uniform(0.0, 2 * np.pi, (5, m)),
            np.full((5, m), 1.0 / np.sqrt(m / 2)),
        ],
        axis=-1,
    )
    soils = lib.starts[_SOIL] + rng.choice(lib.counts[_SOIL], size=3, replace=False)
    return _World(hills=hills, scarp=scarp, fields=fields, soils=soils.astype(np.int64))


def _terrain_gradient(world: _World, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(dz/dx, dz/dy) of the analytic terrain at site-relative coordinates."""
    gx = np.zeros_like(x)
    gy = np.zeros_like(y)
    for hx, hy, amp, sig in world.hills:
        e = amp * np.exp(-((x - hx) ** 2 + (y - hy) ** 2) / (2 * sig**2)) / sig**2
        gx -= e * (x - hx)
        gy -= e * (y - hy)
    ang, off, height, width = world.scarp
    s = 1.0 / (1.0 + np.exp(-((x * np.cos(ang) + y * np.sin(ang) - off) / width)))
    d = height * s * (1 - s) / width
    return gx + d * np.cos(ang), gy + d * np.sin(ang)


def _field(world: _World, which: int, x: FloatArray, y: FloatArray) -> FloatArray:
    """A smooth random field, roughly in [-1, 1]."""
    out = np.zeros_like(x)
    for kx, ky, ph, amp in world.fields[which]:
        out += amp * np.sin(kx * x + ky * y + ph)
    return np.clip(out, -1.0, 1.0)


@dataclass(frozen=True)
class _FlightState:
    sun_zenith: float  # radians
    sun_azimuth: float  # radians, clockwise from north


def _make_flight_states(rng: np.random.Generator) -> tuple[_FlightState, ...]:
    return tuple(
        _FlightState(np.deg2rad(rng.uniform(30.0, 62.0)), np.deg2rad(rng.uniform(100.0, 250.0)))
        for _ in _FLIGHTS
    )


def _illumination(world: _World, sun: _FlightState, x: FloatArray, y: FloatArray) -> FloatArray:
    """Relative illumination (1 on flat ground), with a diffuse floor of 0.15 in shadow."""
    gx, gy = _terrain_gradient(world, x, y)
    norm = np.sqrt(gx**2 + gy**2 + 1.0)
    sz, cz = np.sin(sun.sun_zenith), np.cos(sun.sun_zenith)
    cos_i = (-gx * sz * np.sin(sun.sun_azimuth) - gy * sz * np.cos(sun.sun_azimuth) + cz) / norm
    diffuse = 0.15
    return np.clip(diffuse + (1 - diffuse) * np.maximum(cos_i, 0.0) / cz, diffuse, 1.4)


# --------------------------------------------------------------------------- rendering


def _strip_frame(spec: _RasterSpec, scale: float) -> tuple[FloatArray, FloatArray, float, float]:
    """Centre (site-relative), along-track unit vector, half length and half width of a strip."""
    fl = _FLIGHTS[spec.flight]
    heading = np.deg2rad(fl.heading_deg)
    centre = np.array(fl.centre) * scale
    length, width = fl.length * scale, fl.width * scale
    if spec.sensor == "SWIR":  # narrower swath, offset across track, slightly rotated
        heading += np.deg2rad(1.0)
        along = np.array([np.sin(heading), np.cos(heading)])
        cross = np.array([along[1], -along[0]])
        centre = centre - cross * 0.22 * width + along * 0.06 * length
        length, width = 0.92 * length, 0.75 * width
    along = np.array([np.sin(heading), np.cos(heading)])
    return centre, along, length / 2, width / 2


def _render_raster(
    path: Path,
    spec: _RasterSpec,
    rng: np.random.Generator,
    polys: _Polygons,
    recipes: _Recipe,
    world: _World,
    sun: _FlightState,
    lib: _Library,
    scale: float,
    seed: int,
) -> dict[str, Any]:
    """Render one flight and write it; returns what the README reports about it."""
    cx, cy = _site_centre()
    centre, along, half_l, half_w = _strip_frame(spec, scale)
    cross = np.array([along[1], -along[0]])
    same_crs = CRS.from_user_input(spec.crs) == CRS.from_user_input(SITE_CRS)
    to_raster = Transformer.from_crs(SITE_CRS, spec.crs, always_xy=True)
    to_site = Transformer.from_crs(spec.crs, SITE_CRS, always_xy=True)

    # grid: bounding box of the (densified) strip in the raster CRS, 3 pixels of border
    t = np.linspace(-1.0, 1.0, 21)
    ring = np.concatenate(
        [np.column_stack([t * half_l, np.full_like(t, s * half_w)]) for s in (-1.0, 1.0)]
        + [np.column_stack([np.full_like(t, s * half_l), t * half_w]) for s in (-1.0, 1.0)]
    )
    ex = cx + centre[0] + ring[:, 0] * along[0] + ring[:, 1] * cross[0]
    ey = cy + centre[1] + ring[:, 0] * along[1] + ring[:, 1] * cross[1]
    rx, ry = to_raster.transform(ex, ey)
    res = spec.res
    left = np.floor(np.min(rx) / res) * res - 3 * res
    top = np.ceil(np.max(ry) / res) * res + 3 * res
    width = int(np.ceil((np.max(rx) + 3 * res - left) / res))
    height = int(np.ceil((top - (np.min(ry) - 3 * res)) / res))
    true_tf = Affine(res, 0.0, left, 0.0, -res, top)

    # pixel centres in the site CRS
    cols = left + (np.arange(width) + 0.5) * res
    rows = top - (np.arange(height) + 0.5) * res
    px, py = np.meshgrid(cols, rows)
    if same_crs:
        sx, sy = px, py
    else:
        sx, sy = (np.asarray(v) for v in to_site.transform(px, py))
    dx, dy = sx - cx - centre[0], sy - cy - centre[1]
    a = dx * along[0] + dy * along[1]
    c = dx * cross[0] + dy * cross[1]
    ph = rng.uniform(0.0, 2 * np.pi, 4)
    jag_w = 1.5 + 0.9 * np.sin(a / 17.0 + ph[0]) + 0.6 * np.sin(a / 5.3 + ph[1])
    jag_l = 1.5 + 0.9 * np.sin(c / 13.0 + ph[2]) + 0.6 * np.sin(c / 4.1 + ph[3])
    valid = (np.abs(c) < half_w - jag_w) & (np.abs(a) < half_l - jag_l)
    border = 3
    valid[:border] = valid[-border:] = False
    valid[:, :border] = valid[:, -border:] = False

    # sub-pixel labels (0 = background, k = k-th polygon)
    shapes_site = np.asarray(polys.valid, dtype=object)
    if same_crs:
        shapes_r = shapes_site
    else:
        shapes_r = shapely.transform(
            shapes_site, lambda xy: np.column_stack(to_raster.transform(xy[:, 0], xy[:, 1]))
        )
    sub = rasterize(
        [(g, int(i + 1)) for i, g in enumerate(shapes_r)],
        out_shape=(height * _SUB, width * _SUB),
        transform=true_tf * Affine.scale(1.0 / _SUB),
        fill=0,
        dtype="int32",
    )
    vr, vc = np.nonzero(valid)
    labels = np.stack(
        [sub[vr * _SUB + i, vc * _SUB + j] for i in range(_SUB) for j in range(_SUB)], axis=1
    ).astype(np.int64)

    centres, fwhm, srf = _band_model(spec)
    pool = (lib.spectra @ srf.T).astype(np.float32)  # (library rows, bands)
    t_band = (srf @ transmission_profile(_HR)).astype(np.float32)
    base = np.zeros((len(polys.classes) + 1, len(centres)), dtype=np.float32)
    w1 = (recipes.gain * recipes.w)[:, None]
    w2 = (recipes.gain * (1 - recipes.w))[:, None]
    base[1:] = w1 * pool[recipes.i1] + w2 * pool[recipes.i2]

    xs, ys = sx[vr, vc] - cx, sy[vr, vc] - cy
    refl = _reflectance(rng, labels, base, pool, polys.classes, lib, world, xs, ys)

    # flight and sensor effects
    illum = _illumination(world, sun, xs, ys).astype(np.float32)
    lam = centres
    g0 = rng.uniform(0.85, 1.15)
    gain = g0 * (1 + 0.03 * np.sin(2 * np.pi * (lam - lam[0]) / rng.uniform(300, 900) + rng.uniform(0, 6.3)))
    span = (lam - lam[0]) / (lam[-1] - lam[0]) - 0.5
    offset = rng.uniform(-0.01, 0.02) + rng.uniform(-0.01, 0.01) * span
    delta = rng.uniform(-0.12, 0.12)
    t_clip = np.maximum(t_band, 0.01)
    residual = t_clip**delta
    if spec.sensor == "VNIR":
        edge = 1 + 3 * np.exp(-(lam - 400.0) / 25.0) + 2 * np.exp((lam - 1000.0) / 30.0)
    else:
        edge = 1 + 2 * np.exp(-(lam - 900.0) / 40.0) + 3 * np.exp((lam - 2500.0) / 60.0)
    sigma0 = rng.uniform(0.003, 0.006)
    sigma = (sigma0 * edge / np.sqrt(t_clip)).astype(np.float32)
    obs = refl * illum[:, None]
    obs *= (gain * residual).astype(np.float32)
    obs += offset.astype(np.float32)
    obs += rng.standard_normal(obs.shape, dtype=np.float32) * sigma

    nan_count = 0
    if spec.nan_pixels:
        nan_count = max(5, len(vr) // 2000)
        obs[rng.choice(len(vr), size=nan_count, replace=False)] = np.nan

    # misregistration: the file's geotransform is off by 1-4 m from the truth
    shift = rng.uniform(1.0, 4.0)
    ang = rng.uniform(0.0, 2 * np.pi)
    sdx, sdy = float(shift * np.cos(ang)), float(shift * np.sin(ang))
    file_tf = Affine(res, 0.0, left + sdx, 0.0, -res, top + sdy)

    cube: npt.NDArray[Any]
    if spec.dtype == "int16":
        cube = np.full((len(lam), height, width), int(NODATA), dtype=np.int16)
        cube[:, vr, vc] = np.clip(np.round(obs * 10000.0), -9998, 32767).astype(np.int16).T
    else:
        cube = np.full((len(lam), height, width), NODATA, dtype=np.float32)
        cube[:, vr, vc] = obs.T
    _write_cube(path, spec, cube, file_tf, centres, fwhm, seed)
    return {
        "spec": spec,
        "shape": (len(lam), height, width),
        "valid": len(vr),
        "shift": (sdx, sdy),
        "gain": float(g0),
        "sun": (float(np.rad2deg(sun.sun_zenith)), float(np.rad2deg(sun.sun_azimuth))),
        "noise": float(sigma0),
        "nan": nan_count,
        "wl": (float(centres[0]), float(centres[-1])),
    }


def _reflectance(
    rng: np.random.Generator,
    labels: IntArray,
    base: F32,
    pool: F32,
    classes: IntArray,
    lib: _Library,
    world: _World,
    xs: FloatArray,
    ys: FloatArray,
) -> F32:
    """Surface reflectance of each valid pixel: the mean of its sub-pixels' spectra.

    Every pixel is a sparse linear combination of library rows and polygon base spectra,
    so the whole image is one sparse (pixels x dictionary) by dense (dictionary x bands) product.
    """
    from scipy import sparse

    n, nsub = labels.shape
    n_pool = pool.shape[0]
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[npt.NDArray[np.float32]] = []

    def add(r: IntArray, c: IntArray, v: npt.NDArray[Any]) -> None:
        rows.append(r)
        cols.append(c)
        vals.append(np.asarray(v, dtype=np.float32))

    def pick(which: int, m: int) -> IntArray:
        return lib.starts[which] + (rng.random(m) * lib.counts[which]).astype(np.int64)

    # polygon sub-pixels: (1 - u) base spectrum + u random pool member, brightness jitter
    for q in range(nsub):
        lab = labels[:, q]
        inside = np.flatnonzero(lab > 0)
        k = classes[lab[inside] - 1]
        u = rng.uniform(0.0, 0.3, len(inside))
        scale = (1.0 + 0.03 * rng.standard_normal(len(inside))) / nsub
        add(inside, n_pool + lab[inside], (1 - u) * scale)
        add(inside, lib.starts[k] + (rng.random(len(inside)) * lib.counts[k]).astype(np.int64), u * scale)

    # background share: the scene's three soils in smoothly varying proportions, a random soil,
    # NPV and vegetation
    bg = np.flatnonzero((labels == 0).any(axis=1))
    frac = (labels[bg] == 0).sum(axis=1) / nsub * (1.0 + 0.03 * rng.standard_normal(len(bg)))
    bx, by = xs[bg], ys[bg]
    veg = np.clip(0.05 + 0.05 * _field(world, 0, bx, by), 0.0, 0.2)
    npv = np.clip(0.12 + 0.08 * _field(world, 1, bx, by), 0.0, 0.3)
    logits = np.stack([2.5 * _field(world, 2 + i, bx, by) for i in range(3)], axis=1)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    v = rng.uniform(0.0, 0.3, len(bg))
    soil = (1 - veg - npv) * frac
    for i in range(3):
        add(bg, np.full(len(bg), world.soils[i]), soil * (1 - v) * weights[:, i])
    m = len(bg)
    add(bg, pick(_SOIL, m), soil * v)
    add(bg, pick(_NPV, m), npv * frac)
    add(bg, pick(_VEG, m), veg * frac)

    dictionary = np.concatenate([pool, base]).astype(np.float32)
    w = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, dictionary.shape[0]),
    )
    return np.asarray(w @ dictionary, dtype=np.float32)


def _write_cube(
    path: Path,
    spec: _RasterSpec,
    cube: npt.NDArray[Any],
    transform: Affine,
    centres: FloatArray,
    fwhm: FloatArray,
    seed: int,
) -> None:
    """Write one raster with wavelengths, units, nodata and (int16) scale in its metadata."""
    count, height, width = cube.shape
    for stale in (path, path.with_suffix(".hdr"), Path(f"{path}.aux.xml")):
        stale.unlink(missing_ok=True)
    factor = 1e-3 if spec.units == "Micrometers" else 1.0
    wl = centres * factor
    fw = fwhm * factor
    fmt = "{:.5f}" if factor != 1.0 else "{:.2f}"
    unit = "um" if factor != 1.0 else "nm"
    profile: dict[str, Any] = {
        "driver": spec.driver,
        "width": width,
        "height": height,
        "count": count,
        "dtype": spec.dtype,
        "crs": spec.crs,
        "transform": transform,
        "nodata": NODATA,
    }
    if spec.driver == "GTiff":
        profile.update(
            tiled=True,
            blockxsize=256,
            blockysize=256,
            interleave="pixel",
            compress="deflate",
            predictor=2 if spec.dtype == "int16" else 3,
        )
    else:
        profile.update(interleave=spec.interleave)
    tags = {
        "sensor": spec.sensor,
        "modality": spec.name,
        "flight": str(spec.flight + 1),
        "synthetic": "true",
        "generator": f"emin-fusion pipeline.synthetic.hsi_scene {__version__}",
        "seed": str(seed),
        "quantity": "pseudo-reflectance" + (" x 10000" if spec.dtype == "int16" else ""),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(cube)
        dst.update_tags(**tags)
        for i in range(count):
            dst.set_band_description(i + 1, f"{fmt.format(wl[i])} {unit}")
            if spec.driver == "GTiff":
                dst.update_tags(
                    i + 1, wavelength=fmt.format(wl[i]), fwhm=fmt.format(fw[i]), wavelength_units=spec.units
                )
        if spec.dtype == "int16":
            dst.scales = (1e-4,) * count
            dst.offsets = (0.0,) * count
        if spec.driver == "ENVI":
            dst.update_tags(
                ns="ENVI",
                wavelength="{" + ", ".join(fmt.format(w) for w in wl) + "}",
                fwhm="{" + ", ".join(fmt.format(f) for f in fw) + "}",
                wavelength_units=spec.units,
                sensor_type=f"synthetic {spec.sensor}",
            )
    if spec.driver == "ENVI":
        # GDAL writes the file's own path as the header's description; pin it for reproducibility
        hdr = path.with_suffix(".hdr")
        text = hdr.read_text(encoding="utf-8")
        text = re.sub(
            r"description = \{.*?\}\n",
            f"description = {{synthetic {spec.name} ({spec.sensor}) pseudo-reflectance}}\n",
            text,
            count=1,
            flags=re.DOTALL,
        )
        hdr.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- README


def _write_readme(
    path: Path,
    seed: int,
    n_polygons: int,
    scale: float,
    polys: _Polygons,
    details: list[dict[str, Any]],
    lib: _Library,
) -> None:
    """A human-readable account of what was generated and how."""
    x0, y0, x1, y1 = site_bounds(scale)
    counts = np.bincount(polys.classes, minlength=len(CLASS_NAMES))
    n_multi = sum(isinstance(g, MultiPolygon) for g in polys.geoms)
    n_invalid = int((~shapely.is_valid(np.asarray(polys.geoms, dtype=object))).sum())
    lines = [
        "# Synthetic UNESE-like hyperspectral scene",
        "",
        "**These data are synthetic.** They were generated by `pipeline.synthetic.hsi_scene.generate_hsi_scene`",
        f"(emin-fusion {__version__}) with seed={seed}, n_polygons={n_polygons}, scale={scale:g}.",
        "The same arguments reproduce every file byte for byte. Nothing here was observed by a",
        "sensor: surface spectra are real laboratory/field spectra from the `earthlib` package,",
        "mixed, illuminated, miscalibrated and made noisy by a simple model (see docs/synthetic.md).",
        "",
        "## Site",
        "",
        f"- centre {SITE_LAT:.2f} N, {-SITE_LON:.2f} W; {x1 - x0:.0f} m x {y1 - y0:.0f} m;",
        f"  {SITE_CRS} bounds ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f})",
        "- `polygons.gpkg`, layer `labels`, EPSG:4326, columns `class_name`, `polygon_id`:",
        f"  {len(polys.geoms)} polygons, {n_multi} MultiPolygons, {n_invalid} invalid (self-intersecting)",
        "",
        "| class | polygons | earthlib spectra in pool |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {counts[k]} | {lib.counts[k]} |" for k, name in enumerate(CLASS_NAMES)]
    lines += [
        f"| background (soil / NPV / vegetation) | - | {lib.counts[_SOIL]} / {lib.counts[_NPV]} / "
        f"{lib.counts[_VEG]} |",
        "",
        "## Rasters",
        "",
        "Pseudo-reflectance; nodata -9999 outside each flight strip and on a 3-pixel border.",
        "",
        "| name | file | sensor | CRS | pixel (m) | bands | wavelengths | dtype | valid pixels "
        "| shift dx, dy (m) | gain | sun zenith, azimuth (deg) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in details:
        s: _RasterSpec = d["spec"]
        unit = "um" if s.units == "Micrometers" else "nm"
        f = 1e-3 if unit == "um" else 1.0
        dtype = "int16 x 1e-4" if s.dtype == "int16" else s.dtype + (" (+NaN pixels)" if d["nan"] else "")
        lines.append(
            f"| {s.name} | `{s.filename}` ({s.driver}) | {s.sensor} | {s.crs} | {s.res:g} | {d['shape'][0]} "
            f"| {d['wl'][0] * f:g}-{d['wl'][1] * f:g} {unit} | {dtype} | {d['valid']} "
            f"| {d['shift'][0]:.2f}, {d['shift'][1]:.2f} | {d['gain']:.3f} "
            f"| {d['sun'][0]:.1f}, {d['sun'][1]:.1f} |"
        )
    lines += [
        "",
        "## Transmission",
        "",
        "`transmission.csv`: `wavelength_nm,transmission`, 350-2500 nm at 1 nm, an analytic model",
        "(Rayleigh, aerosol, Gaussian H2O/O2/CO2/CH4 bands; deep water bands near 1380 and 1900 nm).",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
