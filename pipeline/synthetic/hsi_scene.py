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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import MultiPolygon

from pipeline.errors import InputError
from pipeline.synthetic.hsi_layout import (
    BACKGROUND_NAME,
    CLASS_NAMES,
    NODATA,
    RASTERS,
    SITE_CRS,
    SITE_LAT,
    SITE_LON,
    HSIScene,
    SceneRasterSpec,
    SyntheticRaster,
)
from pipeline.synthetic.hsi_polygons import ScenePolygons, make_polygons, site_bounds, write_polygons
from pipeline.synthetic.hsi_render import (
    make_flight_states,
    make_world,
    render_raster,
    render_raster_windowed,
)
from pipeline.synthetic.spectra import (
    NPV,
    SOIL,
    VEG,
    Library,
    library,
    polygon_recipes,
    transmission_profile,
    write_transmission,
)
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

# --------------------------------------------------------------------------- public API


def generate_hsi_scene(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_polygons: int = 200,
    scale: float = 1.0,
    rasters: Sequence[str] | None = None,
    window_rows: int | None = None,
) -> HSIScene:
    """Write a synthetic UNESE-like HSI scene into ``out_dir`` and return its paths.

    ``rasters`` names the flights to write (default all six; each has its own random stream,
    so a subset holds the same pixels as the full scene). ``window_rows`` streams every raster
    that many rows at a time (:func:`~pipeline.synthetic.hsi_render.render_raster_windowed`):
    memory stays bounded at any ``scale``, but the pixels differ from the default in-memory
    render of the same seed.
    """
    names = [spec.name for spec in RASTERS]
    unknown = sorted(set(rasters or ()) - set(names))
    if unknown:
        raise InputError(f"unknown synthetic rasters {unknown}", fix=f"choose from {names}")
    if window_rows is not None and window_rows < 1:
        raise InputError(f"window_rows must be at least 1, got {window_rows}", fix="use e.g. 64, or None")
    if n_polygons < 1:
        raise InputError(f"n_polygons must be at least 1, got {n_polygons}", fix="ask for 1 or more polygons")
    if not scale > 0:
        raise InputError(f"scale must be positive, got {scale}", fix="use e.g. scale=1.0 (600 m x 450 m)")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rngs = np.random.default_rng(seed).spawn(4 + len(RASTERS))
    polys = make_polygons(rngs[0], n_polygons, scale)
    lib = library()
    world = make_world(rngs[1], scale, lib)
    flights = make_flight_states(rngs[2])
    recipes = polygon_recipes(rngs[3], polys.classes, lib)

    polygons_path = root / "polygons.gpkg"
    write_polygons(polygons_path, polys)
    transmission_path = root / "transmission.csv"
    write_transmission(transmission_path)

    written: list[SyntheticRaster] = []
    details: list[dict[str, Any]] = []
    for spec, rng in zip(RASTERS, rngs[4:], strict=True):
        if rasters is not None and spec.name not in rasters:
            continue
        path = root / spec.filename
        args = (path, spec, rng, polys, recipes, world, flights[spec.flight], lib, scale, seed)
        if window_rows is None:
            details.append(render_raster(*args))
        else:
            details.append(render_raster_windowed(*args, window_rows=window_rows))
        written.append(SyntheticRaster(spec.name, path, spec.sensor))
    _write_readme(root / "README.md", seed, n_polygons, scale, polys, details, lib, window_rows)
    return HSIScene(
        root=root,
        polygons=polygons_path,
        class_column="class_name",
        transmission=transmission_path,
        rasters=tuple(written),
    )


# --------------------------------------------------------------------------- README


def _write_readme(
    path: Path,
    seed: int,
    n_polygons: int,
    scale: float,
    polys: ScenePolygons,
    details: list[dict[str, Any]],
    lib: Library,
    window_rows: int | None,
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
        f"(emin-fusion {__version__}) with seed={seed}, n_polygons={n_polygons}, scale={scale:g}"
        + ("." if window_rows is None else f", window_rows={window_rows} (rasters streamed by windows)."),
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
        f"| background (soil / NPV / vegetation) | - | {lib.counts[SOIL]} / {lib.counts[NPV]} / "
        f"{lib.counts[VEG]} |",
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
        s: SceneRasterSpec = d["spec"]
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
