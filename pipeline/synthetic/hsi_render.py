"""Rendering of the synthetic HSI scene: terrain, illumination, sub-pixel mixing, GeoTIFF/ENVI writers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
import shapely
from pyproj import CRS, Transformer
from rasterio.features import rasterize
from rasterio.transform import Affine
from rasterio.windows import Window

from pipeline.synthetic.hsi_layout import (
    FLIGHTS,
    HR_GRID_NM,
    NODATA,
    SITE_CRS,
    SITE_SIZE_M,
    SUB,
    SceneRasterSpec,
)
from pipeline.synthetic.hsi_polygons import ScenePolygons, site_centre
from pipeline.synthetic.spectra import NPV, SOIL, VEG, Library, Recipe, band_model, transmission_profile
from pipeline.version import __version__

FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# --------------------------------------------------------------------------- the world (terrain, fields)


@dataclass(frozen=True)
class World:
    hills: FloatArray  # (k, 4): x, y (relative to the site centre), amplitude, sigma
    scarp: tuple[float, float, float, float]  # angle, offset, height, width
    fields: FloatArray  # (5, m, 4): kx, ky, phase, amplitude of smooth fields (veg, npv, 3 soils)
    soils: IntArray  # library rows of the scene's three background soils


def make_world(rng: np.random.Generator, scale: float, lib: Library) -> World:
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
    soils = lib.starts[SOIL] + rng.choice(lib.counts[SOIL], size=3, replace=False)
    return World(hills=hills, scarp=scarp, fields=fields, soils=soils.astype(np.int64))


def _terrain_gradient(world: World, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
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


def _field(world: World, which: int, x: FloatArray, y: FloatArray) -> FloatArray:
    """A smooth random field, roughly in [-1, 1]."""
    out = np.zeros_like(x)
    for kx, ky, ph, amp in world.fields[which]:
        out += amp * np.sin(kx * x + ky * y + ph)
    return np.clip(out, -1.0, 1.0)


@dataclass(frozen=True)
class FlightState:
    sun_zenith: float  # radians
    sun_azimuth: float  # radians, clockwise from north


def make_flight_states(rng: np.random.Generator) -> tuple[FlightState, ...]:
    return tuple(
        FlightState(np.deg2rad(rng.uniform(30.0, 62.0)), np.deg2rad(rng.uniform(100.0, 250.0)))
        for _ in FLIGHTS
    )


def _illumination(world: World, sun: FlightState, x: FloatArray, y: FloatArray) -> FloatArray:
    """Relative illumination (1 on flat ground), with a diffuse floor of 0.15 in shadow."""
    gx, gy = _terrain_gradient(world, x, y)
    norm = np.sqrt(gx**2 + gy**2 + 1.0)
    sz, cz = np.sin(sun.sun_zenith), np.cos(sun.sun_zenith)
    cos_i = (-gx * sz * np.sin(sun.sun_azimuth) - gy * sz * np.cos(sun.sun_azimuth) + cz) / norm
    diffuse = 0.15
    return np.clip(diffuse + (1 - diffuse) * np.maximum(cos_i, 0.0) / cz, diffuse, 1.4)


# --------------------------------------------------------------------------- rendering


def _strip_frame(spec: SceneRasterSpec, scale: float) -> tuple[FloatArray, FloatArray, float, float]:
    """Centre (site-relative), along-track unit vector, half length and half width of a strip."""
    fl = FLIGHTS[spec.flight]
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


@dataclass(frozen=True)
class _Grid:
    """A flight's raster grid (true georeferencing) and its strip in site coordinates."""

    width: int
    height: int
    res: float
    true_tf: Affine
    same_crs: bool
    to_site: Transformer
    centre: FloatArray  # strip centre, relative to the site centre
    along: FloatArray
    cross: FloatArray
    half_l: float
    half_w: float


def _grid(spec: SceneRasterSpec, scale: float) -> _Grid:
    """The raster grid: bounding box of the (densified) strip in the raster CRS, 3 pixels of border."""
    cx, cy = site_centre()
    centre, along, half_l, half_w = _strip_frame(spec, scale)
    cross = np.array([along[1], -along[0]])
    to_raster = Transformer.from_crs(SITE_CRS, spec.crs, always_xy=True)
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
    return _Grid(
        width=int(np.ceil((np.max(rx) + 3 * res - left) / res)),
        height=int(np.ceil((top - (np.min(ry) - 3 * res)) / res)),
        res=res,
        true_tf=Affine(res, 0.0, left, 0.0, -res, top),
        same_crs=CRS.from_user_input(spec.crs) == CRS.from_user_input(SITE_CRS),
        to_site=Transformer.from_crs(spec.crs, SITE_CRS, always_xy=True),
        centre=centre,
        along=along,
        cross=cross,
        half_l=half_l,
        half_w=half_w,
    )


def _valid_pixels(
    grid: _Grid, ph: FloatArray, r0: int, r1: int
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Rows/columns (within rows ``r0:r1``) of the pixels inside the ragged strip, and their
    site-relative centres."""
    cx, cy = site_centre()
    cols = grid.true_tf.c + (np.arange(grid.width) + 0.5) * grid.res
    rows = grid.true_tf.f - (np.arange(r0, r1) + 0.5) * grid.res
    px, py = np.meshgrid(cols, rows)
    if grid.same_crs:
        sx, sy = px, py
    else:
        sx, sy = (np.asarray(v) for v in grid.to_site.transform(px, py))
    dx, dy = sx - cx - grid.centre[0], sy - cy - grid.centre[1]
    a = dx * grid.along[0] + dy * grid.along[1]
    c = dx * grid.cross[0] + dy * grid.cross[1]
    jag_w = 1.5 + 0.9 * np.sin(a / 17.0 + ph[0]) + 0.6 * np.sin(a / 5.3 + ph[1])
    jag_l = 1.5 + 0.9 * np.sin(c / 13.0 + ph[2]) + 0.6 * np.sin(c / 4.1 + ph[3])
    valid = (np.abs(c) < grid.half_w - jag_w) & (np.abs(a) < grid.half_l - jag_l)
    border = 3
    row = np.arange(r0, r1)
    valid[(row < border) | (row >= grid.height - border)] = False
    valid[:, :border] = valid[:, -border:] = False
    vr, vc = np.nonzero(valid)
    return vr, vc, sx[vr, vc] - cx, sy[vr, vc] - cy


def _sub_labels(
    grid: _Grid, shapes_r: npt.NDArray[Any], r0: int, r1: int, vr: IntArray, vc: IntArray
) -> IntArray:
    """Polygon of each of the 2x2 sub-pixels (0 = background, k = k-th polygon) of the valid pixels."""
    sub = rasterize(
        [(g, int(i + 1)) for i, g in enumerate(shapes_r)],
        out_shape=((r1 - r0) * SUB, grid.width * SUB),
        transform=grid.true_tf * Affine.translation(0, r0) * Affine.scale(1.0 / SUB),
        fill=0,
        dtype="int32",
    )
    return np.stack([sub[vr * SUB + i, vc * SUB + j] for i in range(SUB) for j in range(SUB)], axis=1).astype(
        np.int64
    )


@dataclass(frozen=True)
class _Bands:
    """A raster's bands and the spectra it mixes: library pool and polygon bases, convolved."""

    centres: FloatArray
    fwhm: FloatArray
    pool: F32  # (library rows, bands)
    base: F32  # (polygons + 1, bands); row 0 unused (background)
    t_band: F32  # transmission per band


def _bands(spec: SceneRasterSpec, polys: ScenePolygons, recipes: Recipe, lib: Library) -> _Bands:
    centres, fwhm, srf = band_model(spec)
    pool = (lib.spectra @ srf.T).astype(np.float32)
    base = np.zeros((len(polys.classes) + 1, len(centres)), dtype=np.float32)
    w1 = (recipes.gain * recipes.w)[:, None]
    w2 = (recipes.gain * (1 - recipes.w))[:, None]
    base[1:] = w1 * pool[recipes.i1] + w2 * pool[recipes.i2]
    t_band = (srf @ transmission_profile(HR_GRID_NM)).astype(np.float32)
    return _Bands(centres=centres, fwhm=fwhm, pool=pool, base=base, t_band=t_band)


@dataclass(frozen=True)
class _Sensor:
    """A flight's calibration and noise: spectral gain, offset, residual atmosphere, noise sigma."""

    g0: float
    gain_residual: F32
    offset: F32
    sigma0: float
    sigma: F32


def _draw_sensor(rng: np.random.Generator, spec: SceneRasterSpec, bands: _Bands) -> _Sensor:
    lam = bands.centres
    g0 = rng.uniform(0.85, 1.15)
    gain = g0 * (1 + 0.03 * np.sin(2 * np.pi * (lam - lam[0]) / rng.uniform(300, 900) + rng.uniform(0, 6.3)))
    span = (lam - lam[0]) / (lam[-1] - lam[0]) - 0.5
    offset = rng.uniform(-0.01, 0.02) + rng.uniform(-0.01, 0.01) * span
    delta = rng.uniform(-0.12, 0.12)
    t_clip = np.maximum(bands.t_band, 0.01)
    residual = t_clip**delta
    if spec.sensor == "VNIR":
        edge = 1 + 3 * np.exp(-(lam - 400.0) / 25.0) + 2 * np.exp((lam - 1000.0) / 30.0)
    else:
        edge = 1 + 2 * np.exp(-(lam - 900.0) / 40.0) + 3 * np.exp((lam - 2500.0) / 60.0)
    sigma0 = rng.uniform(0.003, 0.006)
    return _Sensor(
        g0=float(g0),
        gain_residual=(gain * residual).astype(np.float32),
        offset=offset.astype(np.float32),
        sigma0=float(sigma0),
        sigma=(sigma0 * edge / np.sqrt(t_clip)).astype(np.float32),
    )


def _observe(rng: np.random.Generator, refl: F32, illum: F32, sensor: _Sensor) -> F32:
    """What the sensor records: illuminated reflectance, calibration error, Gaussian noise."""
    obs = refl * illum[:, None]
    obs *= sensor.gain_residual
    obs += sensor.offset
    obs += rng.standard_normal(obs.shape, dtype=np.float32) * sensor.sigma
    return obs


def _misregistration(rng: np.random.Generator, grid: _Grid) -> tuple[Affine, float, float]:
    """The file's geotransform: the true one shifted by 1-4 m in a random direction."""
    shift = rng.uniform(1.0, 4.0)
    ang = rng.uniform(0.0, 2 * np.pi)
    sdx, sdy = float(shift * np.cos(ang)), float(shift * np.sin(ang))
    tf = grid.true_tf
    return Affine(tf.a, 0.0, tf.c + sdx, 0.0, tf.e, tf.f + sdy), sdx, sdy


def _cube_values(
    spec: SceneRasterSpec, obs: F32, shape: tuple[int, int, int], vr: IntArray, vc: IntArray
) -> npt.NDArray[Any]:
    """A [bands, rows, cols] block in the file's dtype, nodata outside the strip."""
    if spec.dtype == "int16":
        cube = np.full(shape, int(NODATA), dtype=np.int16)
        cube[:, vr, vc] = np.clip(np.round(obs * 10000.0), -9998, 32767).astype(np.int16).T
    else:
        cube = np.full(shape, NODATA, dtype=np.float32)
        cube[:, vr, vc] = obs.T
    return cube


def _raster_shapes(spec: SceneRasterSpec, grid: _Grid, polys: ScenePolygons) -> npt.NDArray[Any]:
    """The (repaired) polygons in the raster's CRS."""
    shapes_site = np.asarray(polys.valid, dtype=object)
    if grid.same_crs:
        return shapes_site
    to_raster = Transformer.from_crs(SITE_CRS, spec.crs, always_xy=True)
    return shapely.transform(shapes_site, lambda xy: np.column_stack(to_raster.transform(xy[:, 0], xy[:, 1])))


def _details(
    spec: SceneRasterSpec, bands: _Bands, grid: _Grid, valid: int, shift: tuple[float, float],
    sensor: _Sensor, sun: FlightState, nan_count: int,
) -> dict[str, Any]:  # fmt: skip
    """What the README reports about one raster."""
    return {
        "spec": spec,
        "shape": (len(bands.centres), grid.height, grid.width),
        "valid": valid,
        "shift": shift,
        "gain": sensor.g0,
        "sun": (float(np.rad2deg(sun.sun_zenith)), float(np.rad2deg(sun.sun_azimuth))),
        "noise": sensor.sigma0,
        "nan": nan_count,
        "wl": (float(bands.centres[0]), float(bands.centres[-1])),
    }


def render_raster(
    path: Path,
    spec: SceneRasterSpec,
    rng: np.random.Generator,
    polys: ScenePolygons,
    recipes: Recipe,
    world: World,
    sun: FlightState,
    lib: Library,
    scale: float,
    seed: int,
) -> dict[str, Any]:
    """Render one flight in memory and write it; returns what the README reports about it.

    The draws are made in one pass, in the order that makes a seed's scene byte-identical
    across releases: strip edge, sub-pixel mixing, sensor, noise, NaN pixels, misregistration.
    """
    grid = _grid(spec, scale)
    ph = rng.uniform(0.0, 2 * np.pi, 4)
    vr, vc, xs, ys = _valid_pixels(grid, ph, 0, grid.height)
    labels = _sub_labels(grid, _raster_shapes(spec, grid, polys), 0, grid.height, vr, vc)
    bands = _bands(spec, polys, recipes, lib)
    refl = _reflectance(rng, labels, bands.base, bands.pool, polys.classes, lib, world, xs, ys)
    illum = _illumination(world, sun, xs, ys).astype(np.float32)
    sensor = _draw_sensor(rng, spec, bands)
    obs = _observe(rng, refl, illum, sensor)
    nan_count = 0
    if spec.nan_pixels:
        nan_count = max(5, len(vr) // 2000)
        obs[rng.choice(len(vr), size=nan_count, replace=False)] = np.nan
    file_tf, sdx, sdy = _misregistration(rng, grid)
    shape = (len(bands.centres), grid.height, grid.width)
    with _cube_writer(path, spec, shape, file_tf, bands, seed) as dst:
        dst.write(_cube_values(spec, obs, shape, vr, vc))
    return _details(spec, bands, grid, len(vr), (sdx, sdy), sensor, sun, nan_count)


def render_raster_windowed(
    path: Path,
    spec: SceneRasterSpec,
    rng: np.random.Generator,
    polys: ScenePolygons,
    recipes: Recipe,
    world: World,
    sun: FlightState,
    lib: Library,
    scale: float,
    seed: int,
    *,
    window_rows: int,
) -> dict[str, Any]:
    """:func:`render_raster` streamed ``window_rows`` rows at a time: memory bounded by a window.

    The same model, drawn in another order: flight-wide values first (strip edge, sensor,
    misregistration), then each window's mixing, noise and NaN pixels from its own stream
    (``rng.spawn``), so the pixels differ from the in-memory render of the same seed.
    GeoTIFF rows are written a whole row of 256-pixel tiles at a time: GDAL compresses a tile
    written in parts once per part and leaves the earlier copies in the file.
    """
    grid = _grid(spec, scale)
    ph = rng.uniform(0.0, 2 * np.pi, 4)
    bands = _bands(spec, polys, recipes, lib)
    sensor = _draw_sensor(rng, spec, bands)
    file_tf, sdx, sdy = _misregistration(rng, grid)
    shapes_r = _raster_shapes(spec, grid, polys)
    flush_rows = 256 if spec.driver == "GTiff" else 1
    edges = sorted({*range(0, grid.height, window_rows), *range(0, grid.height, flush_rows), grid.height})
    valid = nan_count = 0
    shape = (len(bands.centres), grid.height, grid.width)
    pending: list[npt.NDArray[Any]] = []
    # GDAL also keeps written blocks in its cache (5% of RAM by default): room for two writes
    cache = 2 * max(window_rows, flush_rows) * grid.width * shape[0] * np.dtype(spec.dtype).itemsize
    with rasterio.Env(GDAL_CACHEMAX=cache), _cube_writer(path, spec, shape, file_tf, bands, seed) as dst:
        for r0, r1, stream in zip(edges[:-1], edges[1:], rng.spawn(len(edges) - 1), strict=True):
            vr, vc, xs, ys = _valid_pixels(grid, ph, r0, r1)
            labels = _sub_labels(grid, shapes_r, r0, r1, vr, vc)
            refl = _reflectance(stream, labels, bands.base, bands.pool, polys.classes, lib, world, xs, ys)
            obs = _observe(stream, refl, _illumination(world, sun, xs, ys).astype(np.float32), sensor)
            if spec.nan_pixels and len(vr) >= 2000:
                picked = stream.choice(len(vr), size=len(vr) // 2000, replace=False)
                obs[picked] = np.nan
                nan_count += picked.size
            pending.append(_cube_values(spec, obs, (shape[0], r1 - r0, grid.width), vr, vc))
            valid += len(vr)
            if r1 % flush_rows == 0 or r1 == grid.height:
                block = np.concatenate(pending, axis=1)
                dst.write(block, window=Window(0, r1 - block.shape[1], grid.width, block.shape[1]))
                pending = []
    return _details(spec, bands, grid, valid, (sdx, sdy), sensor, sun, nan_count)


def _reflectance(
    rng: np.random.Generator,
    labels: IntArray,
    base: F32,
    pool: F32,
    classes: IntArray,
    lib: Library,
    world: World,
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
    add(bg, pick(SOIL, m), soil * v)
    add(bg, pick(NPV, m), npv * frac)
    add(bg, pick(VEG, m), veg * frac)

    dictionary = np.concatenate([pool, base]).astype(np.float32)
    w = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, dictionary.shape[0]),
    )
    return np.asarray(w @ dictionary, dtype=np.float32)


@contextmanager
def _cube_writer(
    path: Path,
    spec: SceneRasterSpec,
    shape: tuple[int, int, int],
    transform: Affine,
    bands: _Bands,
    seed: int,
) -> Iterator[Any]:
    """An open raster to write pixels into (whole or by windows); then wavelengths, units,
    nodata, (int16) scale and tags, and the ENVI header's pinned description."""
    count, height, width = shape
    for stale in (path, path.with_suffix(".hdr"), Path(f"{path}.aux.xml")):
        stale.unlink(missing_ok=True)
    factor = 1e-3 if spec.units == "Micrometers" else 1.0
    wl = bands.centres * factor
    fw = bands.fwhm * factor
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
            BIGTIFF="IF_SAFER",
        )
    else:
        profile.update(interleave=spec.interleave)
    tags = {
        "sensor": spec.sensor,
        "modality": spec.name,
        "flight": str(spec.flight + 1),
        "synthetic": "true",
        "generator": f"emin-fusion pipeline.synthetic {__version__}",  # unchanged across releases: same bytes
        "seed": str(seed),
        "quantity": "pseudo-reflectance" + (" x 10000" if spec.dtype == "int16" else ""),
    }
    with rasterio.open(path, "w", **profile) as dst:
        yield dst
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
